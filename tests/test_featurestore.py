"""Feast feature store against real SQLite and a real Redis server."""

from __future__ import annotations

import shutil
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from featurestore import intents, repo
from featurestore.jobs import compute_features, default_asof
from featurestore.materialize import complete_replies, encode_float_lists, encode_string_lists, entity_keys
from featurestore.online import OnlineStoreUnavailable
from featurestore.profile import ProfileReader
from topicfeed.ingest import ingest
from topicfeed.lake import Lake
from topicfeed.schemas import EVENT_SCHEMA
from topicfeed.settings import FeastSettings, Settings, SimulatorSettings
from topicfeed.simulator import simulate

from redis_server import local_redis_server

STORES = ["sqlite", "redis"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    """A small simulated world, ingested, with offline features computed (store independent)."""
    base = tmp_path_factory.mktemp("world")
    s = Settings(data_dir=base / "data", simulator=SimulatorSettings(users=300, days=5, docs_per_day=60, seed=21))
    sim = simulate(s, base / "sim")
    for kind in ("documents", "events"):
        ingest(kind, sim.files[kind], s)
    asof = default_asof(s)
    compute_features(s, asof)
    return base / "data", asof


def make_settings(kind: str, world: tuple[Path, datetime], tmp_path: Path, redis_url: str) -> Settings:
    data, _ = world
    target = tmp_path / "data"
    shutil.copytree(data, target)
    project = f"t{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        return Settings(data_dir=target, feast=FeastSettings(project=project))
    return Settings(data_dir=target, online_store="redis", redis_url=redis_url, feast=FeastSettings(project=project))


def wide_rows(s: Settings) -> dict[str, dict]:
    files = sorted((s.features_dir / "user_preferences").glob("*.parquet"))
    return {r["user_id"]: r for r in pq.read_table(files[-1]).to_pylist()}


def load(s: Settings, asof: datetime, engine: str = "topicfeed") -> list:
    store = repo.get_store(s)
    repo.apply(s, store)
    return repo.materialize(s, asof - timedelta(days=30), asof, store, engine=engine)


@pytest.mark.parametrize("kind", STORES)
def test_materialize_and_read_back_exact_values(kind: str, world, tmp_path: Path, redis_url: str) -> None:
    s = make_settings(kind, world, tmp_path, redis_url)
    reports = {r.view: r for r in load(s, world[1])}
    expected = wide_rows(s)
    assert reports["user_topic_preferences"].written == len(expected) > 0
    reader = ProfileReader(s)
    for user_id in list(expected)[:40]:
        profile = reader.get(user_id)
        row = expected[user_id]
        assert profile.found
        for domain in ("merged", "homefeed", "search", "main"):
            for level in (1, 2, 3):
                got = profile.top(level, domain)
                assert [t.topic for t in got] == row[f"{domain}_l{level}_topics"]
                assert np.array_equal(np.float32([t.score for t in got]), np.float32(row[f"{domain}_l{level}_scores"]))
        # the Feast SDK reads the same values
        assert reader.get_via_sdk(user_id).preferences == profile.preferences


@pytest.mark.parametrize("kind", STORES)
def test_our_materialize_writes_what_feast_writes(kind: str, world, tmp_path: Path, redis_url: str) -> None:
    ours = make_settings(kind, world, tmp_path / "a", redis_url)
    theirs = make_settings(kind, world, tmp_path / "b", redis_url)
    theirs = theirs.model_copy(update={"feast": ours.feast})  # same project: same keys
    if kind == "redis":
        theirs = theirs.model_copy(update={"redis_url": redis_url.rsplit("/", 1)[0] + "/1"})
    load(ours, world[1], "topicfeed")
    load(theirs, world[1], "feast")
    if kind == "sqlite":
        for view in ("user_topic_preferences", "item_topics", "item_stats"):
            q = f"select entity_key, feature_name, value, value_text, event_ts from {ours.feast.project}_{view}"
            a = set(sqlite3.connect(ours.sqlite_path).execute(q).fetchall())
            b = set(sqlite3.connect(theirs.sqlite_path).execute(q).fetchall())
            assert a == b and len(a) > 0
    else:
        a, b = redis.Redis.from_url(redis_url), redis.Redis.from_url(theirs.redis_url)
        keys = [k for k in a.keys() if k.endswith(ours.feast.project.encode())]
        assert len(keys) > 0 and len(keys) == len([k for k in b.keys() if k.endswith(ours.feast.project.encode())])
        assert all(a.hgetall(k) == b.hgetall(k) for k in keys)
        assert 0 < a.ttl(keys[0]) <= ours.feast.item_ttl_days * 86400  # stale profiles expire by themselves
        b.flushdb()


@pytest.mark.parametrize("kind", STORES)
def test_push_intent_is_readable_at_once(kind: str, world, tmp_path: Path, redis_url: str) -> None:
    s = make_settings(kind, world, tmp_path, redis_url)
    load(s, world[1])
    user = next(iter(wide_rows(s)))
    now = datetime.now(UTC)
    intents.push_intents(s, [{"user_id": user, "query": "aespa", "refined_query": "aespa japan album hot mess", "ts": now.isoformat()}])
    profile = ProfileReader(s).get(user)
    assert profile.last_query == "aespa" and profile.last_refined_query == "aespa japan album hot mess"
    assert profile.recent_suggested_queries == [""]  # pushed without a suggestion
    later = (now + timedelta(seconds=5)).isoformat()
    intents.push_intents(s, [{"user_id": user, "query": "aespa tour", "refined_query": "aespa world tour seoul", "suggested_query": "aespa tour seoul", "ts": later}])
    profile = ProfileReader(s).get(user)
    assert profile.recent_refined_queries == ["aespa world tour seoul", "aespa japan album hot mess"]
    assert profile.recent_suggested_queries == ["aespa tour seoul", ""]  # each beside its Q*, through the merge
    assert profile.recent_intent_ts == sorted(profile.recent_intent_ts, reverse=True)
    assert profile.preferences  # preferences untouched by the push
    history = sorted((r for r in pq.read_table(s.features_dir / "user_intents").to_pylist() if r["user_id"] == user), key=lambda r: r["event_timestamp"])
    # every push is kept offline too, in order, with the user's recent list as it stood then
    assert [r["last_query"] for r in history] == ["aespa", "aespa tour"]
    assert history[-1]["recent_refined_queries"] == ["aespa world tour seoul", "aespa japan album hot mess"]
    assert history[-1]["recent_suggested_queries"] == ["aespa tour seoul", ""]


@pytest.mark.parametrize("kind", STORES)
def test_ttl_unknown_user_and_idempotence(kind: str, world, tmp_path: Path, redis_url: str) -> None:
    s = make_settings(kind, world, tmp_path, redis_url)
    asof = world[1]
    load(s, asof)
    user = next(iter(wide_rows(s)))
    assert ProfileReader(s).get(user).found
    late = ProfileReader(s, now=lambda: asof + timedelta(days=s.feast.profile_ttl_days + 1))
    assert not late.get(user).found and late.get(user).preferences == {}
    unknown = ProfileReader(s).get("nobody-" + uuid.uuid4().hex)
    assert asdict(unknown) == asdict(type(unknown)(unknown.user_id))
    # recomputing the same window and materializing again changes nothing
    before = ProfileReader(s).get(user)
    compute_features(s, asof)
    again = {r.view: r for r in load(s, asof)}
    assert again["user_topic_preferences"].written == 0
    assert again["user_topic_preferences"].skipped_not_newer == again["user_topic_preferences"].rows
    assert ProfileReader(s).get(user) == before


def test_recomputation_is_deterministic_and_late_events_count_next_time(world, tmp_path: Path, redis_url: str) -> None:
    s = make_settings("sqlite", world, tmp_path, redis_url)
    asof = world[1]
    first = compute_features(s, asof)
    a = pq.read_table(first["preferences"]).drop_columns(["created_timestamp"]).to_pylist()
    second = compute_features(s, asof)
    assert pq.read_table(second["preferences"]).drop_columns(["created_timestamp"]).to_pylist() == a
    # a late click (an hour before as-of, arriving after the first computation) counts in the next window
    user, row = next((u, r) for u, r in wide_rows(s).items() if r["homefeed_l1_topics"])
    docs = Lake(s.lake_dir).read("documents", columns=["doc_id", "topics"]).to_pylist()
    target = next(d for d in docs if d["topics"] and d["topics"][0].split(" > ")[0] not in row["merged_l1_topics"][:1])
    late = [
        {"event_id": f"late-{i}", "user_id": user, "domain": "homefeed", "type": t, "item_id": target["doc_id"], "query": None, "position": 0, "ts": asof - timedelta(hours=1)}
        for i, t in enumerate(["impression", "click"] * 30)
    ]
    Lake(s.lake_dir).append("events", pa.Table.from_pylist(late, schema=EVENT_SCHEMA))
    compute_features(s, asof + timedelta(minutes=1))
    after = wide_rows(s)[user]
    assert after["homefeed_l1_topics"][0] == target["topics"][0].split(" > ")[0]


def test_redis_unavailable_is_a_clear_error_not_a_hang(world, tmp_path: Path, free_port: int) -> None:
    s = make_settings("redis", world, tmp_path, f"redis://127.0.0.1:{free_port}/0").model_copy(update={"redis_timeout_s": 0.5})
    start = time.perf_counter()
    with pytest.raises(OnlineStoreUnavailable, match=f"127.0.0.1:{free_port}"):
        ProfileReader(s).get("u1")
    with pytest.raises(OnlineStoreUnavailable, match="unavailable"):
        load(s, world[1])
    assert time.perf_counter() - start < 20


def test_one_reader_shared_by_threads_reads_each_profile_whole(world, tmp_path: Path, redis_url: str) -> None:
    """Each thread reads on its own connection: replies never cross between concurrent readers."""
    s = make_settings("redis", world, tmp_path, redis_url)
    load(s, world[1])
    users = sorted(wide_rows(s))[:40]
    reader = ProfileReader(s)
    expected = {u: reader.get(u) for u in users}
    assert all(p.found for p in expected.values())
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda u: (u, reader.get(u)), users * 10))
        many = list(pool.map(lambda i: reader.get_many(users[i : i + 7]), range(0, 40, 7)))
    assert all(p == expected[u] for u, p in got)
    assert [p for batch in many for p in batch] == [expected[u] for u in users]
    reader.close()
    assert reader.get(users[0]) == expected[users[0]]  # reopens after close


