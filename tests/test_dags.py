"""The DAGs under a real Airflow: DagBag imports them cleanly; each runs end to end with ``dag.test()``
(SQLite metadata DB) on a small simulated world against the SQLite online store, writes what it
should, and a rerun of the same interval changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from featurestore.jobs import simulated_world
from featurestore.profile import ProfileReader
from intent.model import IntentRefiner
from topicfeed.lake import Lake
from topicfeed.settings import Settings, SimulatorSettings

from tiny_lm import tiny_llama_dir

RUNNER = Path(__file__).parent / "run_dag.py"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, datetime, dict[str, str]]:
    base = tmp_path_factory.mktemp("dag-world")
    s = Settings(data_dir=base / "data", simulator=SimulatorSettings(users=200, days=3, docs_per_day=40, seed=5))
    asof = simulated_world(s, base / "sim")
    IntentRefiner.from_base(tiny_llama_dir(base / "lm"), num_beams=2, max_new_tokens=6).save_pretrained(s.intent_dir)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(base / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).parent.parent / "dags"),
        "TOPICFEED_DATA_DIR": str(s.data_dir),
    }
    return s, asof, env


def run_dag(env: dict[str, str], dag_id: str, logical: datetime) -> dict:
    got = subprocess.run([sys.executable, str(RUNNER), dag_id, logical.isoformat()], env=env, capture_output=True, text=True, timeout=600)
    lines = [x for x in got.stdout.splitlines() if x.startswith("RESULT ")]
    assert got.returncode == 0 and lines, got.stdout[-3000:] + got.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["state"] == "success" and all(t["state"] == "success" for t in result["tasks"].values()), result
    return result


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
    assert out["dags"] == {"content_topics": "CronDataIntervalTimetable", "search_intents": "CronDataIntervalTimetable", "topic_preferences": "AssetOrTimeSchedule"}


def test_content_topics_then_preferences_fill_the_store_and_reruns_change_nothing(world: tuple[Settings, datetime, dict[str, str]]) -> None:
    s, asof, env = world
    hour = asof.replace(minute=0, second=0, microsecond=0)  # Airflow 3: the logical date ends the interval
    topics = run_dag(env, "content_topics", hour)
    assert (topics["start"], topics["end"]) == ((hour - timedelta(hours=1)).isoformat(), hour.isoformat())
    assert topics["tasks"]["classify_documents"]["return"]["source"] == "gold topics"
    prefs = run_dag(env, "topic_preferences", hour)
    end = datetime.fromisoformat(prefs["end"])
    written = s.features_dir / "user_preferences" / f"asof={end:%Y-%m-%dT%H%M%S}.parquet"
    assert written.is_file() and prefs["tasks"]["compute_preferences"]["return"]["users"] > 50
    user = duckdb.connect().execute(f"select user_id from '{written}' limit 1").fetchone()[0]
    before = (digest(s.features_dir / "user_preferences"), digest(s.features_dir / "item_topics"), ProfileReader(s, now=lambda: end).get(user))
    assert before[2].found and before[2].top(1)
    run_dag(env, "content_topics", hour)
    run_dag(env, "topic_preferences", hour)  # the same interval again
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
    rows = duckdb.connect().execute(f"select user_id, query, refined_query from '{window_file}'").fetchall()
    assert len(rows) == refined and all(set(q.split()) <= set(r.split()) or r for _, q, r in rows)
    user, query, answer = rows[0]
    profile = ProfileReader(s).get(user)
    assert answer in profile.recent_refined_queries
    history = digest(s.features_dir / "user_intents")
    run_dag(env, "search_intents", start + timedelta(minutes=10))
    assert digest(s.features_dir / "user_intents") == history  # the rerun replaced its own file, added none
    assert ProfileReader(s).get(user).recent_refined_queries == profile.recent_refined_queries
