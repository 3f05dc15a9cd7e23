"""Experiments between rankers: static ratios, sticky assignment for a TTL, warm-up, batched and
idempotent Thompson updates, an arm removed mid-test, an unreadable state falling back to static."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from feed.dashboard import dashboard_data, render_dashboard
from feed.experiments import (
    BatchedThompson,
    ExperimentState,
    assign,
    dynamic_arm,
    p_best,
    state_path,
    static_arm,
    update_experiment,
    window_start,
    with_floor,
)
from feed.routing import ExperimentRouter
from topicfeed.lake import Lake
from topicfeed.schemas import EVENT_SCHEMA, Event
from topicfeed.settings import FeedSettings, Settings

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_static_ratios_hold_within_two_points_over_100k_users() -> None:
    weights = {"a": 0.5, "b": 0.3, "c": 0.2}
    got = Counter(static_arm("exp1", f"u{i}", weights) for i in range(100_000))
    for arm, w in weights.items():
        assert abs(got[arm] / 100_000 - w) <= 0.02
    assert static_arm("exp1", "u7", weights) == static_arm("exp1", "u7", weights)  # deterministic
    other = Counter(static_arm("exp2", f"u{i}", weights) == static_arm("exp1", f"u{i}", weights) for i in range(10_000))
    assert other[False] > 3_000  # another experiment splits users independently


def test_dynamic_assignment_is_sticky_for_the_ttl_then_redrawn() -> None:
    state = ExperimentState.new("exp", {"a": 0.5, "b": 0.5}, NOW - timedelta(days=1))
    ttl = 3600.0
    users = [f"u{i}" for i in range(2_000)]
    for u in users[:200]:
        start = window_start("exp", u, NOW, ttl)
        assert start <= NOW < start + timedelta(seconds=ttl)
        arm = dynamic_arm(state, u, start, ttl)
        for s in (1, 600, 1800, 3599):
            assert dynamic_arm(state, u, start + timedelta(seconds=s), ttl) == arm
    later = [dynamic_arm(state, u, NOW, ttl) != dynamic_arm(state, u, NOW + timedelta(seconds=ttl), ttl) for u in users]
    assert 0.35 < np.mean(later) < 0.65  # a new window is a fresh 50:50 draw
    # an allocation changed mid-window does not move a user before the window ends
    start = window_start("exp", "u1", NOW, ttl)
    arm = dynamic_arm(state, "u1", start, ttl)
    state.allocations.append(((start + timedelta(seconds=10)).isoformat(), {"a": 0.0 if arm == "a" else 1.0, "b": 1.0 if arm == "a" else 0.0}))
    assert dynamic_arm(state, "u1", start + timedelta(seconds=20), ttl) == arm


def test_warmup_uses_initial_weights_then_thompson_moves_traffic_to_the_better_arm() -> None:
    policy = BatchedThompson(["a", "b"], [0.5, 0.5], warmup_impressions=1000, floor=0.01)
    w = policy.allocate(np.array([999.0, 5000.0]), np.array([10.0, 400.0]), 0)
    assert np.allclose(w, [0.5, 0.5])  # "a" has not had its 1,000 impressions yet
    w = policy.allocate(np.array([1000.0, 5000.0]), np.array([10.0, 400.0]), 1)
    assert w[1] > 0.95 and w[0] >= 0.01 - 1e-12


def test_batches_update_once_and_an_arm_can_be_removed(tmp_path: Path) -> None:
    state = ExperimentState.new("exp", {"a": 1, "b": 1, "c": 1}, NOW)
    batch = {"a": (2000, 60), "b": (2000, 20), "c": (2000, 21)}
    assert state.apply("2026-12-03T12", batch, NOW + timedelta(hours=1), warmup_impressions=100, floor=0.01)
    path = state.save(tmp_path / "exp.json")
    snapshot = path.read_text()
    assert not state.apply("2026-12-03T12", batch, NOW + timedelta(hours=1), warmup_impressions=100, floor=0.01)
    assert state.save(tmp_path / "exp.json").read_text() == snapshot  # rerun = same state
    again = ExperimentState.load(path)
    assert again.arms == state.arms and again.allocations == state.allocations
    alloc = state.allocation_at(NOW + timedelta(hours=2))
    assert alloc["a"] > 0.9 and min(alloc.values()) >= 0.01 - 1e-12
    state.remove_arm("a", NOW + timedelta(hours=2))
    alloc = state.allocation_at(NOW + timedelta(hours=3))
    assert set(alloc) == {"b", "c"} and abs(sum(alloc.values()) - 1) < 1e-9
    assert state.apply("2026-12-03T13", {"a": (500, 50), "b": (100, 1)}, NOW + timedelta(hours=3), 100, 0.01)  # "a" is ignored now
    assert "a" not in state.arms and state.arms["b"].impressions == 2100
    assert {dynamic_arm(state, f"u{i}", NOW + timedelta(hours=4), 3600) for i in range(300)} <= {"b", "c"}
    rows = {r["arm"]: r for r in state.status()}
    assert set(rows) == {"b", "c"} and abs(sum(r["p_best"] for r in rows.values()) - 1) < 1e-9
    assert rows["b"]["alpha"] == 1 + 21 and rows["b"]["beta"] == 1 + 2100 - 21


def test_an_unreadable_state_falls_back_to_the_static_weights(tmp_path: Path) -> None:
    weights = {"a": 0.5, "b": 0.5}
    bad = tmp_path / "state.json"
    bad.write_text("{not json")
    got = assign("exp", "dynamic", weights, "u1", NOW, 3600, bad)
    assert got.fallback and got.arm == static_arm("exp", "u1", weights)
    assert assign("exp", "dynamic", weights, "u1", NOW, 3600, tmp_path / "missing.json").fallback
    state = ExperimentState.new("exp", weights, NOW - timedelta(hours=1))
    ok = assign("exp", "dynamic", weights, "u1", NOW, 3600, state.save(tmp_path / "ok.json"))
    assert not ok.fallback and ok.arm == dynamic_arm(state, "u1", NOW, 3600)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=6), st.floats(0, 0.3))
def test_floor_keeps_every_arm_learning(weights: list[float], floor: float) -> None:
    w = with_floor(np.array(weights), floor)
    assert abs(w.sum() - 1) < 1e-9 and (w >= min(floor, 1 / len(weights)) - 1e-9).all()


def test_p_best_and_expected_loss() -> None:
    best, loss = p_best(np.array([101.0, 51.0]), np.array([901.0, 951.0]))
    assert best[0] > 0.99 and loss[0] < loss[1]
    even, _ = p_best(np.array([50.0, 50.0]), np.array([950.0, 950.0]))
    assert abs(even[0] - 0.5) < 0.02


def test_cli_new_update_status(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "TOPICFEED_DATA_DIR": str(tmp_path / "data")}

    def tf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from topicfeed.cli import main; main()", "experiments", *args], env=env, capture_output=True, text=True, timeout=120)

    assert tf("new", "homefeed-1", "--arms", "topicfeed=0.5,trending=0.5", "--since", "2026-12-03T00:00:00+00:00").returncode == 0
    counts = tmp_path / "c.json"
    counts.write_text(json.dumps({"topicfeed": [3000, 240], "trending": [3000, 90]}))
    first = tf("update", "homefeed-1", "--batch-id", "2026-12-03T01", "--counts", str(counts), "--at", "2026-12-03T01:00:00+00:00")
    assert first.returncode == 0 and "applied" in first.stdout
    again = tf("update", "homefeed-1", "--batch-id", "2026-12-03T01", "--counts", str(counts))
    assert "already applied" in again.stdout
    got = json.loads(tf("status", "homefeed-1", "--json").stdout)
    arms = {a["arm"]: a for a in got["arms"]}
    assert got["batches"] == 1 and arms["topicfeed"]["impressions"] == 3000 and arms["topicfeed"]["alpha"] == 241
    assert arms["topicfeed"]["p_best"] > 0.99 and got["allocation"]["topicfeed"] > 0.95 and got["allocation"]["trending"] >= 0.0099
    table = tf("status", "homefeed-1").stdout
    assert "P(best)" in table and "topicfeed" in table
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"topicfeed": [10, 20]}))
    refused = tf("update", "homefeed-1", "--batch-id", "b2", "--counts", str(bad))
    assert refused.returncode == 2 and "arm 'topicfeed'" in refused.stderr
    assert tf("status", "nope").returncode == 2


# settings, events, the batch update from the lake, serving --------------------------------------

RANKERS = {"trend": {"sources": {"topics": {"enabled": False}, "similar": {"enabled": False}, "intents": {"enabled": False}}}}


def exp_settings(tmp_path: Path, **experiment: object) -> Settings:
    spec = {"name": "home1", "type": "dynamic", "arms": {"default": 0.5, "trend": 0.5}, "warmup_impressions": 100, **experiment}
    return Settings(data_dir=tmp_path / "data", feed=FeedSettings(rankers=RANKERS, experiments=[spec], experiment_refresh_s=0.001))


def test_experiment_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="not rankers"):
        FeedSettings(experiments=[{"name": "x", "arms": {"default": 1, "nope": 1}}])
    with pytest.raises(ValidationError, match="unknown fields"):
        FeedSettings(rankers={"r": {"partner": "p"}})
    with pytest.raises(ValidationError, match="reserved"):
        FeedSettings(rankers={"default": {}})
    with pytest.raises(ValidationError, match="overlap"):
        FeedSettings(rankers=RANKERS, experiments=[{"name": "a", "arms": {"default": 1, "trend": 1}}, {"name": "b", "arms": {"default": 1, "trend": 1}, "start": NOW}])
    ok = FeedSettings(rankers=RANKERS, experiments=[{"name": "a", "arms": {"default": 1, "trend": 1}, "end": NOW}, {"name": "b", "arms": {"default": 1, "trend": 1}, "start": NOW}])
    assert ok.experiment_for("homefeed", NOW - timedelta(seconds=1)).name == "a" and ok.experiment_for("homefeed", NOW).name == "b"
    assert ok.experiment_for("main", NOW) is None
    assert "topics" not in ok.ranker_settings("trend").sources.enabled() and "topics" in ok.ranker_settings("default").sources.enabled()


def test_events_carry_experiment_and_arm_together() -> None:
    base = {"event_id": "e", "user_id": "u", "domain": "homefeed", "type": "click", "item_id": "d", "ts": NOW}
    assert Event.model_validate({**base, "experiment": "home1", "arm": "trend"}).arm == "trend"
    for partial in ({"experiment": "home1"}, {"arm": "trend"}):
        with pytest.raises(ValidationError, match="go together"):
            Event.model_validate({**base, **partial})


def tagged_rows(prefix: str, arm: str, impressions: int, clicks: int, at: datetime, experiment: str = "home1") -> list[dict]:
    rows = [{"event_id": f"{prefix}i{k}", "user_id": f"u{k}", "domain": "homefeed", "type": "impression", "item_id": f"d{k}", "ts": at + timedelta(seconds=k), "experiment": experiment, "arm": arm} for k in range(impressions)]
    return rows + [{**r, "event_id": f"{prefix}c{k}", "type": "click"} for k, r in enumerate((rows * 2)[:clicks])]


def test_update_from_the_lake_is_once_per_window_and_follows_the_settings(tmp_path: Path) -> None:
    s = exp_settings(tmp_path)
    lake = Lake(s.lake_dir)
    hour = NOW.replace(minute=0)
    lake.append("events", pa.Table.from_pylist(tagged_rows("a", "default", 300, 30, hour) + tagged_rows("b", "trend", 300, 3, hour) + tagged_rows("x", "gone", 50, 5, hour), schema=EVENT_SCHEMA))
    first = update_experiment(s, s.feed.experiments[0], hour, hour + timedelta(hours=1))
    assert first.applied and first.counts == {"default": (300, 30), "trend": (300, 3)} and first.unmatched_clicks == 0
    body = first.path.read_bytes()
    again = update_experiment(s, s.feed.experiments[0], hour, hour + timedelta(hours=1))
    assert not again.applied and first.path.read_bytes() == body
    state = ExperimentState.load(first.path)
    assert state.allocation_at(hour + timedelta(hours=1))["default"] > 0.9 and len(state.log) == 1
    # more clicks than impressions logged for an arm: the excess is not counted, and reported
    lake.append("events", pa.Table.from_pylist(tagged_rows("c", "trend", 10, 15, hour + timedelta(hours=1)), schema=EVENT_SCHEMA))
    third = update_experiment(s, s.feed.experiments[0], hour + timedelta(hours=1), hour + timedelta(hours=2))
    assert third.counts == {"trend": (10, 10)} and third.unmatched_clicks == 5
    # an arm dropped from the settings leaves the state; a new one joins with its initial share
    s2 = s.model_copy(update={"feed": FeedSettings(rankers={**RANKERS, "fresh": {"exploration": 1.0}}, experiments=[{**s.feed.experiments[0].model_dump(), "arms": {"default": 0.5, "fresh": 0.5}}])})
    fourth = update_experiment(s2, s2.feed.experiments[0], hour + timedelta(hours=2), hour + timedelta(hours=3))
    state = ExperimentState.load(fourth.path)
    assert sorted(state.arms) == ["default", "fresh"] and state.arms["default"].impressions == 300
    assert set(state.allocation_at(hour + timedelta(hours=4))) == {"default", "fresh"}


def test_static_experiment_state_keeps_its_shares(tmp_path: Path) -> None:
    s = exp_settings(tmp_path, type="static", arms={"default": 0.7, "trend": 0.3})
    hour = NOW.replace(minute=0)
    Lake(s.lake_dir).append("events", pa.Table.from_pylist(tagged_rows("a", "default", 500, 5, hour) + tagged_rows("b", "trend", 500, 100, hour), schema=EVENT_SCHEMA))
    got = update_experiment(s, s.feed.experiments[0], hour, hour + timedelta(hours=1))
    state = ExperimentState.load(got.path)
    assert state.arms["trend"].clicks == 100 and state.allocation_at(hour + timedelta(hours=2)) == pytest.approx({"default": 0.7, "trend": 0.3})


def test_router_picks_the_arms_ranker_and_falls_back_when_the_state_is_unreadable(tmp_path: Path) -> None:
    s = exp_settings(tmp_path)
    router = ExperimentRouter(s)
    users = [f"u{i}" for i in range(400)]
    # no state yet: the static shares decide, and say so
    picks = [router.choose(u, "homefeed", NOW) for u in users]
    assert all(served is not None and served.fallback for _, served in picks)
    assert {served.arm for _, served in picks} == {"default", "trend"}
    assert all(ranker is router.rankers[served.arm] for ranker, served in picks)
    assert "topics" not in router.rankers["trend"].enabled and "topics" in router.rankers["default"].enabled
    assert router.choose("u1", "main", NOW) == (router.rankers["default"], None)  # no experiment on that surface
    # a state that sends everyone to "trend" is picked up once its file changes
    state = ExperimentState.new("home1", {"default": 0.5, "trend": 0.5}, NOW - timedelta(days=1))
    state.allocations.append(((NOW - timedelta(hours=3)).isoformat(), {"default": 0.0, "trend": 1.0}))
    state.save(state_path(s, "home1"))
    time.sleep(0.01)
    picks = [router.choose(u, "homefeed", NOW) for u in users]
    assert all(served.arm == "trend" and not served.fallback for _, served in picks)
    state_path(s, "home1").write_text("{not json")
    time.sleep(0.01)
    assert all(router.choose(u, "homefeed", NOW)[1].fallback for u in users[:20])
    # outside the experiment's time window nothing is assigned
    later = exp_settings(tmp_path, start=(NOW + timedelta(days=1)).isoformat())
    assert ExperimentRouter(later).choose("u1", "homefeed", NOW)[1] is None


def test_dashboard_data_has_every_series_and_the_winners(tmp_path: Path) -> None:
    state = ExperimentState.new("home1", {"default": 0.5, "trend": 0.5}, NOW)
    for h in range(6):
        state.apply(f"h{h}", {"default": (1_000, 80), "trend": (1_000, 30)}, NOW + timedelta(hours=h + 1), 500, 0.01)
    d = dashboard_data(state)
    assert d["live_winner"] == "default" and d["decided"] and d["todays_winner"] == "default"
    assert [round(y, 3) for _, y in d["hourly_ctr"]["trend"]] == [0.03] * 6
    assert d["cumulative_ctr"]["default"][-1][1] == pytest.approx(0.08)
    peak = max(d["posterior"]["default"], key=lambda p: p[1])[0]
    assert abs(peak - 0.08) < 0.01  # the Beta posterior peaks at the observed CTR
    assert len(d["allocation"]["trend"]) == 7 and d["allocation"]["trend"][-1][1] == pytest.approx(0.01)
    page = render_dashboard(state)
    assert page.count('class="series" data-arm="trend"') >= 4 and "Live winner" in page
