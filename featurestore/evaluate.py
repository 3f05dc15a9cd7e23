"""Quality of recovered preferences against the simulator's ground truth: nDCG@k per level."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq


def truth_at(ground_truth_dir: Path, day: date | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interests valid on ``day`` (default: the last simulated day): user_id, level, topic, weight;
    users: user_id, segment, ...)."""
    interests = pq.read_table(ground_truth_dir / "interests.parquet").to_pandas()
    users = pq.read_table(ground_truth_dir / "users.parquet").to_pandas()
    if day is None:
        day = interests.valid_to.max() - timedelta(days=1)
    valid = interests[(interests.valid_from <= day) & (interests.valid_to > day)]
    return valid[["user_id", "level", "topic", "weight"]], users


def ndcg(predicted: pd.DataFrame, truth: pd.DataFrame, users: pd.Series, level: int, k: int = 10) -> pd.Series:
    """nDCG@k per user of one level: ``predicted`` has user_id, topic, rank (1 = best) and
    ``truth`` user_id, level, topic, weight (graded relevance). A user with no prediction scores 0."""
    gains = 1.0 / np.log2(np.arange(2, k + 2))
    t = truth[truth.level == level]
    p = predicted[predicted["rank"] <= k].merge(t[["user_id", "topic", "weight"]], on=["user_id", "topic"], how="left")
    p["dcg"] = p["weight"].fillna(0.0) * gains[p["rank"].to_numpy() - 1]
    dcg = p.groupby("user_id")["dcg"].sum()
    ideal = t.sort_values(["user_id", "weight"], ascending=[True, False]).groupby("user_id").head(k).copy()
    ideal["pos"] = ideal.groupby("user_id").cumcount()
    ideal["g"] = ideal["weight"] * gains[ideal["pos"].to_numpy()]
    idcg = ideal.groupby("user_id")["g"].sum()
    out = (dcg.reindex(users).fillna(0.0) / idcg.reindex(users)).fillna(0.0)
    return out


def evaluate(long: pd.DataFrame, truth: pd.DataFrame, users: pd.DataFrame, levels: int, k: int = 10) -> pd.DataFrame:
    """Mean nDCG@k by (segment, domain, level) over all users of each segment."""
    rows = []
    for segment, group in [("all", users), *users.groupby("segment")]:
        ids = group["user_id"]
        for domain in sorted(long["domain"].unique()):
            d = long[long["domain"] == domain]
            for level in range(1, levels + 1):
                score = ndcg(d[d["level"] == level], truth, ids, level, k).mean()
                rows.append({"segment": segment, "domain": domain, "level": level, f"ndcg@{k}": round(float(score), 4)})
    return pd.DataFrame(rows)
