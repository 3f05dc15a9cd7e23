"""Notification targeting on a small simulated world: who gets which item, when, and why; caps,
quiet hours in each user's time zone, no repeats across runs, idempotent reruns, and precision on the
simulator's ground truth against random targeting."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.jobs import default_asof, write_features
from feed.catalog import Catalog, words
from feed.notify import (
    import_time_zones,
    is_quiet,
    item_topic_weights,
    load_preferences,
    new_items,
    random_targets,
    read_items,
    run_targeting,
    send_time,
    time_zones,
)
from intent.text import STOPWORDS
from topicfeed.ingest import ingest
from topicfeed.settings import NotifySettings, Settings, SimulatorSettings
from topicfeed.simulator import simulate


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    base = tmp_path_factory.mktemp("notify")
    s = Settings(data_dir=base / "data", simulator=SimulatorSettings(users=600, days=5, docs_per_day=80, seed=3))
    sim = simulate(s, base / "sim")
    for kind in ("documents", "events"):
        ingest(kind, sim.files[kind], s)
    import_time_zones(s, sim.files["time_zones"])
    asof = default_asof(s)
    write_features(s, asof)
    catalog = Catalog.load(s, asof=asof)
    items = new_items(s, asof - timedelta(days=1), asof)
    return s, sim, asof, catalog, items


def test_quiet_hours_hold_a_target_until_they_end_in_the_users_zone() -> None:
    cfg = NotifySettings(quiet_start_hour=21, quiet_end_hour=8)
    now = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    assert send_time(now, ZoneInfo("America/New_York"), cfg) == datetime(2026, 12, 2, 13, 0, tzinfo=UTC)  # 01:00 EST -> 08:00 EST
    assert send_time(now, ZoneInfo("Asia/Seoul"), cfg) == now  # 15:00 there
    late = datetime(2026, 12, 2, 22, 30, tzinfo=UTC)  # 22:30 in London: held to 08:00 the next day
    assert send_time(late, ZoneInfo("Europe/London"), cfg) == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    # the night the clocks go forward in New York: 01:30 EST, held to 08:00 EDT (12:00 UTC)
    assert send_time(datetime(2026, 3, 8, 6, 30, tzinfo=UTC), ZoneInfo("America/New_York"), cfg) == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert not any(is_quiet(h, NotifySettings(quiet_start_hour=5, quiet_end_hour=5)) for h in range(24))
    day = NotifySettings(quiet_start_hour=1, quiet_end_hour=5)
    assert [h for h in range(24) if is_quiet(h, day)] == [1, 2, 3, 4]


def test_item_weights_give_the_level_weighted_average_preference(world) -> None:  # noqa: ANN001
    s, _, asof, catalog, items = world
    prefs = load_preferences(s, catalog, asof)
    idx = np.array([catalog.index[i] for i in items[:20]])
    aff = (prefs.matrix @ item_topic_weights(catalog, idx, s.feed.level_weights).T).toarray()
    rng = np.random.default_rng(0)
    dense = prefs.matrix.toarray()
    for u, c in zip(rng.integers(len(prefs.users), size=30), rng.integers(len(idx), size=30)):
        topics = catalog.item_topics[idx[c]]
        by_level: dict[int, list[tuple[str, float]]] = {}
        for path, score in topics.items():
            by_level.setdefault(path.count(" > ") + 1, []).append((path, score))
        num = den = 0.0
        for level, pairs in by_level.items():
            if level > len(s.feed.level_weights):
                continue
            total = sum(sc for _, sc in pairs)
            mean = sum(dense[u, catalog.topic_column[p]] * sc for p, sc in pairs) / total
            num += s.feed.level_weights[level - 1] * mean
            den += s.feed.level_weights[level - 1]
        assert aff[u, c] == pytest.approx(num / den if den else 0.0, abs=1e-9)
    assert 0 <= aff.min() and aff.max() <= 1 + 1e-9


def test_targets_respect_cap_quiet_hours_reasons_and_never_repeat(world) -> None:  # noqa: ANN001
    s, _, asof, catalog, items = world
    first = run_targeting(s, asof, items, name="first", catalog=catalog)
    assert first.targets and first.by_kind.get("intent") and first.by_kind.get("topic")
    zones, bad = time_zones(s)
    assert bad == 0 and len(zones) == 600
    per_day = Counter((t.user_id, t.send_at.astimezone(ZoneInfo(t.time_zone)).date()) for t in first.targets)
    assert max(per_day.values()) <= s.notify.max_per_user_per_day
    assert first.capped > 0  # the cap did bite on this world
    assert len({(t.user_id, t.item_id) for t in first.targets}) == len(first.targets)
    for t in first.targets:
        assert t.time_zone == zones[t.user_id].key
        local = t.send_at.astimezone(zones[t.user_id])
        assert not is_quiet(local.hour, s.notify) and t.send_at >= asof.replace(microsecond=0)
        if t.reason_kind == "intent":
            searched = t.reason.split("'")[1]
            title = set(words(catalog.titles[catalog.index[t.item_id]]))
            q = {w for w in words(searched) if w not in STOPWORDS}
            assert len(q & title) >= min(len(q), s.notify.intent_min_overlap)
        else:
            assert t.score >= s.notify.threshold and t.reason.startswith("new in ")
    assert first.held == sum(t.send_at > asof for t in first.targets)
    # a rerun of the same run writes the same list; another run sends none of the same pairs again
    digest = hashlib.sha256(first.path.read_bytes()).hexdigest()
    again = run_targeting(s, asof, items, name="first", catalog=catalog)
    assert hashlib.sha256(again.path.read_bytes()).hexdigest() == digest
    second = run_targeting(s, asof + timedelta(minutes=5), items, name="second", catalog=catalog)
    assert not {(t.user_id, t.item_id) for t in second.targets} & {(t.user_id, t.item_id) for t in first.targets}
    assert second.repeats >= len(first.targets)
    both = Counter((t.user_id, t.send_at.astimezone(ZoneInfo(t.time_zone)).date()) for t in first.targets + second.targets)
    assert max(both.values()) <= s.notify.max_per_user_per_day  # the cap counts earlier runs' sends


def test_targets_beat_random_targeting_on_the_ground_truth(world) -> None:  # noqa: ANN001
    s, sim, asof, catalog, items = world
    run = run_targeting(s, asof, items, catalog=catalog, write=False, with_history=False)
    assert len(run.targets) > 100
    env = sim.environment
    ours = np.mean([env.click_probabilities(t.user_id, [t.item_id])[0] for t in run.targets])
    rand = random_targets(sorted(env.user_index), [i for i in items if i in catalog.index], len(run.targets), s.notify.max_per_user_per_day, seed=1)
    baseline = np.mean([env.click_probabilities(u, [i])[0] for u, i in rand])
    assert ours > 2 * baseline, (ours, baseline)


def test_bad_inputs_are_named(tmp_path: Path, world) -> None:  # noqa: ANN001
    s, _, asof, catalog, _ = world
    bad = tmp_path / "items.jsonl"
    bad.write_text('{"item_id": "d1"}\n{"title": "no id"}\n')
    with pytest.raises(ValueError, match="line 2: field 'item_id'"):
        read_items(bad)
    listed = tmp_path / "items.txt"
    listed.write_text(f"{catalog.ids[0]}\nnot-an-item\n{catalog.ids[0]}\n")
    assert read_items(listed) == [catalog.ids[0], "not-an-item"]
    t = s.model_copy(update={"data_dir": tmp_path / "other", "notify": s.notify.model_copy(update={"time_zones_path": tmp_path / "tz.parquet"})})
    pq.write_table(pa.table({"user_id": ["u1", "u2", None], "time_zone": ["Europe/Paris", "Mars/Olympus", "UTC"]}), tmp_path / "tz.parquet")
    zones, invalid = time_zones(t)
    assert zones == {"u1": ZoneInfo("Europe/Paris")} and invalid == 2


def test_cli_notify_targets(world, tmp_path: Path) -> None:  # noqa: ANN001
    s, _, asof, _, _ = world
    data = tmp_path / "data"  # a copy without the other tests' target lists (their sends would be repeats)
    shutil.copytree(s.data_dir, data, ignore=shutil.ignore_patterns("notifications"))
    env = {**os.environ, "TOPICFEED_DATA_DIR": str(data)}
    cli = [sys.executable, "-c", "from topicfeed.cli import main; main()", "notify", "targets"]
    none = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert none.returncode == 2 and "exactly one of --new-since" in none.stderr
    out = tmp_path / "targets.jsonl"
    since = (asof - timedelta(hours=6)).isoformat()
    got = subprocess.run([*cli, "--new-since", since, "--name", "cli", "--output", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    assert " targets (" in got.stdout and "send_at=" in got.stdout
    lines = out.read_text().splitlines()
    assert lines and len(lines) == pq.read_table(data / "notifications" / "targets" / "cli.parquet").num_rows