def test_redis_lost_mid_session_is_a_clear_error_then_recovers(world, tmp_path: Path) -> None:
    """A reader whose pooled connection dies (server stopped) raises OnlineStoreUnavailable quickly;
    a server back on the same port is used again, with no stale connection reused."""
    with local_redis_server(tmp_path / "r1") as url:
        s = make_settings("redis", world, tmp_path, url).model_copy(update={"redis_timeout_s": 0.5})
        load(s, world[1])
        reader = ProfileReader(s)
        user = next(iter(wide_rows(s)))
        before = reader.get(user)
        assert before.found
        port = int(url.rsplit(":", 1)[1].split("/")[0])
    start = time.perf_counter()
    for call in (lambda: reader.get(user), lambda: reader.get_many([user, "nobody"])):
        with pytest.raises(OnlineStoreUnavailable, match=f"127.0.0.1:{port}"):
            call()
    assert time.perf_counter() - start < 10
    with local_redis_server(tmp_path / "r2", port=port):
        load(s, world[1])
        assert reader.get(user) == before
        assert [p.found for p in reader.get_many([user, "nobody"])] == [True, False]


def test_feature_store_yaml_from_settings(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, online_store="redis", redis_url="redis://:secret@10.1.2.3:6380/2")
    cfg = repo.feature_store_config(s)
    assert cfg["online_store"]["connection_string"] == "10.1.2.3:6380,db=2,password=secret"
    assert cfg["online_store"]["key_ttl_seconds"] == 90 * 86400
    assert repo.feature_store_config(Settings(data_dir=tmp_path))["online_store"] == {"type": "sqlite", "path": str((tmp_path / "online_store.db").resolve())}
    assert "project: topicfeed" in repo.write_feature_store_yaml(s).read_text()
    with pytest.raises(ValueError, match="redis://"):
        repo.redis_connection_string("http://x")


