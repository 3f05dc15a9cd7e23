"""Simulator speed: 10M events in <= 60 s on a 2-core machine.

Prints events/s of ``topicfeed simulate`` (world, logs, tables and Parquet files included) and its
time for 10M events against the target. In the same run it measures one kernel both ways, a
straightforward per-event Python loop and the numpy form the simulator uses, on identical work
(draw home-feed impressions by popularity, then clicks from a position-biased click model, from the
same inputs, both writing the same five integer columns for every impression and click), and prints
the ratio.

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


def _kernel_inputs(n_docs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return 1.0 / np.arange(1, n_docs + 1) ** 1.1, rng.beta(5, 2, n_docs), rng.random(n_docs)


def vectorised_events(n_events: int = 300_000, n_docs: int = 10_000, slots: int = 10) -> tuple[float, int]:
    """The kernel with numpy, as the simulator does it: (events/s, events). Output: integer columns
    user, type (0 impression, 1 click), doc, position, ts for every impression and click."""
    weights, quality, interest = _kernel_inputs(n_docs)
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    sessions = n_events // slots
    cum = np.cumsum(weights)
    user = np.repeat(rng.integers(100_000, size=sessions), slots)
    ts = np.repeat(rng.integers(86_400, size=sessions), slots)
    pos = np.tile(np.arange(slots), sessions)
    doc = np.searchsorted(cum, rng.random(len(pos)) * cum[-1], side="right")
    click = rng.random(len(pos)) < (1 / (1 + pos)) ** 0.5 * quality[doc] * (0.01 + 0.3 * interest[doc])
    columns = [
        np.concatenate([user, user[click]]),
        np.concatenate([np.zeros(len(doc), np.int8), np.ones(int(click.sum()), np.int8)]),
        np.concatenate([doc, doc[click]]),
        np.concatenate([pos, pos[click]]),
        np.concatenate([ts, ts[click] + 5]),
    ]
    n = len(columns[0])
    return n / (time.perf_counter() - start), n


def baseline_events(n_events: int = 300_000, n_docs: int = 10_000, slots: int = 10) -> tuple[float, int]:
    """The same kernel in plain Python, with the same inputs and the same output (integer columns
    user, type, doc, position, ts): for every session and slot, a document by popularity, then a click."""
    weights, quality_np, interest_np = _kernel_inputs(n_docs)
    cum = np.cumsum(weights).tolist()
    total = cum[-1]
    quality, interest = quality_np.tolist(), interest_np.tolist()
    rng = random.Random(1)
    user_c: list[int] = []
    type_c: list[int] = []
    doc_c: list[int] = []
    pos_c: list[int] = []
    ts_c: list[int] = []
    start = time.perf_counter()
    for _ in range(n_events // slots):
        user = rng.randrange(100_000)
        ts = rng.randrange(86_400)
        for pos in range(slots):
            doc = bisect.bisect_right(cum, rng.random() * total)
            user_c.append(user), type_c.append(0), doc_c.append(doc), pos_c.append(pos), ts_c.append(ts)
            if rng.random() < (1 / (1 + pos)) ** 0.5 * quality[doc] * (0.01 + 0.3 * interest[doc]):
                user_c.append(user), type_c.append(1), doc_c.append(doc), pos_c.append(pos), ts_c.append(ts + 5)
    n = len(user_c)
    return n / (time.perf_counter() - start), n


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
    base, base_n = baseline_events()
    vec, vec_n = vectorised_events()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"simulate: {n:,} events, {users:,} users x {args.days} days in {t:.1f}s = {rate:,.0f} events/s; peak RSS {peak_gb:.1f} GB")
    print("  phases: " + ", ".join(f"{k}={v:.1f}s" for k, v in result.timings.items()))
    per_10m = 10_000_000 / rate
    print(f"10M events take {per_10m:.1f}s; target {args.target_s:.0f}s; ratio time/target {per_10m / args.target_s:.2f}: {'PASS' if per_10m <= args.target_s else 'FAIL'}")
    print(f"kernel (feed impressions + clicks, same inputs, same integer columns out: {base_n:,} vs {vec_n:,} events): python loop {base:,.0f} events/s, numpy {vec:,.0f} events/s, ratio {vec / base:.1f}x")


if __name__ == "__main__":
    main()
