"""Preference batch: 10M events -> preferences for every user and level in <= 20 s, <= 4 GB.

Simulates 10M events once (cached in --cache), then runs in fresh processes, one after the
other, (1) ``featurestore.preferences.compute_preferences`` (DuckDB SQL) and (2) a
straightforward pandas groupby implementation of the same per-domain formulas and merge, and
prints wall time, peak RSS of each process and the ratio. Each process writes its ranked rows, and the
two outputs are compared row by row (scores within 1e-4; a topic in one top-k only where it ties with
the k-th score), so the ratio is between equal results.

    .venv/bin/python benchmarks/bench_preferences.py [--events 10000000] [--cache /tmp/tf-bench]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

EVENTS_PER_USER_DAY = 17.7


def prepare(cache: Path, events: int, days: int) -> None:
    if (cache / "sim" / "manifest.json").is_file():
        return
    from topicfeed.ingest import ingest
    from topicfeed.settings import Settings, SimulatorSettings
    from topicfeed.simulator import simulate

    users = round(events / EVENTS_PER_USER_DAY / days)
    settings = Settings(data_dir=cache / "data", simulator=SimulatorSettings(users=users, days=days, docs_per_day=400))
    sim = simulate(settings, cache / "sim")
    ingest("documents", sim.files["documents"], settings)


def asof_of(cache: Path) -> datetime:
    manifest = json.loads((cache / "sim" / "manifest.json").read_text())
    start = datetime.fromisoformat(manifest["parameters"]["start"]).replace(tzinfo=UTC)
    return start + timedelta(days=manifest["parameters"]["days"])


def worker_duckdb(cache: Path) -> dict:
    from featurestore.preferences import compute_preferences
    from topicfeed.settings import Settings

    settings = Settings(data_dir=cache / "data")
    t = time.perf_counter()
    out = compute_preferences(settings, asof_of(cache), events_glob=str(cache / "sim" / "events.parquet"))
    seconds = time.perf_counter() - t
    out.select(KEY + ["score"]).to_pandas().to_parquet(cache / "out-duckdb.parquet")
    return {"seconds": seconds, "rows": out.num_rows, "users": len(set(out.column("user_id").to_pylist()))}


def worker_pandas(cache: Path) -> dict:
    from topicfeed.settings import Settings

    t = time.perf_counter()
    top = pandas_preferences(Settings(data_dir=cache / "data"), asof_of(cache), cache / "sim" / "events.parquet")
    seconds = time.perf_counter() - t
    top[KEY + ["score"]].to_parquet(cache / "out-pandas.parquet")
    return {"seconds": seconds, "rows": len(top), "users": top.user_id.nunique()}


KEY = ["user_id", "domain", "level", "topic"]


def compare(cache: Path, tolerance: float = 1e-4) -> dict:
    """Do the two outputs agree? Rows by (user, domain, level, topic), scores within ``tolerance``.
    A topic may be in one top-k and not the other only where it ties with the k-th score."""
    import pandas as pd

    ours = pd.read_parquet(cache / "out-duckdb.parquet")
    theirs = pd.read_parquet(cache / "out-pandas.parquet")
    both = ours.merge(theirs, on=KEY, how="outer", suffixes=("_ours", "_pandas"), indicator=True)
    matched = both[both._merge == "both"]
    far = int(((matched.score_ours - matched.score_pandas).abs() > tolerance).sum())
    alone = both[both._merge != "both"].copy()
    alone["score"] = alone.score_ours.fillna(alone.score_pandas)
    kth = pd.concat([ours, theirs]).groupby(KEY[:3]).score.min().rename("kth")
    alone = alone.merge(kth, left_on=KEY[:3], right_index=True)
    untied = int(((alone.score - alone.kth).abs() > tolerance).sum())
    return {"rows_ours": len(ours), "rows_pandas": len(theirs), "matched": len(matched), "score_mismatches": far, "rows_in_one_only": len(alone), "untied_rows_in_one_only": untied}


def pandas_preferences(settings, asof: datetime, events: Path):  # noqa: ANN001, ANN201
    """The same formulas written the obvious way with pandas groupby/merge (top-k rows, long form)."""
    import numpy as np
    import pandas as pd

    from featurestore.preferences import connect, item_topics_from_documents

    cfg = settings.preferences
    topics = item_topics_from_documents(settings, connect()).to_pandas()
    ev = pd.read_parquet(events, columns=["user_id", "domain", "type", "item_id", "ts"])
    ev = ev[(ev.ts >= asof - timedelta(days=cfg.window_days)) & (ev.ts < asof)]
    ev["w"] = 0.5 ** ((asof - ev.ts).dt.total_seconds() / 86400 / settings.half_life_days)
    act = ev.assign(
        feed=np.where((ev.domain == "homefeed") & (ev.type == "impression"), ev.w, 0.0),
        srch=np.where(ev.type == "search", ev.w, 0.0),
    ).groupby("user_id").agg(feed_n=("feed", "sum"), search_n=("srch", "sum"))
    x = ev[ev.type.isin(["click", "impression"])].merge(topics, on="item_id")
    x["c"] = np.where(x.type == "click", x.w * x.score, 0.0)
    x["i"] = np.where(x.type == "impression", x.w * x.score, 0.0)
    g = x.groupby(["user_id", "domain", "level", "topic"], as_index=False).agg(clicks=("c", "sum"), impressions=("i", "sum"))
    g = g.merge(act, left_on="user_id", right_index=True)
    g["exposure"] = np.where(g.domain == "search", np.maximum(g.search_n, g.clicks), np.maximum(g.impressions, g.clicks))
    searchers = act[act.search_n > 0].search_n
    pri = g.groupby(["domain", "level", "topic"], as_index=False).agg(c=("clicks", "sum"), e=("exposure", "sum"), a=("exposure", "mean"))
    pri.loc[pri.domain == "search", "e"] = searchers.sum()
    pri.loc[pri.domain == "search", "a"] = searchers.mean()
    g = g.merge(pri, on=["domain", "level", "topic"])
    g["r"] = (g.clicks + g.a * g.c / g.e) / (g.exposure + g.a)
    rate = pri.groupby(["domain", "level"]).apply(lambda d: d.c.sum() / (d.e.iloc[0] if d.name[0] == "search" else d.e.sum()), include_groups=False).rename("R")
    g = g.merge(rate, left_on=["domain", "level"], right_index=True)
    g["score"] = g.r / (g.r + g.R)
    wide = g.pivot_table(index=["user_id", "level", "topic"], columns="domain", values="score", aggfunc="max").fillna(0.0)
    f = act.feed_n / (act.feed_n + cfg.feed_pivot)
    w = pd.DataFrame({"homefeed": f, "search": (1 - f) * cfg.search_weight, "main": (1 - f) * cfg.main_weight})
    active = ev.groupby(["user_id", "domain"]).size().unstack(fill_value=0) > 0
    w = w.where(active.reindex(columns=w.columns, fill_value=False), 0.0)
    ww = w.reindex(wide.index.get_level_values("user_id"))
    ww.index = wide.index
    cols = [c for c in ("homefeed", "search", "main") if c in wide]
    merged = (wide[cols] * ww[cols]).sum(axis=1) / ww[cols].sum(axis=1).replace(0, np.nan)
    long = pd.concat([g[["user_id", "domain", "level", "topic", "score", "exposure"]], merged.rename("score").reset_index().assign(domain="merged", exposure=0.0)])
    long = long.sort_values(["user_id", "domain", "level", "score"], ascending=[True, True, True, False])
    return long.groupby(["user_id", "domain", "level"]).head(cfg.top_k)


def run_worker(name: str, cache: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", name, "--cache", str(cache)], check=False, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/topicfeed-bench-prefs"))
    parser.add_argument("--worker", choices=["duckdb", "pandas"])
    parser.add_argument("--target-s", type=float, default=20.0)
    parser.add_argument("--target-gb", type=float, default=4.0)
    args = parser.parse_args()
    if args.worker:
        fn = worker_duckdb if args.worker == "duckdb" else worker_pandas
        result = fn(args.cache)
        result["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(json.dumps(result))
        return
    prepare(args.cache, args.events, args.days)
    n = json.loads((args.cache / "sim" / "manifest.json").read_text())["stats"]["events"]
    duck = run_worker("duckdb", args.cache)
    print(f"events: {n:,}")
    print(f"duckdb (featurestore.preferences): {duck['seconds']:.1f}s, peak RSS {duck['peak_gb']:.2f} GB, {duck['users']:,} users, {duck['rows']:,} ranked rows")
    pandas = run_worker("pandas", args.cache)
    if "error" in pandas:
        print(f"pandas baseline failed: {pandas['error']}")
    else:
        same = compare(args.cache)
        print("outputs compared: " + ", ".join(f"{k}={v:,}" for k, v in same.items()))
        agree = same["score_mismatches"] == 0 and same["untied_rows_in_one_only"] == 0
        print(f"the pandas baseline computes the same preferences: {'yes' if agree else 'NO: its timing is not like for like'}")
        print(f"pandas groupby baseline:            {pandas['seconds']:.1f}s, peak RSS {pandas['peak_gb']:.2f} GB, {pandas['users']:,} users, {pandas['rows']:,} ranked rows")
        print(f"ratio pandas/duckdb: time {pandas['seconds'] / duck['seconds']:.1f}x, memory {pandas['peak_gb'] / duck['peak_gb']:.1f}x")
    ok = duck["seconds"] <= args.target_s and duck["peak_gb"] <= args.target_gb
    print(f"target <= {args.target_s:.0f}s and <= {args.target_gb:.0f} GB: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
