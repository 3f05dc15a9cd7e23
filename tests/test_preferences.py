"""The preference formulas on small hand-made logs (see docs/preferences.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore.preferences import compute_preferences, item_topics_from_documents, wide_profiles
from topicfeed.lake import Lake
from topicfeed.schemas import DOCUMENT_SCHEMA, EVENT_SCHEMA
from topicfeed.settings import PreferenceSettings, Settings

ASOF = datetime(2026, 3, 1, tzinfo=UTC)


def lake_with(tmp_path: Path, docs: dict[str, list[str]], events: list[tuple], **prefs: float) -> Settings:
    settings = Settings(data_dir=tmp_path, half_life_days=7, preferences=PreferenceSettings(**prefs))
    lake = Lake(settings.lake_dir)
    lake.append("documents", pa.Table.from_pylist(
        [{"doc_id": d, "title": d, "body": "", "source": "news", "created_at": ASOF - timedelta(days=60), "partner": None, "topics": t} for d, t in docs.items()],
        schema=DOCUMENT_SCHEMA,
    ))
    rows = [
        {"event_id": f"e{i}", "user_id": u, "domain": dom, "type": typ, "item_id": item, "query": "q" if dom == "search" else None, "position": None, "ts": ASOF - timedelta(days=age)}
        for i, (u, dom, typ, item, age) in enumerate(events)
    ]
    lake.append("events", pa.Table.from_pylist(rows, schema=EVENT_SCHEMA))
    return settings


def scores(settings: Settings, domain: str = "homefeed", level: int | None = None) -> dict[tuple[str, str], float]:
    t = compute_preferences(settings, ASOF).to_pylist()
    return {(r["user_id"], r["topic"]): r["score"] for r in t if r["domain"] == domain and (level is None or r["level"] == level)}


def test_a_click_counts_for_every_level(tmp_path: Path) -> None:
    s = lake_with(tmp_path, {"d1": ["Travel > Abroad > Asia"]}, [("u", "homefeed", "impression", "d1", 1), ("u", "homefeed", "click", "d1", 1)])
    topics = item_topics_from_documents(s).to_pylist()
    assert sorted((r["level"], r["topic"]) for r in topics) == [(1, "Travel"), (2, "Travel > Abroad"), (3, "Travel > Abroad > Asia")]
    prefs = compute_preferences(s, ASOF).to_pylist()
    assert {(r["domain"], r["level"]) for r in prefs} == {(d, lv) for d in ("homefeed", "merged") for lv in (1, 2, 3)}


def test_smoothing_40_of_100_beats_1_of_1(tmp_path: Path) -> None:
    events = [("few", "homefeed", "impression", "d1", 1), ("few", "homefeed", "click", "d1", 1)]
    events += [("many", "homefeed", "impression", "d1", 1)] * 100 + [("many", "homefeed", "click", "d1", 1)] * 40
    # a population that sees the topic often and rarely clicks it
    for k in range(20):
        events += [(f"p{k}", "homefeed", "impression", "d1", 1)] * 50 + [(f"p{k}", "homefeed", "click", "d1", 1)]
    s = lake_with(tmp_path, {"d1": ["Sports"]}, events)
    got = scores(s, level=1)
    assert got[("many", "Sports")] > got[("few", "Sports")] > got[("p0", "Sports")]
    assert all(0 < v < 1 for v in got.values())


def test_time_decay_halves_weight_each_half_life(tmp_path: Path) -> None:
    # same clicks and impressions, one user a half-life ago, the other now: older evidence is weaker
    events = [("old", "homefeed", "impression", "d1", 7.01)] * 10 + [("old", "homefeed", "click", "d1", 7.01)] * 5
    events += [("new", "homefeed", "impression", "d1", 0.01)] * 10 + [("new", "homefeed", "click", "d1", 0.01)] * 5
    events += [("bg", "homefeed", "impression", "d1", 1)] * 200 + [("bg", "homefeed", "click", "d1", 1)] * 2
    s = lake_with(tmp_path, {"d1": ["Sports"]}, events)
    got = scores(s, level=1)
    assert got[("new", "Sports")] > got[("old", "Sports")] > 0.5
    # events outside the window are ignored entirely
    s2 = lake_with(tmp_path / "w", {"d1": ["Sports"]}, [("u", "homefeed", "click", "d1", 45), ("v", "homefeed", "click", "d1", 1)])
    assert {u for u, _ in scores(s2)} == {"v"}


def test_light_user_leans_on_search(tmp_path: Path) -> None:
    # light user: 2 feed impressions on Sports with a click; 10 searches all clicking Travel
    events = [("light", "homefeed", "impression", "ds", 1), ("light", "homefeed", "click", "ds", 1), ("light", "homefeed", "impression", "ds2", 1)]
    events += [("light", "search", "search", None, 1)] * 10 + [("light", "search", "impression", "dt", 1), ("light", "search", "click", "dt", 1)] * 10
    # heavy user: the same search behaviour, but 600 feed impressions clicking Sports
    events += [("heavy", "homefeed", "impression", "ds", 1)] * 600 + [("heavy", "homefeed", "click", "ds", 1)] * 60 + [("heavy", "homefeed", "impression", "dx", 1)] * 600
    events += [("heavy", "search", "search", None, 1)] * 10 + [("heavy", "search", "impression", "dt", 1), ("heavy", "search", "click", "dt", 1)] * 10
    for k in range(10):  # background population
        events += [(f"p{k}", "homefeed", "impression", d, 1) for d in ("ds", "dt", "dx", "ds2")] * 10 + [(f"p{k}", "homefeed", "click", "dx", 1)]
        events += [(f"p{k}", "search", "search", None, 1)] * 3 + [(f"p{k}", "search", "impression", "dx", 1), (f"p{k}", "search", "click", "dx", 1)]
    s = lake_with(tmp_path, {"ds": ["Sports"], "ds2": ["Sports"], "dt": ["Travel"], "dx": ["Music"]}, events, feed_pivot=200.0)
    merged = compute_preferences(s, ASOF).to_pylist()
    top = {r["user_id"]: r["topic"] for r in merged if r["domain"] == "merged" and r["level"] == 1 and r["rank"] == 1}
    assert top["light"] == "Travel"
    assert top["heavy"] == "Sports"


def test_wide_profile_has_ranked_lists(tmp_path: Path) -> None:
    events = [("u", "homefeed", "impression", d, 1) for d in ("d1", "d2")] + [("u", "homefeed", "click", "d1", 1)] * 3
    events += [("p", "homefeed", "impression", d, 1) for d in ("d1", "d2")] * 5 + [("p", "homefeed", "click", "d2", 1)]
    s = lake_with(tmp_path, {"d1": ["Sports > Golf"], "d2": ["Travel"]}, events)
    long = compute_preferences(s, ASOF)
    wide = {r["user_id"]: r for r in wide_profiles(long, s, ASOF).to_pylist()}
    u = wide["u"]
    assert u["homefeed_l1_topics"][0] == "Sports" and u["homefeed_l2_topics"] == ["Sports > Golf"]
    assert u["homefeed_l1_scores"] == sorted(u["homefeed_l1_scores"], reverse=True)
    assert u["search_l1_topics"] == [] and u["event_timestamp"] == ASOF


@pytest.mark.parametrize("pivot", [0.0, 200.0])
def test_scores_are_deterministic(tmp_path: Path, pivot: float) -> None:
    events = [("u", "homefeed", "impression", "d1", 1), ("u", "homefeed", "click", "d1", 2), ("u", "main", "impression", "d1", 3)]
    s = lake_with(tmp_path, {"d1": ["Sports"]}, events, feed_pivot=pivot)
    keys = [("user_id", "ascending"), ("domain", "ascending"), ("level", "ascending"), ("rank", "ascending")]
    assert compute_preferences(s, ASOF).sort_by(keys).to_pylist() == compute_preferences(s, ASOF).sort_by(keys).to_pylist()


def test_worked_example_of_the_docs(tmp_path: Path) -> None:
    """docs/preferences.md: A 1/1, B 40/100, C 2/100, D 0/50 on one topic -> 0.518, 0.645, 0.314, 0.358."""
    age = 1e-6
    events = [("A", "homefeed", "impression", "d1", age), ("A", "homefeed", "click", "d1", age)]
    events += [("B", "homefeed", "impression", "d1", age)] * 100 + [("B", "homefeed", "click", "d1", age)] * 40
    events += [("C", "homefeed", "impression", "d1", age)] * 100 + [("C", "homefeed", "click", "d1", age)] * 2
    events += [("D", "homefeed", "impression", "d1", age)] * 50
    s = lake_with(tmp_path, {"d1": ["Sports"]}, events)
    got = scores(s, level=1)
    assert {u: v for (u, _), v in got.items()} == pytest.approx({"A": 0.5183, "B": 0.6454, "C": 0.3138, "D": 0.3576}, abs=2e-4)


def test_merged_profile_beats_home_feed_only_for_light_users(tmp_path: Path) -> None:
    """The headline claim on a small simulated world: for light home-feed users, the cross-domain
    (merged) profile recovers their true interests better than the home-feed-only one, at every level."""
    from featurestore.evaluate import evaluate, truth_at
    from featurestore.jobs import default_asof
    from featurestore.preferences import run_preferences
    from topicfeed.ingest import ingest
    from topicfeed.settings import SimulatorSettings
    from topicfeed.simulator import simulate

    s = Settings(data_dir=tmp_path / "data", simulator=SimulatorSettings(users=400, days=7, docs_per_day=80, seed=5))
    sim = simulate(s, tmp_path / "sim")
    for kind in ("documents", "events"):
        ingest(kind, sim.files[kind], s)
    long = run_preferences(s, default_asof(s)).long.to_pandas()
    truth, users = truth_at(tmp_path / "sim" / "ground_truth")
    table = evaluate(long[long.domain.isin(["merged", "homefeed"])], truth, users, s.preferences.levels)
    light = table[table.segment == "light"].pivot_table(index="level", columns="domain", values="ndcg@10")
    assert len(light) == s.preferences.levels
    assert (light["merged"] > light["homefeed"] + 0.05).all(), light
