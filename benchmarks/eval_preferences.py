"""Quality of the preferences on the simulator's ground truth, and the choice of the merge weights.

Simulates a world, ingests it, computes preferences, and prints nDCG@10 of the recovered topics
against each user's true interests (last simulated day) per segment, domain and level; then the
grid over ``feed_pivot`` x ``main_weight`` that chose the defaults; then the bar: for light
home-feed users the cross-domain (merged) profile must beat the home-feed-only profile by
>= +20% relative nDCG@10 at every level.

    .venv/bin/python benchmarks/eval_preferences.py [--users 3000 --days 21 --seed 13]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from featurestore.evaluate import evaluate, truth_at
from featurestore.jobs import default_asof
from featurestore.preferences import compute_preferences, connect, item_topics_from_documents
from topicfeed.ingest import ingest
from topicfeed.settings import Settings, SimulatorSettings
from topicfeed.simulator import simulate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", simulator=SimulatorSettings(users=args.users, days=args.days, seed=args.seed))
        sim = simulate(settings, Path(tmp) / "sim")
        for kind in ("documents", "events"):
            ingest(kind, sim.files[kind], settings)
        truth, users = truth_at(Path(tmp) / "sim" / "ground_truth")
        asof = default_asof(settings)
        con = connect()
        topics = item_topics_from_documents(settings, con)
        cfg = settings.preferences
        long = compute_preferences(settings, asof, con=con, item_topics=topics).to_pandas()
        table = evaluate(long, truth, users, cfg.levels)
        print(f"world: {args.users} users x {args.days} days (seed {args.seed}), {sim.stats['events']:,} events; defaults feed_pivot={cfg.feed_pivot:g} main_weight={cfg.main_weight:g}")
        print("\nnDCG@10 by segment, domain and level:")
        print(table.pivot_table(index=["segment", "domain"], columns="level", values="ndcg@10").to_string(float_format=lambda v: f"{v:.3f}"))

        print("\ngrid (merged profile, mean nDCG@10 over levels):")
        grid = []
        for pivot in (0.0, 50.0, 200.0, 500.0, 1000.0, 3000.0):
            for main_weight in (0.0, 0.1, 0.25, 0.5):
                s = settings.model_copy(update={"preferences": cfg.model_copy(update={"feed_pivot": pivot, "main_weight": main_weight})})
                merged = compute_preferences(s, asof, con=con, item_topics=topics).to_pandas()
                ev = evaluate(merged[merged.domain == "merged"], truth, users, cfg.levels)
                row = {"feed_pivot": pivot, "main_weight": main_weight}
                row.update({seg: ev[ev.segment == seg]["ndcg@10"].mean() for seg in ("all", "light", "heavy")})
                grid.append(row)
        grid_df = pd.DataFrame(grid).sort_values("all", ascending=False)
        print(grid_df.head(8).to_string(index=False, float_format=lambda v: f"{v:.4f}"))

        light = table[table.segment == "light"].pivot_table(index="domain", columns="level", values="ndcg@10")
        gains = light.loc["merged"] / light.loc["homefeed"] - 1
        print("\nlight home-feed users, merged vs home-feed-only: " + ", ".join(f"L{lv} {light.loc['homefeed', lv]:.3f} -> {light.loc['merged', lv]:.3f} ({g:+.0%})" for lv, g in gains.items()))
        print(f"bar: >= +20% at every level: {'PASS' if (gains >= 0.20).all() else 'FAIL'}")


if __name__ == "__main__":
    main()