@hsettings(max_examples=60, deadline=None)
@given(
    strings=st.lists(st.none() | st.lists(st.text(max_size=150), max_size=12), min_size=1, max_size=20),
    floats=st.lists(st.none() | st.lists(st.floats(width=32, allow_nan=False), max_size=12), min_size=1, max_size=20),
    offset=st.integers(0, 3),
)
def test_encoders_write_exactly_what_feast_writes(strings: list, floats: list, offset: int) -> None:
    col = pa.array([["pad"]] * offset + strings, pa.list_(pa.string())).slice(offset)
    expected = [b"" if v is None else p.SerializeToString() for v, p in zip(strings, python_values_to_proto_values(strings, ValueType.STRING_LIST))]
    assert encode_string_lists(col).to_pylist() == expected
    fcol = pa.array([[0.0]] * offset + floats, pa.list_(pa.float32())).slice(offset)
    as_np = [None if v is None else np.array(v, dtype=np.float32) for v in floats]
    expected = [b"" if v is None else p.SerializeToString() for v, p in zip(as_np, python_values_to_proto_values(as_np, ValueType.FLOAT_LIST))]
    assert encode_float_lists(fcol).to_pylist() == expected


def test_entity_keys_are_feasts() -> None:
    ids = ["u1", "ünïcode", "x" * 300, ""]
    expected = [serialize_entity_key(EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(string_val=v)]), entity_key_serialization_version=3) for v in ids]
    assert entity_keys("user_id", pa.array(ids)).to_pylist() == expected


def test_bulk_loader_counts_every_reply_type_split_anywhere() -> None:
    """The bulk loader's reply counter walks RESP replies of every type, whatever the chunking."""
    replies = [b":1\r\n", b"+OK\r\n", b"$5\r\na\r\nb:\r\n", b"$-1\r\n", b"*2\r\n:3\r\n$2\r\n\r\n\r\n", b"*-1\r\n", b":-7\r\n", b"-ERR wrong type\r\n", b"%1\r\n+k\r\n:1\r\n", b"_\r\n", b",1.5\r\n", b":12\r\n"]
    stream = b"".join(replies)
    assert complete_replies(stream) == (len(replies), len(stream), "ERR wrong type")
    for cut in range(len(stream) + 1):
        count, end, _ = complete_replies(stream[:cut])
        # exactly the replies that end at or before the cut are complete
        ends = [sum(len(r) for r in replies[: i + 1]) for i in range(len(replies))]
        assert count == sum(e <= cut for e in ends) and end == max([0] + [e for e in ends if e <= cut])
        rest, end2, _ = complete_replies(stream[end:])
        assert count + rest == len(replies) and end + end2 == len(stream)
