"""Feed latency, in process and over HTTP, and the feed under a Redis outage.

On a simulated world (2,000 users, 14 days by default) with features computed and loaded:

1. in process: ``Ranker.rank`` over every user with the default sources (about 500 candidates each),
   p50/p99, against Feast's own ``get_online_features`` of the same users' profiles in the same run
   (the issue's reference point: a tuned single-row Feast read);
2. over HTTP on loopback: ``topicfeed serve --workers W`` (SQLite online store), loaded by ``wrk``
   (Debian's package) for ``--seconds`` with random users: requests/s, p99, non-2xx responses; once
   with the service's default feed memo (exact reuse while catalog, profile and the user's events are
   unchanged; its hit rate printed) and once with the memo off (every request read and ranked);
3. with Redis: the same load while Redis is stopped after a third of the run and started again (and
   the profiles loaded again) after two thirds: non-2xx responses, and the service's own count of
   fallbacks from ``/metrics``.

    .venv/bin/python benchmarks/bench_feed.py [--seconds 60] [--workers 2] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from featurestore.jobs import refresh_online, simulated_world
from featurestore.profile import ProfileReader
from feed.catalog import Catalog
from feed.ranker import Ranker
from topicfeed.settings import FeastSettings, Settings, SimulatorSettings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import free_port, local_redis_server  # noqa: E402  (the tests' real redis-server helper)

BIN = Path(sys.executable).parent / "topicfeed"


def percentiles(xs: list[float]) -> str:
    return f"p50 {np.percentile(xs, 50) * 1e3:.2f} ms, p99 {np.percentile(xs, 99) * 1e3:.2f} ms"


def serve(data: Path, env: dict[str, str], workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # a fresh metrics folder per server: importing Feast here sets PROMETHEUS_MULTIPROC_DIR in this
    # process, and servers that inherit one folder sum each other's counters (the memo-off run's hit rate)
    metrics = tempfile.mkdtemp(prefix="bench-feed-metrics-")
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port), "--workers", str(workers)], env={**os.environ, "TOPICFEED_DATA_DIR": str(data), "PROMETHEUS_MULTIPROC_DIR": metrics, **env})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code in (200, 503):
                time.sleep(2 * workers)  # every worker up
                return proc, url
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the service did not start")


def wrk(url: str, users: list[str], seconds: int, connections: int, tmp: Path) -> dict[str, float]:
    script = tmp / "feed.lua"
    script.write_text(
        "local users = {" + ",".join(f'"{u}"' for u in users) + "}\n"
        'request = function() return wrk.format("GET", "/v1/feed/" .. users[math.random(#users)] .. "?limit=20") end\n'
    )
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    print("  $ " + " ".join(cmd))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale, "non2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": sum(map(int, errors.groups())) if errors else 0, "requests": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    s = Settings(data_dir=tmp / "data", simulator=SimulatorSettings(users=args.users, days=args.days))
    asof = simulated_world(s, tmp / "sim")
    catalog = Catalog.load(s)
    users = sorted(catalog.clicked)

    # 1. in process -------------------------------------------------------------------------------
    reader = ProfileReader(s, now=lambda: asof)
    profiles = {u: reader.get(u) for u in users}
    ranker = Ranker(s.feed)
    times, cands = [], []
    for _ in range(2):
        for u in users:
            t = time.perf_counter()
            feed = ranker.rank(catalog, profiles[u], user_id=u, limit=20, now=asof)
            times.append(time.perf_counter() - t)
            cands.append(feed.candidates)
    from featurestore.repo import get_store

    store = get_store(s)
    service = store.get_feature_service("user_profile")
    feast_times = []
    for u in users[:500]:
        t = time.perf_counter()
        store.get_online_features(features=service, entity_rows=[{"user_id": u}])
        feast_times.append(time.perf_counter() - t)
    print(f"in process: Ranker.rank, {len(times):,} feeds of 20 from {np.mean(cands):.0f} candidates on average (p99 {np.percentile(cands, 99):.0f}): {percentiles(times)}")
    print(f"  baseline, same run: Feast get_online_features of one profile (SQLite): {percentiles(feast_times)}")
    p99 = np.percentile(times, 99) * 1e3
    print(f"  ranking p99 {p99:.2f} ms (target <= 5 ms): {'PASS' if p99 <= 5 else 'FAIL'}; {np.percentile(feast_times, 99) / np.percentile(times, 99):.1f}x under Feast's own read")

    # 2. HTTP, SQLite: the default (memo on), then every request ranked (memo off) -----------------------
    sample = [*users, *(f"new-user-{i}" for i in range(100))]
    for label, env in (("memo on (default)", {}), ("memo off", {"TOPICFEED_FEED__MEMO_SIZE": "0"})):
        proc, url = serve(s.data_dir, env, args.workers)
        try:
            got = wrk(url, sample, args.seconds, args.connections, tmp)
            memo = {k: sum(float(x) for x in re.findall(rf'topicfeed_feed_memo_total\{{outcome="{k}"\}} ([\d.e+]+)', httpx.get(f"{url}/metrics").text)) for k in ("hit", "miss")}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        asked = memo["hit"] + memo["miss"]
        rate = f", memo hits {memo['hit'] / asked:.1%} of personal reads (all workers)" if asked else ""
        print(f"HTTP (SQLite, {label}, {args.workers} workers, {args.connections} connections, {args.seconds}s): {got['rps']:,.0f} req/s, p99 {got['p99_ms']:.1f} ms, {got['requests']:,} requests, non-2xx {got['non2xx']}, socket errors {got['socket_errors']}{rate}")
        ok = got["rps"] >= 800 and got["p99_ms"] <= 20 and got["non2xx"] == 0 and got["socket_errors"] == 0
        print(f"  target >= 800 req/s, p99 <= 20 ms, 0 errors: {'PASS' if ok else 'FAIL'}")

    # 3. Redis stopped mid-run --------------------------------------------------------------------------
    port = free_port()
    r = Settings(data_dir=tmp / "redis-data", online_store="redis", feast=FeastSettings(project="benchfeed"))
    shutil.copytree(s.data_dir, r.data_dir)
    with local_redis_server(tmp / "r1", port=port) as redis_url:
        r = r.model_copy(update={"redis_url": redis_url})
        refresh_online(r, asof)
        env = {"TOPICFEED_ONLINE_STORE": "redis", "TOPICFEED_REDIS_URL": redis_url, "TOPICFEED_FEAST__PROJECT": "benchfeed"}
        proc, url = serve(r.data_dir, env, args.workers)
        results: dict[str, dict[str, float]] = {}
        loader = threading.Thread(target=lambda: results.setdefault("run", wrk(url, users, args.seconds, args.connections, tmp)))
        loader.start()
        time.sleep(args.seconds / 3)
    print(f"  Redis stopped at {args.seconds / 3:.0f}s")
    time.sleep(args.seconds / 3)
    with local_redis_server(tmp / "r2", port=port):
        refresh_online(r, asof)
        print(f"  Redis back (profiles loaded again) at {2 * args.seconds / 3:.0f}s")
        loader.join()
        personal = httpx.get(f"{url}/v1/feed/{users[0]}").json()["fallback"] is False
        metrics = httpx.get(f"{url}/metrics").text
        proc.terminate()
        proc.wait(timeout=30)
    got = results["run"]
    fallbacks = sum(float(x) for x in re.findall(r'topicfeed_feed_fallbacks_total\{reason="store"\} ([\d.e+]+)', metrics))
    print(f"HTTP (Redis, stopped for a third of the run): {got['rps']:,.0f} req/s, p99 {got['p99_ms']:.1f} ms, non-2xx {got['non2xx']}, socket errors {got['socket_errors']}; fallbacks for the store (the worker asked): {fallbacks:.0f}; personalized again after: {personal}")
    print(f"  target 0 5xx, fallback while Redis is down, personalized again after: {'PASS' if got['non2xx'] == 0 and fallbacks > 0 and personal else 'FAIL'}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
