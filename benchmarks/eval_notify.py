"""Precision of notification targets on the simulator's ground truth, in one run: topicfeed's
targeting (``feed/notify.py``) against random and popularity targeting with the same number of
targets and the same per-user cap.

A simulated world is ingested and its features computed as of just after the newest event; the
items are the documents of the last day. Each strategy's targets are scored with the simulator's
own click model (the users' true interests at the end of the period, the item's quality, a
notification read like the first slot of a feed): precision = the mean P(click) of its targets,
and a sampled click rate (one Bernoulli draw per target, seeded).

    .venv/bin/python benchmarks/eval_notify.py [--users 5000 --days 14]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from featurestore.jobs import default_asof, write_features
from feed.catalog import Catalog
from feed.notify import import_time_zones, new_items, popularity_targets, random_targets, run_targeting
from topicfeed.ingest import ingest
from topicfeed.settings import Settings, SimulatorSettings
from topicfeed.simulator import simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=5_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--docs-per-day", type=int, default=250)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--item-days", type=float, default=1.0, help="items: documents created in this many days before the as-of")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        s = Settings(data_dir=base / "data", simulator=SimulatorSettings(users=args.users, days=args.days, docs_per_day=args.docs_per_day, seed=args.seed))
        t0 = time.perf_counter()
        sim = simulate(s, base / "sim")
        for kind in ("documents", "events"):
            ingest(kind, sim.files[kind], s)
        import_time_zones(s, sim.files["time_zones"])
        asof = default_asof(s)
        write_features(s, asof)
        catalog = Catalog.load(s, asof=asof)
        items = new_items(s, asof - timedelta(days=args.item_days), asof)
        print(f"world: {args.users} users, {args.days} days, {len(items)} items of the last {args.item_days:g} day(s) ({time.perf_counter() - t0:.0f}s)")
        run = run_targeting(s, asof, items, catalog=catalog, write=False, with_history=False)
        print(f"topicfeed targeting: {run.summary()}")
        env = sim.environment
        assert env is not None
        n, cap = len(run.targets), s.notify.max_per_user_per_day
        users = sorted(env.user_index)
        known = [i for i in items if i in catalog.index]
        by_pop = sorted(known, key=lambda i: (-catalog.popularity[catalog.index[i]], i))
        strategies = {
            "topicfeed": [(t.user_id, t.item_id) for t in run.targets],
            "random": random_targets(users, known, n, cap, seed=args.seed),
            "popularity": popularity_targets(users, by_pop, n, cap, seed=args.seed),
        }
        rng = np.random.default_rng(args.seed)
        results = {}
        for name, pairs in strategies.items():
            p = np.array([env.click_probabilities(u, [i])[0] for u, i in pairs]) if pairs else np.zeros(0)
            clicks = rng.random(len(p)) < p
            results[name] = float(p.mean()) if len(p) else 0.0
            print(f"{name:11s} targets={len(pairs):6d}  precision (mean P(click))={results[name]:.4f}  sampled click rate={clicks.mean() if len(p) else 0:.4f}")
        intent = [(t.user_id, t.item_id) for t in run.targets if t.reason_kind == "intent"]
        topic = [(t.user_id, t.item_id) for t in run.targets if t.reason_kind == "topic"]
        for label, pairs in (("  by intent", intent), ("  by topic", topic)):
            if pairs:
                print(f"{label:11s} targets={len(pairs):6d}  precision={np.mean([env.click_probabilities(u, [i])[0] for u, i in pairs]):.4f}")
        print(f"topicfeed / random = {results['topicfeed'] / max(results['random'], 1e-9):.2f}x, topicfeed / popularity = {results['topicfeed'] / max(results['popularity'], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
