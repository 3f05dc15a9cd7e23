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

BIN = Path(sys.executable).parent / "topicfeed"


def tf(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
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


def test_main_job_runs_on_embedded_defaults(tmp_path: Path) -> None:
    env = {"TOPICFEED_DATA_DIR": str(tmp_path / "data"), "TOPICFEED_SIMULATOR__DOCS_PER_DAY": "60"}
    out = tf("run", "--users", "200", "--days", "3", env=env).stdout
    assert "[1/5] simulate" in out and "[5/5] nDCG@10" in out
    assert "quarantined=0" in out
    shares = json.loads(re.search(r"shares: (\{.*\})", out).group(1))
    assert 0.5 < shares["light_of_homefeed_users"] < 1 and 0 < shares["light_users_who_search"] <= 1
    users_with_events = re.search(r"events: \d+ from (\d+) users", out).group(1)
    assert f"user_topic_preferences={users_with_events}," in out  # every active user has a profile online
    assert "homefeed" in out and "search" in out
    assert "top level-2 topics" in out
    # three users' feeds with reasons: a light user who searches, a heavy user, a new user (fallback)
    assert "feed of a light home-feed user who searches" in out and "feed of a heavy user" in out
    assert "feed of a new user, new-user-1 (fallback: non-personalized)" in out
    assert re.search(r"\n  1\. .+\[(topic|similar|intent)\] ", out)
    assert (tmp_path / "data" / "feature_repo" / "feature_store.yaml").is_file()
    assert (tmp_path / "data" / "online_store.db").is_file()


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
