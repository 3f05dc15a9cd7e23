"""Materialize 1M user profiles into Redis in <= 60 s.

Starts its own redis-server on a free 127.0.0.1 port, writes N synthetic user profiles (every
one of the 24 preference lists full: 10 topics and 10 scores, the worst case) as the offline
source, then times ``featurestore.materialize`` (our vectorised writer) for all N, and, in the
same run, Feast's own ``FeatureStore.materialize`` on a subset (it is too slow for all N) and the
library alternative to our hand-written bulk loader, a redis-py ``pipeline(transaction=False)`` fed
the same encoded bytes, on another subset, and prints rows/s of each and the ratios. The two writers produce identical Redis hashes
(tests/test_featurestore.py checks that).

    .venv/bin/python benchmarks/bench_materialize.py [--users 1000000] [--feast-users 20000]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis

from featurestore import layout, repo
from featurestore.definitions import feature_definitions
from featurestore.materialize import BATCH, encode_timestamps, encode_values, entity_keys, materialize_view
from featurestore.preferences import profile_columns
from topicfeed.settings import DEFAULT_TAXONOMY, FeastSettings, Settings
from topicfeed.taxonomy import Taxonomy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import local_redis_server  # noqa: E402  (the tests' real redis-server helper)


def synthetic_profiles(n: int, asof: datetime, k: int = 10, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    tax = Taxonomy.load(DEFAULT_TAXONOMY)
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    cols: dict[str, pa.Array] = {"user_id": pa.array([f"u{i:08d}" for i in range(n)])}
    for name, _, level, kind in profile_columns(3):
        if kind == "topics":
            names = pa.array([t.path for t in tax if t.level == level])
            cols[name] = pa.ListArray.from_arrays(offsets, names.take(pa.array(rng.integers(0, len(names), n * k))))
        else:
            scores = np.sort(rng.random((n, k), dtype=np.float32), axis=1)[:, ::-1].ravel()
            cols[name] = pa.ListArray.from_arrays(offsets, pa.array(scores))
    stamp = pa.array(np.full(n, int(asof.timestamp() * 1e6)), pa.timestamp("us", tz="UTC"))
    cols["event_timestamp"] = stamp
    cols["created_timestamp"] = stamp
    return pa.table(cols)


def run(settings: Settings, rows: pa.Table, engine: str, asof: datetime) -> float:
    folder = settings.features_dir / "user_preferences"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, folder / "bench.parquet")
    store = repo.get_store(settings)
    repo.apply(settings, store)
    start = time.perf_counter()
    if engine == "feast":
        store.materialize(asof - timedelta(days=1), asof, feature_views=["user_topic_preferences"])
    else:
        view = feature_definitions(settings).user_topic_preferences
        materialize_view(settings, store, view, folder, "user_id", asof - timedelta(days=1), asof)
    return time.perf_counter() - start


def redis_py_pipeline(settings: Settings, rows: pa.Table) -> float:
    """The library alternative to our bulk loader: the same encoded bytes (the same encoders, keys,
    fields, timestamps and TTL), sent with a redis-py ``pipeline(transaction=False)``, one ``HSET``
    with a mapping and one ``EXPIRE`` per row, executed every ``BATCH`` rows. Returns seconds,
    encoding included as in ours."""
    view = feature_definitions(settings).user_topic_preferences
    names = [f.name for f in view.features]
    client = redis.Redis.from_url(settings.redis_url)
    start = time.perf_counter()
    rows = rows.combine_chunks()
    encoded = {n: encode_values(rows.column(n).chunk(0), view, n).to_pylist() for n in names}
    keys = pc.binary_join_element_wise(entity_keys("user_id", rows.column("user_id").chunk(0)), pa.scalar(settings.feast.project.encode()), b"").to_pylist()
    stamps = encode_timestamps(pc.cast(rows.column("event_timestamp"), pa.timestamp("us", tz="UTC")).cast(pa.int64()).chunk(0)).to_pylist()
    fields = [layout.redis_field(view.name, n) for n in names]
    ts_field, ttl = layout.redis_ts_field(view.name), layout.redis_key_ttl_seconds(settings)
    pipe = client.pipeline(transaction=False)
    for i, key in enumerate(keys):
        mapping = {f: encoded[n][i] for f, n in zip(fields, names)}
        mapping[ts_field] = stamps[i]
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, ttl)
        if (i + 1) % BATCH == 0:
            pipe.execute()
    pipe.execute()
    seconds = time.perf_counter() - start
    client.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--feast-users", type=int, default=20_000)
    parser.add_argument("--redis-py-users", type=int, default=200_000, help="profiles sent through a redis-py pipeline, the library alternative")
    parser.add_argument("--target-s", type=float, default=60.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    with local_redis_server(tmp) as url:
        client = redis.Redis.from_url(url)
        asof = datetime.now(UTC).replace(microsecond=0)
        t = time.perf_counter()
        profiles = synthetic_profiles(args.users, asof)
        print(f"generated {args.users:,} profiles x 24 lists of 10 in {time.perf_counter() - t:.1f}s")
        ours = Settings(data_dir=tmp / "ours", online_store="redis", redis_url=url, feast=FeastSettings(project="ours"))
        ours_s = run(ours, profiles, "topicfeed", asof)
        keys = client.dbsize()
        memory = client.info("memory")["used_memory"] / 1e9
        print(f"topicfeed materialize: {args.users:,} profiles into Redis in {ours_s:.1f}s = {args.users / ours_s:,.0f} rows/s ({keys:,} keys, Redis holds {memory:.2f} GB)")
        theirs = Settings(data_dir=tmp / "feast", online_store="redis", redis_url=url, feast=FeastSettings(project="feast"))
        feast_s = run(theirs, profiles.slice(0, args.feast_users), "feast", asof)
        feast_rate = args.feast_users / feast_s
        print(f"feast materialize:     {args.feast_users:,} profiles in {feast_s:.1f}s = {feast_rate:,.0f} rows/s (1M would take about {1e6 / feast_rate:,.0f}s)")
        print(f"ratio topicfeed/feast: {args.users / ours_s / feast_rate:.1f}x rows/s")
        n_py = min(args.redis_py_users, args.users)
        lib = Settings(data_dir=tmp / "redispy", online_store="redis", redis_url=url, feast=FeastSettings(project="redispy"))
        py_s = redis_py_pipeline(lib, profiles.slice(0, n_py))
        py_rate = n_py / py_s
        sample = [f"u{i:08d}" for i in range(0, n_py, max(1, n_py // 500))]
        same = all(
            client.hgetall(layout.serialize_key("user_id", u) + b"ours") == client.hgetall(layout.serialize_key("user_id", u) + b"redispy") for u in sample
        )
        print(f"redis-py pipeline(transaction=False), same encoded bytes: {n_py:,} profiles in {py_s:.1f}s = {py_rate:,.0f} rows/s (1M would take about {1e6 / py_rate:,.0f}s); same hashes as ours on {len(sample)} sampled users: {same}")
        print(f"ratio topicfeed/redis-py pipeline: {args.users / ours_s / py_rate:.2f}x rows/s; redis-py meets the {args.target_s:.0f}s bar: {'yes' if 1e6 / py_rate <= args.target_s else 'no'}")
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB")
        per_million = ours_s * 1e6 / args.users
        print(f"1M profiles take {per_million:.1f}s (target <= {args.target_s:.0f}s): {'PASS' if per_million <= args.target_s else 'FAIL'}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
