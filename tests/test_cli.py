"""The real console script, end to end: simulate -> ingest round trip, summary, main job, store check."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

BIN = Path(sys.executable).parent / "topicfeed"


def tf(*args: str, env: dict[str, str], check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"topicfeed {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_simulate_then_ingest_round_trip(tmp_path: Path) -> None:
    env = {"TOPICFEED_DATA_DIR": str(tmp_path / "data")}
    sim = tmp_path / "sim"
    out = tf("simulate", "--users", "300", "--days", "4", "--seed", "5", "--out", str(sim), "--format", "jsonl", env=env).stdout
    assert "events/s" in out
    manifest = json.loads((sim / "manifest.json").read_text())
    n_events, n_docs = manifest["stats"]["events"], manifest["stats"]["documents"]
    assert sum(1 for _ in (sim / "events.jsonl").open()) == n_events

    docs = tf("ingest", "documents", str(sim / "documents.jsonl"), env=env).stdout
    assert f"accepted={n_docs} quarantined=0 duplicates=0" in docs
    events = tf("ingest", "events", str(sim / "events.jsonl"), env=env).stdout
    assert f"accepted={n_events} quarantined=0 duplicates=0" in events
    assert "unknown_items=0" in events
    assert re.search(r"\(\d+\.\ds, [\d,]+ records/s\)$", events.strip())
    again = tf("ingest", "events", str(sim / "events.jsonl"), env=env).stdout
    assert f"accepted=0 quarantined=0 duplicates={n_events}" in again

    summary = json.loads(tf("summary", "--json", env=env).stdout)
    assert summary["events"]["count"] == n_events and summary["documents"]["count"] == n_docs
    for domain, ctr in manifest["stats"]["ctr"].items():
        assert summary["events"]["by_domain"][domain]["ctr"] == ctr
    # ground truth stays apart: not in the lake
    lake = tmp_path / "data" / "lake"
    assert sorted(p.name for p in lake.iterdir()) == ["documents", "events"]
    assert pq.read_table(sim / "ground_truth" / "interests.parquet").num_rows > 0


def test_bad_file_is_reported_not_crashed(tmp_path: Path) -> None:
    env = {"TOPICFEED_DATA_DIR": str(tmp_path / "data")}
    f = tmp_path / "ev.jsonl"
    f.write_text('{"event_id": "e1", "user_id": "u", "domain": "main", "type": "click", "item_id": "d", "ts": "2026-01-01T00:00:00Z"}\n{"event_id": "e2"}\n')
    proc = tf("ingest", "events", str(f), env=env)
    assert "accepted=1 quarantined=1" in proc.stdout
    assert "record 2" in proc.stderr and "field 'user_id'" in proc.stderr
    missing = tf("ingest", "events", str(tmp_path / "nope.jsonl"), env=env, check=False)
    assert missing.returncode == 2 and "no such file" in missing.stderr


MAIN_JOB_SMALL = {
    "TOPICFEED_SIMULATOR__DOCS_PER_DAY": "60",
    "TOPICFEED_MAIN_JOB__CLASSIFIER_DOCS": "60",
    "TOPICFEED_MAIN_JOB__CLASSIFIER_EPOCHS": "1",
    "TOPICFEED_MAIN_JOB__INTENT_EPOCHS": "1",
    "TOPICFEED_MAIN_JOB__INTENT_PAIRS": "40",
    "TOPICFEED_MAIN_JOB__INTENT_SEARCHES": "40",
    "TOPICFEED_MAIN_JOB__SEARCH_WINDOWS": "2",
}


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_main_job_runs_end_to_end_through_airflow(tmp_path: Path, store: str, request: pytest.FixtureRequest) -> None:
    env = {"TOPICFEED_DATA_DIR": str(tmp_path / "data"), "TOPICFEED_ONLINE_STORE": store, **MAIN_JOB_SMALL}
    if store == "redis":
        env["TOPICFEED_REDIS_URL"] = request.getfixturevalue("redis_url")
    out = tf("run", "--users", "200", "--days", "3", env=env, timeout=900).stdout
    for n in range(1, 9):
        assert f"[{n}/8] " in out
    assert "quarantined=0" in out
    assert re.search(r"classifier: 60 documents, 1 epochs in \d+s; L1 top-1 [01]\.\d\d on", out)
    assert re.search(r"content_topics \[.+\] success: classify_documents: \{\"documents\": \d+, \"classified\": \d+, \"source\": \"classifier\"\}", out)
    users, online = re.search(r'materialize_users: \{"users": (\d+), "rows": \d+, "online rows": (\d+)\}', out).groups()
    assert int(users) > 100 and online == users  # every user with events has a profile online
    assert out.count("search_intents [") == 2 and "notification_targeting [" in out
    # three users' feeds from the real HTTP service: a light user who searches, a heavy user, a new user
    assert "a light home-feed user who searches" in out and "a heavy user" in out
    assert "GET /v1/feed/new-user-1: a new user (fallback: non-personalized)" in out
    assert re.search(r"\n        1\. .+\[(topic|similar|intent)\] ", out)
    targets = int(re.search(r"\n      (\d+) targets for the day's \d+ new items", out).group(1))
    assert targets > 0 and targets == pq.read_table(next((tmp_path / "data" / "notifications" / "targets").glob("*.parquet"))).num_rows
    assert "online store" in out and (store != "sqlite" or (tmp_path / "data" / "online_store.db").is_file())
    assert (tmp_path / "data" / "airflow" / "airflow.db").is_file()
    suggester = json.loads((tmp_path / "data" / "models" / "intent" / "query_suggester.json").read_text())  # counted on the lake's searches
    assert suggester["typed"] and suggester["pair_counts"]["title"] and suggester["query_prior"] == 3.0
    assert "word tagger on the gold set + 40 mined pairs + 40 made searches" in out
    tagger = json.loads((tmp_path / "data" / "models" / "intent" / "intent_tagger.json").read_text())
    assert tagger["fit"]["search_examples"] == 40  # the search head learned from the lake's own searches


def test_store_check_sqlite_and_redis(tmp_path: Path, redis_url: str, free_port: int) -> None:
    env = {"TOPICFEED_DATA_DIR": str(tmp_path / "data")}
    sqlite = json.loads(tf("store", "check", env=env).stdout)
    assert sqlite["store"] == "sqlite" and Path(sqlite["path"]).is_file()
    redis_env = {**env, "TOPICFEED_ONLINE_STORE": "redis", "TOPICFEED_REDIS_URL": redis_url}
    ok = json.loads(tf("store", "check", env=redis_env).stdout)
    assert ok["store"] == "redis" and ok["version"]
    down = {**redis_env, "TOPICFEED_REDIS_URL": f"redis://127.0.0.1:{free_port}/0", "TOPICFEED_REDIS_TIMEOUT_S": "0.5"}
    start = time.monotonic()
    proc = tf("store", "check", env=down, check=False)
    assert proc.returncode == 3
    assert f"127.0.0.1:{free_port}" in proc.stderr and "unavailable" in proc.stderr
    assert time.monotonic() - start < 30
