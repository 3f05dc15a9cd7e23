"""The DAGs under a real Airflow: DagBag imports them cleanly; each runs end to end with ``dag.test()``
(SQLite metadata DB, ``python -m dags.run`` in a fresh process) on a small simulated world against the
SQLite online store, writes what it should, a rerun of the same interval changes nothing, and a run
killed mid-way followed by a rerun leaves consistent outputs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dags.run import airflow_env
from featurestore.jobs import simulated_world
from featurestore.profile import ProfileReader
from feed.notify import import_time_zones
from intent.jobs import save_suggester
from intent.mining import lake_clicks
from intent.model import IntentRefiner
from intent.suggest import QuerySuggester
from topicfeed.lake import Lake
from topicfeed.schemas import EVENT_SCHEMA
from topicfeed.settings import Settings, SimulatorSettings

from tiny_lm import tiny_llama_dir


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, datetime, dict[str, str]]:
    base = tmp_path_factory.mktemp("dag-world")
    s = Settings(data_dir=base / "data", simulator=SimulatorSettings(users=200, days=3, docs_per_day=40, seed=5))
    asof = simulated_world(s, base / "sim")
    import_time_zones(s, base / "sim" / "time_zones.parquet")
    IntentRefiner.from_base(tiny_llama_dir(base / "lm"), num_beams=2, max_new_tokens=6).save_pretrained(s.intent_dir)
    save_suggester(s, lake_clicks(s), s.intent_dir)  # as intent train does
    return s, asof, airflow_env(s.data_dir)


def run_dags(env: dict[str, str], *runs: tuple[str, datetime]) -> list[dict]:
    """The runs, in order, in one fresh Airflow process; every one must succeed."""
    args = [f"{dag_id}={logical.isoformat()}" for dag_id, logical in runs]
    got = subprocess.run([sys.executable, "-m", "dags.run", *args], env=env, capture_output=True, text=True, timeout=900)
    results = [json.loads(x[len("RESULT ") :]) for x in got.stdout.splitlines() if x.startswith("RESULT ")]
    assert got.returncode == 0 and len(results) == len(runs), got.stdout[-3000:] + got.stderr[-3000:]
    for result in results:
        assert result["state"] == "success" and all(t["state"] == "success" for t in result["tasks"].values()), result
    return results


def run_dag(env: dict[str, str], dag_id: str, logical: datetime) -> dict:
    return run_dags(env, (dag_id, logical))[0]


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def test_dagbag_imports_every_dag_with_data_interval_schedules(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW_HOME": str(tmp_path)}
    code = (
        "from airflow.dag_processing.dagbag import DagBag; import json, sys; b = DagBag(dag_folder=sys.argv[1]);"
        "print('RESULT ' + json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()}, 'dags': {d: type(dag.timetable).__name__ for d, dag in b.dags.items()}}))"
    )
    got = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent.parent / "dags")], env=env, capture_output=True, text=True, timeout=300)
    out = json.loads([x for x in got.stdout.splitlines() if x.startswith("RESULT ")][-1][len("RESULT ") :])
    assert out["errors"] == {}
    assert out["dags"] == {
        "content_topics": "CronDataIntervalTimetable",
        "experiment_update": "CronDataIntervalTimetable",
        "notification_targeting": "CronDataIntervalTimetable",
        "search_intents": "CronDataIntervalTimetable",
        "topic_preferences": "AssetOrTimeSchedule",
    }


def test_content_topics_then_preferences_fill_the_store_and_reruns_change_nothing(world: tuple[Settings, datetime, dict[str, str]]) -> None:
    s, asof, env = world
    hour = asof.replace(minute=0, second=0, microsecond=0)  # Airflow 3: the logical date ends the interval
    topics, prefs = run_dags(env, ("content_topics", hour), ("topic_preferences", hour))
    assert (topics["start"], topics["end"]) == ((hour - timedelta(hours=1)).isoformat(), hour.isoformat())
    assert topics["tasks"]["classify_documents"]["return"]["source"] == "gold topics"
    end = datetime.fromisoformat(prefs["end"])
    written = s.features_dir / "user_preferences" / f"asof={end:%Y-%m-%dT%H%M%S}.parquet"
    assert written.is_file() and prefs["tasks"]["compute_preferences"]["return"]["users"] > 50
    user = duckdb.connect().execute(f"select user_id from '{written}' limit 1").fetchone()[0]
    before = (digest(s.features_dir / "user_preferences"), digest(s.features_dir / "item_topics"), ProfileReader(s, now=lambda: end).get(user))
    assert before[2].found and before[2].top(1)
    run_dags(env, ("content_topics", hour), ("topic_preferences", hour))  # the same interval again
    after = (digest(s.features_dir / "user_preferences"), digest(s.features_dir / "item_topics"), ProfileReader(s, now=lambda: end).get(user))
    assert after == before


def test_search_intents_refines_the_window_once_however_often_it_runs(world: tuple[Settings, datetime, dict[str, str]]) -> None:
    s, _, env = world
    newest = duckdb.connect().execute(f"select max(ts) from {Lake(s.lake_dir).scan('events')} where domain = 'search' and type = 'click'").fetchone()[0]
    start = newest.astimezone(UTC).replace(second=0, microsecond=0)
    start -= timedelta(minutes=start.minute % 10)
    got = run_dag(env, "search_intents", start + timedelta(minutes=10))
    assert got["start"] == start.isoformat()
    refined = got["tasks"]["refine_window"]["return"]["refined"]
    assert refined >= 1
    window_file = s.features_dir / "refined_searches" / f"{start:%Y%m%dT%H%M%S}-{start + timedelta(minutes=10):%Y%m%dT%H%M%S}.parquet"
    rows = duckdb.connect().execute(f"select user_id, query, refined_query, suggested_query from '{window_file}'").fetchall()
    assert len(rows) == refined and all(set(q.split()) <= set(r.split()) or r for _, q, r, _ in rows)
    suggester = QuerySuggester.from_pretrained(s.intent_dir)  # each search suggested again by the suggester beside the refiner
    assert any(x != q for _, q, _, x in rows) and all(set(q.split()) <= set(x.split()) and len(x.split()) <= len(q.split()) + 1 for _, q, _, x in rows)
    user, query, answer, suggested = rows[0]
    profile = ProfileReader(s).get(user)
    assert answer in profile.recent_refined_queries
    assert profile.recent_suggested_queries[profile.recent_refined_queries.index(answer)] == suggested  # pushed online beside its Q*
    titles = tuple(dict.fromkeys(c.title for c in lake_clicks(s, start, start + timedelta(minutes=10)) if (c.user_id, c.query) == (user, query)))
    assert suggested == suggester.suggest(query, titles)
    history = digest(s.features_dir / "user_intents")
    run_dag(env, "search_intents", start + timedelta(minutes=10))
    assert digest(s.features_dir / "user_intents") == history  # the rerun replaced its own file, added none
    assert ProfileReader(s).get(user).recent_refined_queries == profile.recent_refined_queries


def test_notification_targeting_writes_the_days_list_once(world: tuple[Settings, datetime, dict[str, str]]) -> None:
    s, asof, env = world
    day = asof.replace(hour=6, minute=0, second=0, microsecond=0)
    day = day if day >= asof else day + timedelta(days=1)
    hour = asof.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    _, first, again = run_dags(env, ("topic_preferences", hour), ("notification_targeting", day), ("notification_targeting", day))
    assert (first["start"], first["end"]) == ((day - timedelta(days=1)).isoformat(), day.isoformat())
    got, rerun = first["tasks"]["pick_targets"]["return"], again["tasks"]["pick_targets"]["return"]
    assert got["items"] > 0 and got["targets"] > 0 and got["path"] == rerun["path"]
    assert rerun["targets"] == got["targets"]  # the rerun replaced its own list: no pair counted as sent twice
    table = pq.read_table(got["path"]).to_pylist()
    assert len(table) == got["targets"] and len({(r["user_id"], r["item_id"]) for r in table}) == len(table)
    assert all(r["send_at"] >= day for r in table) and sum(r["send_at"] > day for r in table) == got["held"]


def test_a_run_killed_mid_way_then_rerun_leaves_consistent_outputs(world: tuple[Settings, datetime, dict[str, str]]) -> None:
    s, asof, env = world
    hour = asof.replace(minute=0, second=0, microsecond=0) + timedelta(hours=3)  # an interval no other test runs
    prefs_file = s.features_dir / "user_preferences" / f"asof={hour:%Y-%m-%dT%H%M%S}.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "dags.run", f"topic_preferences={hour.isoformat()}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    deadline = time.monotonic() + 600
    while not prefs_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the first task has just written its file; the run is not over
    out = proc.communicate()[0]
    assert "RESULT" not in out, "the run ended before it could be killed"
    # nothing half-written is visible: every table a reader's pattern matches opens whole
    for f in s.features_dir.rglob("*.parquet"):
        pq.read_table(f)
    first = run_dag(env, "topic_preferences", hour)
    assert first["tasks"]["materialize_users"]["state"] == "success"
    table = pq.read_table(prefs_file)
    assert table.num_rows == first["tasks"]["compute_preferences"]["return"]["users"]
    assert len(set(table.column("user_id").to_pylist())) == table.num_rows  # no duplicate rows
    before = hashlib.sha256(prefs_file.read_bytes()).hexdigest()
    user = table.column("user_id")[0].as_py()
    online = ProfileReader(s, now=lambda: hour).get(user)
    assert online.found and [t.topic for t in online.top(1)] == table.column("merged_l1_topics")[0].as_py()[: len(online.top(1))]
    run_dag(env, "topic_preferences", hour)
    assert hashlib.sha256(prefs_file.read_bytes()).hexdigest() == before
    assert not [p for p in s.features_dir.rglob("*.tmp")]


def test_experiment_update_applies_each_hours_logged_counts_once(tmp_path: Path) -> None:
    """experiment_update reads the window's tagged impressions and clicks per arm from the lake and
    applies them as one batch; a rerun of the hour changes nothing; the next hour adds its own."""
    data = tmp_path / "data"
    hour = datetime(2026, 12, 1, 10, tzinfo=UTC)

    def tagged(prefix: str, n: int, clicks: int, arm: str, at: datetime, experiment: str = "home1") -> list[dict]:
        rows = [{"event_id": f"{prefix}i{k}", "user_id": f"u{k % 50}", "domain": "homefeed", "type": "impression", "item_id": f"d{k}", "position": k % 10, "ts": at + timedelta(seconds=k), "experiment": experiment, "arm": arm} for k in range(n)]
        rows += [{**r, "event_id": f"{prefix}c{k}", "type": "click"} for k, r in enumerate(rows[:clicks])]
        return rows

    rows = tagged("a", 400, 60, "default", hour) + tagged("b", 400, 8, "trend", hour)
    rows += tagged("n", 100, 50, "trend", hour + timedelta(hours=1))  # the next hour
    rows += tagged("o", 100, 90, "trend", hour, experiment="other")  # another experiment
    rows += [{**r, "event_id": f"plain{k}", "experiment": None, "arm": None} for k, r in enumerate(tagged("p", 50, 50, "trend", hour))]
    Lake(data / "lake").append("events", pa.Table.from_pylist(rows, schema=EVENT_SCHEMA))
    env = airflow_env(data) | {
        "TOPICFEED_FEED__RANKERS": json.dumps({"trend": {"sources": {"topics": {"enabled": False}, "similar": {"enabled": False}}}}),
        "TOPICFEED_FEED__EXPERIMENTS": json.dumps([{"name": "home1", "type": "dynamic", "arms": {"default": 0.5, "trend": 0.5}, "warmup_impressions": 300}]),
    }
    state_file = data / "experiments" / "home1.json"
    first, again = run_dags(env, ("experiment_update", hour + timedelta(hours=1)), ("experiment_update", hour + timedelta(hours=1)))
    got = first["tasks"]["apply_batches"]["return"]["experiments"]["home1"]
    assert got == {"applied": True, "counts": {"default": [400, 60], "trend": [400, 8]}, "unmatched_clicks": 0}
    assert again["tasks"]["apply_batches"]["return"]["experiments"]["home1"]["applied"] is False
    state = json.loads(state_file.read_text())
    assert state["arms"] == {"default": {"impressions": 400, "clicks": 60}, "trend": {"impressions": 400, "clicks": 8}}
    weights = state["allocations"][-1][1]
    assert weights["default"] > 0.95 and weights["trend"] >= 0.01  # Thompson after warm-up, with the floor
    before = state_file.read_bytes()
    run_dag(env, "experiment_update", hour + timedelta(hours=1))
    assert state_file.read_bytes() == before
    nxt = run_dag(env, "experiment_update", hour + timedelta(hours=2))["tasks"]["apply_batches"]["return"]["experiments"]["home1"]
    assert nxt["counts"] == {"trend": [100, 50]} and nxt["applied"] is True
    assert json.loads(state_file.read_text())["arms"]["trend"] == {"impressions": 500, "clicks": 58}
