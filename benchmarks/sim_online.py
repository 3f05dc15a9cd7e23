"""Simulated online test of the feed: a week of home-feed sessions replayed against the simulator's click model.

A world is simulated (2,000 users, 14 days by default) and ingested, except the events of 10% of the
users, who come to the replay as new users; features are computed and loaded into the SQLite online
store as the main job does. Then, for 7 days, every user opens the home feed as often as the simulator
says (Poisson of their feed sessions per day), and each method fills the same sessions with 10 items:

* topicfeed: the ranker with the cross-domain (merged) profile, read from the online store;
* home-feed-only profile: the same ranker, with the profile's merged preferences replaced by its
  home-feed ones (what a home-feed-only system would know);
* trending and popular: the catalog's trend and popularity orders.

The environment (``topicfeed.simulator.environment``) gives every slot's click probability from the
user's true interests, position bias and quality; CTR is expected clicks over impressions (the same
sessions for all methods, so the comparison is paired), and sampled clicks leave each method's later
feeds. One table: CTR per method and segment (light / heavy / new).

    .venv/bin/python benchmarks/sim_online.py [--users 2000 --days 14 --replay-days 7]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurestore.jobs import compute_features, default_asof, refresh_online
from featurestore.profile import ProfileReader
from feed.catalog import Catalog
from feed.ranker import Ranker
from topicfeed.ingest import ingest
from topicfeed.settings import Settings, SimulatorSettings
from topicfeed.simulator import simulate

METHODS = ("topicfeed", "home-feed-only profile", "trending", "popular")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--replay-days", type=int, default=7)
    ap.add_argument("--new-share", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    s = Settings(data_dir=tmp / "data", simulator=SimulatorSettings(users=args.users, days=args.days, seed=args.seed))
    t0 = time.perf_counter()
    sim = simulate(s, tmp / "sim")
    env = sim.environment
    assert env is not None
    rng = np.random.default_rng(args.seed)
    users = list(env.user_index)
    new = set(rng.choice(users, size=int(len(users) * args.new_share), replace=False).tolist())
    events = pq.read_table(sim.files["events"])
    kept = events.filter(pc.invert(pc.is_in(events.column("user_id"), value_set=pa.array(sorted(new)))))
    pq.write_table(kept, tmp / "events-known.parquet")
    ingest("documents", sim.files["documents"], s)
    ingest("events", tmp / "events-known.parquet", s)
    asof = default_asof(s)
    compute_features(s, asof)
    refresh_online(s, asof)
    catalog = Catalog.load(s, asof=asof)
    reader = ProfileReader(s, now=lambda: asof)
    ranker = Ranker(s.feed)
    print(f"world: {len(users)} users ({len(new)} held out as new), {len(catalog)} documents, {events.num_rows:,} events; set up in {time.perf_counter() - t0:.0f}s")

    profiles = {u: reader.get(u) for u in users}
    homefeed_only = {}
    for u, p in profiles.items():
        q = copy.copy(p)
        q.preferences = {**p.preferences, "merged": p.preferences.get("homefeed", {})}
        q.recent_refined_queries, q.last_refined_query = [], None
        homefeed_only[u] = q

    def baseline(order: np.ndarray, seen: set[int]) -> list[str]:
        out = []
        for i in order:
            if int(i) not in seen:
                out.append(catalog.ids[i])
                if len(out) == 10:
                    break
        return out

    clicked: dict[str, dict[str, set[int]]] = {m: defaultdict(set) for m in METHODS}
    impressions: dict[tuple[str, str], int] = defaultdict(int)
    clicks: dict[tuple[str, str], float] = defaultdict(float)
    timing: list[float] = []
    sessions = 0
    t1 = time.perf_counter()
    for day in range(args.replay_days):
        now = asof + timedelta(days=day)
        for u in users:
            segment = "new" if u in new else env.segment(u)
            for _ in range(rng.poisson(env.feed_sessions_per_day(u))):
                sessions += 1
                for m in METHODS:
                    seen = clicked[m][u] | catalog.clicked.get(u, set())
                    if m == "topicfeed":
                        start = time.perf_counter()
                        ranked = [i.item_id for i in ranker.rank(catalog, profiles[u], user_id=u, limit=10, now=now, exclude=clicked[m][u]).items]
                        timing.append(time.perf_counter() - start)
                    elif m == "home-feed-only profile":
                        ranked = [i.item_id for i in ranker.rank(catalog, homefeed_only[u], user_id=u, limit=10, now=now, exclude=clicked[m][u]).items]
                    else:
                        ranked = baseline(catalog.by_trend if m == "trending" else catalog.by_popularity, seen)
                    p = env.click_probabilities(u, ranked)
                    for seg in (segment, "all"):
                        impressions[(m, seg)] += len(ranked)
                        clicks[(m, seg)] += float(p.sum())
                    for item, hit in zip(ranked, rng.random(len(p)) < p):
                        if hit:
                            clicked[m][u].add(catalog.index[item])
    print(f"replayed {sessions:,} sessions x {len(METHODS)} methods over {args.replay_days} days in {time.perf_counter() - t1:.0f}s; ranking p50 {np.percentile(timing, 50) * 1e3:.2f} ms, p99 {np.percentile(timing, 99) * 1e3:.2f} ms")
    segments = ("all", "light", "heavy", "new")
    print(f"{'CTR (expected clicks / impressions)':38s}" + "".join(f"{seg:>10s}" for seg in segments))
    ctr = {(m, seg): clicks[(m, seg)] / impressions[(m, seg)] if impressions[(m, seg)] else float("nan") for m in METHODS for seg in segments}
    for m in METHODS:
        print(f"{m:38s}" + "".join(f"{ctr[(m, seg)]:10.2%}" for seg in segments))
    lift = ctr[("topicfeed", "all")] / ctr[("trending", "all")] - 1
    light = ctr[("topicfeed", "light")] / ctr[("home-feed-only profile", "light")] - 1
    print(f"topicfeed vs trending, all users: {lift:+.1%} (bar >= +15%): {'PASS' if lift >= 0.15 else 'FAIL'}")
    print(f"light users, cross-domain vs home-feed-only profile: {light:+.1%} (bar > 0): {'PASS' if light > 0 else 'FAIL'}")


if __name__ == "__main__":
    main()
