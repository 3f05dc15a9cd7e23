"""Offline evaluation of the feed: rank from the history only, score against the clicks that came after.

``evaluate_offline(events, documents, split_time)``: the events before ``split_time`` and the
documents created before it go into a fresh data directory; features are computed as of the split and
loaded into the (SQLite) online store; the catalog is loaded as the service loads it. For every user
with events before the split and clicks on known items after it, the feed is ranked through the same
``Ranker`` and profile read the service uses, and scored against those later clicks (binary
relevance): nDCG@k, precision@k, recall@k, MRR and catalog coverage, beside a popularity and a
trending baseline that exclude the same seen items.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from featurestore.jobs import compute_features, refresh_online
from featurestore.profile import ProfileReader
from feed.catalog import Catalog
from feed.ranker import Ranker
from topicfeed.ingest import Format, ingest
from topicfeed.lake import Lake
from topicfeed.schemas import DOCUMENT_SCHEMA, EVENT_SCHEMA
from topicfeed.settings import Settings
from topicfeed.taxonomy import Taxonomy


@dataclass
class Scores:
    method: str
    users: int
    ndcg: float
    precision: float
    recall: float
    mrr: float
    coverage: float

    def line(self, k: int) -> str:
        return (
            f"{self.method:11s} users={self.users} ndcg@{k}={self.ndcg:.3f} precision@{k}={self.precision:.3f} "
            f"recall@{k}={self.recall:.3f} mrr={self.mrr:.3f} coverage={self.coverage:.3f}"
        )


def ranking_metrics(ranked: Sequence[str], relevant: set[str], k: int) -> tuple[float, float, float, float]:
    """(nDCG@k, precision@k, recall@k, reciprocal rank) of one ranked list against a set of relevant items."""
    hits = [1.0 if item in relevant else 0.0 for item in ranked[:k]]
    gains = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float(np.dot(hits, gains[: len(hits)]))
    ideal = float(gains[: min(len(relevant), k)].sum())
    first = next((j for j, h in enumerate(hits) if h), None)
    return (dcg / ideal if ideal else 0.0), sum(hits) / k, (sum(hits) / len(relevant) if relevant else 0.0), (1.0 / (first + 1) if first is not None else 0.0)


def _baseline(order: np.ndarray) -> Callable[[Catalog, str, set[int], int], list[str]]:
    def rank(catalog: Catalog, user: str, seen: set[int], k: int) -> list[str]:
        return [catalog.ids[i] for i in order if int(i) not in seen][:k]

    return rank


def _taxonomy_for(lake: Lake, settings: Settings, tmp: Path) -> Path:
    """The configured taxonomy if it holds every topic the documents use, else a plain taxonomy file
    of the topics they use (MovieLens genres, say), written under ``tmp``."""
    used = sorted({t for topics in lake.read("documents", columns=["topics"]).column(0).to_pylist() for t in topics or ()})
    known = Taxonomy.load(settings.taxonomy_path)
    if all(t in known for t in used):
        return settings.taxonomy_path
    path = tmp / "taxonomy.txt"
    path.write_text("".join(f"{t}\n" for t in used), encoding="utf-8")
    return path


def evaluate_offline(
    settings: Settings, events: Path, documents: Path, split_time: datetime, k: int = 10, workdir: Path | None = None, fmt: Format = "auto"
) -> list[Scores]:
    """The three methods' scores (module docstring); ``workdir``: where the history goes (a temp dir by
    default); ``fmt``: both files' format (``topicfeed.ingest.Format``; auto: from their names). A
    documents file whose topics are outside the configured taxonomy (MovieLens genres) gets a taxonomy
    made of the topics it uses."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        full = settings.model_copy(update={"data_dir": Path(tmp) / "all"})
        ingest("documents", documents, full, fmt)
        ingest("events", events, full, fmt)
        lake = Lake(full.lake_dir)
        s = settings.model_copy(update={"data_dir": Path(tmp) / "history", "online_store": "sqlite", "taxonomy_path": _taxonomy_for(lake, settings, Path(tmp))})
        history = Lake(s.lake_dir)
        all_events = lake.read("events", columns=EVENT_SCHEMA.names)
        history.append("documents", lake.read("documents", columns=DOCUMENT_SCHEMA.names, filter=pc.field("created_at") < split_time))
        history.append("events", all_events.filter(pc.field("ts") < split_time))
        later = all_events.filter((pc.field("ts") >= split_time) & (pc.field("type") == "click"))
        if not history.exists("events") or later.num_rows == 0:
            raise ValueError(f"no events before or no clicks after {split_time.isoformat()}: choose another --split-time")
        compute_features(s, split_time)
        refresh_online(s, split_time)
        catalog = Catalog.load(s, asof=split_time)
        reader = ProfileReader(s, now=lambda: split_time)
        ranker = Ranker(s.feed)
        known_users = set(pc.unique(history.read("events", columns=["user_id"]).column(0)).to_pylist())
        relevant: dict[str, set[str]] = {}
        for user, item in zip(later.column("user_id").to_pylist(), later.column("item_id").to_pylist()):
            if user in known_users and item in catalog.index and catalog.index[item] not in catalog.clicked.get(user, ()):
                relevant.setdefault(user, set()).add(item)
        methods: dict[str, Callable[[Catalog, str, set[int], int], list[str]]] = {
            "topicfeed": lambda c, u, seen, n: [i.item_id for i in ranker.rank(c, reader.get(u), user_id=u, limit=n, now=split_time).items],
            "popularity": _baseline(catalog.by_popularity),
            "trending": _baseline(catalog.by_trend),
        }
        out = []
        for name, rank in methods.items():
            rows, shown = [], set()
            for user in sorted(relevant):
                ranked = rank(catalog, user, catalog.clicked.get(user, set()), k)
                shown.update(ranked)
                rows.append(ranking_metrics(ranked, relevant[user], k))
            m = np.array(rows) if rows else np.zeros((0, 4))
            out.append(Scores(name, len(rows), *(float(x) for x in (m.mean(axis=0) if len(rows) else np.zeros(4))), coverage=len(shown) / max(len(catalog), 1)))
        reader.close()
        return out
