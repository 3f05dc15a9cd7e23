"""What serving under an experiment adds to a feed request, in process, with vs without, in one run.

On a simulated world (2,000 users, 14 days by default) with profiles read once up front, every user's
feed is ranked with the default ranker twice per round, interleaved in alternating order:

* without: ``Ranker.rank`` alone (no experiment live);
* with: what the service adds per request under a dynamic experiment (``ExperimentRouter.choose``:
  the live experiment of the surface, the user's sticky window, the allocation in force at its start,
  the arm; the state held in memory and its file checked every ``experiment_refresh_s``) and the
  response's experiment tag, then the same ``Ranker.rank``.

The experiment's state holds a week of hourly batches (168 allocations), as a long-running test
would. Printed: p50/p99 of both, the p99 difference (bar: <= 0.2 ms), and ``choose`` alone.

    .venv/bin/python benchmarks/bench_experiments.py [--users 2000] [--days 14] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from featurestore.jobs import simulated_world
from featurestore.profile import ProfileReader
from feed.catalog import Catalog
from feed.experiments import ExperimentState, state_path
from feed.routing import ExperimentRouter
from topicfeed.settings import FeedSettings, Settings, SimulatorSettings

TREND = {"trend": {"sources": {"topics": {"enabled": False}, "similar": {"enabled": False}, "intents": {"enabled": False}}}}


def pct(xs: list[float]) -> str:
    return f"p50 {np.percentile(xs, 50) * 1e3:.3f} ms, p99 {np.percentile(xs, 99) * 1e3:.3f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    experiment = {"name": "home1", "type": "dynamic", "arms": {"default": 0.5, "trend": 0.5}, "warmup_impressions": 1000}
    s = Settings(data_dir=tmp / "data", simulator=SimulatorSettings(users=args.users, days=args.days), feed=FeedSettings(rankers=TREND, experiments=[experiment]))
    asof = simulated_world(s, tmp / "sim")
    catalog = Catalog.load(s)
    users = sorted(catalog.clicked)
    reader = ProfileReader(s, now=lambda: asof)
    profiles = {u: reader.get(u) for u in users}

    now = datetime.now(UTC)
    state = ExperimentState.new("home1", {"default": 0.5, "trend": 0.5}, now - timedelta(days=7))
    for h in range(168):
        state.apply(f"h{h}", {"default": (600, 48), "trend": (600, 30)}, now - timedelta(hours=167 - h), 1000, 0.01)
    state.save(state_path(s, "home1"))
    router = ExperimentRouter(s)
    ranker = router.rankers["default"]

    without: list[float] = []
    with_exp: list[float] = []
    choose: list[float] = []
    arms: dict[str, int] = {}
    for r in range(args.rounds):
        for k, u in enumerate(users):
            for with_first in ((k + r) % 2 == 0, (k + r) % 2 == 1):
                t = time.perf_counter()
                if with_first:
                    _, served = router.choose(u, "homefeed", datetime.now(UTC))
                    tag = {"name": served.experiment, "arm": served.arm} if served is not None else None
                    c = time.perf_counter()
                    ranker.rank(catalog, profiles[u], user_id=u, limit=20, now=asof)
                    with_exp.append(time.perf_counter() - t)
                    choose.append(c - t)
                    arms[tag["arm"] if tag else "-"] = arms.get(tag["arm"] if tag else "-", 0) + 1
                else:
                    ranker.rank(catalog, profiles[u], user_id=u, limit=20, now=asof)
                    without.append(time.perf_counter() - t)
    added = (np.percentile(with_exp, 99) - np.percentile(without, 99)) * 1e3
    print(f"{len(users):,} users x {args.rounds} rounds, a dynamic experiment with {len(state.allocations)} allocations; arms served: {arms}")
    print(f"  without an experiment: {pct(without)}")
    print(f"  with the experiment:   {pct(with_exp)}")
    print(f"  ExperimentRouter.choose alone: {pct(choose)}")
    print(f"  added p99 {added:.3f} ms (target <= 0.2 ms): {'PASS' if added <= 0.2 else 'FAIL'}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
