"""Simulation study of experiments between rankers: static split, epsilon-greedy, UCB1 and batched
Thompson sampling over a simulated week, 100 seeded runs each (``feed/experiments.py``).

A world is simulated (2,000 users, 14 days), ingested, its features computed and loaded into the
SQLite online store; every user's 10-item home-feed page is ranked once by each ranker (topicfeed with
the cross-domain profile; the same ranker with the home-feed-only profile; trending; popular) and each
slot's click probability taken from the simulator's click model. Each run then draws a week of
sessions (Poisson of each user's feed sessions per day, uniform over the 168 hours), and, hour by
hour, each policy allocates the hour's sessions among the arms from the counts of the hours before
(batched updates), clicks are drawn per slot, and the batch is added at the hour's end.

Clicks lost = the expected clicks of always showing the best arm minus the expected clicks of the
arms shown, over the same sessions. The winner is found when the arm the policy would declare
(Thompson: the highest P(best); others: the highest posterior mean) is the true best at the end of
the week; "found after" is the hours of data from which on the declared arm is the true best with
P(best) >= 0.95 under the arms' Beta posteriors (168: not by the week's end).

    .venv/bin/python benchmarks/sim_experiments.py [--runs 100 --users 2000]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np

from featurestore.jobs import compute_features, default_asof, refresh_online
from featurestore.profile import ProfileReader
from feed.catalog import Catalog
from feed.experiments import UCB1, BatchedThompson, EpsilonGreedy, Policy, Static, p_best
from feed.ranker import Ranker
from topicfeed.ingest import ingest
from topicfeed.settings import Settings, SimulatorSettings
from topicfeed.simulator import simulate

HOURS = 24 * 7


def pages(args: argparse.Namespace) -> tuple[list[str], dict[str, np.ndarray], np.ndarray]:
    """(users, arm -> (users, 10) slot click probabilities, feed sessions per day per user)."""
    tmp = Path(tempfile.mkdtemp())
    s = Settings(data_dir=tmp / "data", simulator=SimulatorSettings(users=args.users, days=14, seed=args.seed))
    sim = simulate(s, tmp / "sim")
    env = sim.environment
    assert env is not None
    for kind in ("documents", "events"):
        ingest(kind, sim.files[kind], s)
    asof = default_asof(s)
    compute_features(s, asof)
    refresh_online(s, asof)
    catalog = Catalog.load(s, asof=asof)
    reader = ProfileReader(s, now=lambda: asof)
    ranker = Ranker(s.feed)
    users = sorted(env.user_index)

    def baseline(order: np.ndarray, seen: set[int]) -> list[str]:
        return [catalog.ids[i] for i in order if int(i) not in seen][:10]

    out: dict[str, list[np.ndarray]] = {"topicfeed": [], "home-feed-only profile": [], "trending": [], "popular": []}
    for u in users:
        p = reader.get(u)
        q = copy.copy(p)
        q.preferences = {**p.preferences, "merged": p.preferences.get("homefeed", {})}
        q.recent_refined_queries, q.last_refined_query = [], None
        seen = catalog.clicked.get(u, set())
        ranked = {
            "topicfeed": [i.item_id for i in ranker.rank(catalog, p, user_id=u, limit=10, now=asof).items],
            "home-feed-only profile": [i.item_id for i in ranker.rank(catalog, q, user_id=u, limit=10, now=asof).items],
            "trending": baseline(catalog.by_trend, seen),
            "popular": baseline(catalog.by_popularity, seen),
        }
        for arm, items in ranked.items():
            probs = np.zeros(10)
            probs[: len(items)] = env.click_probabilities(u, items)
            out[arm].append(probs)
    reader.close()
    rates = np.array([env.feed_sessions_per_day(u) for u in users])
    return users, {a: np.array(v) for a, v in out.items()}, rates


def run_once(policy: Policy, probs: np.ndarray, rates: np.ndarray, seed: int) -> tuple[float, float, int, int]:
    """One simulated week: (expected clicks lost vs the best arm, expected clicks, the declared winner, found after hour)."""
    rng = np.random.default_rng(seed)
    n_users, n_arms, _ = probs.shape
    expected = probs.sum(axis=2)  # (users, arms): expected clicks of a page
    counts = rng.poisson(rates * 7)
    users = np.repeat(np.arange(n_users), counts)
    hours = rng.integers(0, HOURS, size=len(users))
    order = np.argsort(hours, kind="stable")
    users, hours = users[order], hours[order]
    bounds = np.searchsorted(hours, np.arange(HOURS + 1))
    best_arm = int(np.argmax(expected[users].sum(axis=0)))
    imp = np.zeros(n_arms)
    clk = np.zeros(n_arms)
    lost = got = 0.0
    declared = []
    for h in range(HOURS):
        batch = users[bounds[h] : bounds[h + 1]]
        w = policy.allocate(imp, clk, h)
        if len(batch):
            arms = rng.choice(n_arms, size=len(batch), p=w / w.sum())
            slot_p = probs[batch, arms]  # (sessions, 10)
            clicks = (rng.random(slot_p.shape) < slot_p).sum(axis=1)
            lost += float((expected[batch, best_arm] - expected[batch, arms]).sum())
            got += float(expected[batch, arms].sum())
            imp += np.bincount(arms, weights=np.full(len(batch), probs.shape[2]), minlength=n_arms)
            clk += np.bincount(arms, weights=clicks, minlength=n_arms)
        pick = policy.winner(imp, clk)
        sure = p_best(1 + clk, 1 + imp - clk, 2_000, h)[0][pick] >= 0.95
        declared.append(pick if sure else -1)
    winner = policy.winner(imp, clk)
    found = HOURS
    for h in range(HOURS - 1, -1, -1):
        if declared[h] != best_arm:
            break
        found = h + 1  # hours of data behind the call
    return lost, got, winner == best_arm, found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1000, help="impressions every arm gets before the dynamic allocation starts")
    args = ap.parse_args()
    t0 = time.perf_counter()
    users, probs, rates = pages(args)
    ctr = {a: float(p.sum(axis=1).mean() / 10) for a, p in probs.items()}
    print(f"world: {len(users)} users; true page CTR per ranker: " + ", ".join(f"{a} {c:.2%}" for a, c in ctr.items()) + f" (set up in {time.perf_counter() - t0:.0f}s)")
    studies = {
        "topicfeed vs trending (50:50)": ["topicfeed", "trending"],
        "close: cross-domain vs home-feed-only profile (50:50)": ["topicfeed", "home-feed-only profile"],
        "three rankers: topicfeed, trending, popular (1/3 each)": ["topicfeed", "trending", "popular"],
    }
    for title, arms in studies.items():
        p = np.stack([probs[a] for a in arms], axis=1)
        policies: dict[str, Policy] = {
            "static": Static(arms),
            "epsilon-greedy 0.1": EpsilonGreedy(arms, warmup_impressions=args.warmup, floor=0.01, epsilon=0.1),
            "UCB1": UCB1(arms, warmup_impressions=args.warmup, floor=0.01),
            "batched Thompson": BatchedThompson(arms, warmup_impressions=args.warmup, floor=0.01),
        }
        print(f"\n{title}, {args.runs} seeded runs of a week, hourly batches, warm-up {args.warmup} impressions per arm, floor 1%:")
        print(f"  {'policy':20s} {'clicks lost (mean)':>19s} {'lost / static':>14s} {'winner found':>13s} {'sure after (median h)':>22s}")
        res = {}
        t = time.perf_counter()
        for name, policy in policies.items():
            rows = [run_once(policy, p, rates, args.seed * 1000 + r) for r in range(args.runs)]
            lost = np.mean([r[0] for r in rows])
            found = np.mean([r[2] for r in rows])
            after = np.median([r[3] for r in rows])
            res[name] = (lost, found)
            print(f"  {name:20s} {lost:19.1f} {lost / res['static'][0]:14.2f} {found:13.0%} {after:22.0f}")
        ts_lost, ts_found = res["batched Thompson"]
        print(
            f"  bars: Thompson loses {ts_lost / res['static'][0]:.0%} of the static split's clicks (<= 50%: {'PASS' if ts_lost <= 0.5 * res['static'][0] else 'FAIL'}); "
            f"true winner in {ts_found:.0%} of runs (>= 95%: {'PASS' if ts_found >= 0.95 else 'FAIL'}) ({time.perf_counter() - t:.0f}s)"
        )


if __name__ == "__main__":
    main()
