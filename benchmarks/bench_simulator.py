"""Simulator speed: 10M events in <= 60 s on a 2-core machine.

Prints events/s of ``topicfeed simulate`` (world, logs, tables and Parquet files included) and its
time for 10M events against the target. In the same run it measures one kernel both ways, a
straightforward per-event Python loop and the numpy form the simulator uses, on identical work
(draw home-feed impressions by popularity, then clicks from a position-biased click model), and
prints the ratio.

    .venv/bin/python benchmarks/bench_simulator.py [--events 10000000]
"""

from __future__ import annotations

import argparse
import bisect
import random
import resource
import tempfile
import time

import numpy as np

from topicfeed.settings import Settings, SimulatorSettings
from topicfeed.simulator import simulate

EVENTS_PER_USER_DAY = 17.7  # measured: default rates give about this many events per user and day


def vectorised_events_per_s(n_events: int = 300_000, n_docs: int = 10_000, slots: int = 10) -> float:
    """The same kernel with numpy, as the simulator does it."""
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, n_docs + 1) ** 1.1
    quality, interest = rng.beta(5, 2, n_docs), rng.random(n_docs)
    start = time.perf_counter()
    sessions = n_events // slots
    cum = np.cumsum(weights)
    user = np.repeat(rng.integers(100_000, size=sessions), slots)
    ts = np.repeat(rng.integers(86_400, size=sessions), slots)
    pos = np.tile(np.arange(slots), sessions)
    doc = np.searchsorted(cum, rng.random(len(pos)) * cum[-1], side="right")
    click = rng.random(len(pos)) < (1 / (1 + pos)) ** 0.5 * quality[doc] * (0.01 + 0.3 * interest[doc])
    n = len(doc) + int(click.sum())
    _ = (user, ts + 5 * click)
    return n / (time.perf_counter() - start)


def baseline_events_per_s(n_events: int = 300_000, n_docs: int = 10_000, slots: int = 10) -> float:
    """Plain Python: for every session and slot, draw a document by popularity, then a click."""
    rng = random.Random(0)
    weights = [1.0 / (r + 1) ** 1.1 for r in range(n_docs)]
    cum, total = [], 0.0
    for w in weights:
        total += w
        cum.append(total)
    quality = [rng.betavariate(5, 2) for _ in range(n_docs)]
    interest = [rng.random() for _ in range(n_docs)]
    out = []
    start = time.perf_counter()
    while len(out) < n_events:
        user = rng.randrange(100_000)
        ts = rng.randrange(86_400)
        for pos in range(slots):
            doc = bisect.bisect_right(cum, rng.random() * total)
            out.append((user, "homefeed", "impression", doc, pos, ts))
            if rng.random() < (1 / (1 + pos)) ** 0.5 * quality[doc] * (0.01 + 0.3 * interest[doc]):
                out.append((user, "homefeed", "click", doc, pos, ts + 5))
    return len(out) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--target-s", type=float, default=60.0)
    args = parser.parse_args()
    users = max(1, round(args.events / EVENTS_PER_USER_DAY / args.days))
    settings = Settings(simulator=SimulatorSettings(users=users, days=args.days, docs_per_day=400))
    with tempfile.TemporaryDirectory() as out:
        result = simulate(settings, out)
    n, t = result.stats["events"], result.timings["total_s"]
    rate = n / t
    base = baseline_events_per_s()
    vec = vectorised_events_per_s()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"simulate: {n:,} events, {users:,} users x {args.days} days in {t:.1f}s = {rate:,.0f} events/s; peak RSS {peak_gb:.1f} GB")
    print("  phases: " + ", ".join(f"{k}={v:.1f}s" for k, v in result.timings.items()))
    per_10m = 10_000_000 / rate
    print(f"10M events take {per_10m:.1f}s; target {args.target_s:.0f}s; ratio time/target {per_10m / args.target_s:.2f}: {'PASS' if per_10m <= args.target_s else 'FAIL'}")
    print(f"kernel (feed impressions + clicks): python loop {base:,.0f} events/s, numpy {vec:,.0f} events/s, ratio {vec / base:.1f}x")


if __name__ == "__main__":
    main()
