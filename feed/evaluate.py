"""Offline evaluation of the feed: rank from the history only, score against the clicks that came after.

``evaluate_offline(events, documents, split_time)``: the events before ``split_time`` and the
documents created before it go into a fresh data directory; features are computed as of the split and
loaded into the (SQLite) online store; the catalog is loaded as the service loads it. For every user
with events before the split and clicks on known items after it, the feed is ranked through the same
``Ranker`` and profile read the service uses, and scored against those later clicks (binary
relevance): nDCG@k, precision@k, recall@k, MRR and catalog coverage, beside a popularity and a
trending baseline that exclude the same seen items.

``tune_weights`` chooses the ranking weights for a domain on a validation window before the split
(the history before ``split - days`` ranks, the clicks of those days score; nothing after the split
is read), from the grid ``FeedSettings.tune_grid``: ``topicfeed feed evaluate --tune-days`` scores the
chosen weights beside the defaults.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.compute as pc

from featurestore.jobs import compute_features, refresh_online
from featurestore.profile import ProfileReader, UserProfile
from feed.catalog import Catalog
from feed.ranker import Ranker
from topicfeed.ingest import Format, ingest
from topicfeed.lake import Lake
from topicfeed.schemas import DOCUMENT_SCHEMA, EVENT_SCHEMA
from topicfeed.settings import FeedSettings, Settings
from topicfeed.taxonomy import Taxonomy

if TYPE_CHECKING:
    from intent.model import Refines


@dataclass
class Scores:
    method: str
    users: int
    ndcg: float
    precision: float
    recall: float
    mrr: float
    coverage: float
    per_user: list[float] = field(default_factory=list, repr=False)  # nDCG@k of each user, in user order

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


def paired_ratio_interval(ours: Scores, base: Scores, *, samples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """A paired bootstrap interval of ``mean nDCG(ours) / mean nDCG(base)`` over the same users:
    users are resampled with replacement, both methods keep their own score of each drawn user."""
    a, b = np.asarray(ours.per_user), np.asarray(base.per_user)
    if len(a) != len(b) or not len(a):
        raise ValueError("the two scores must cover the same users")
    draws = np.random.default_rng(seed).integers(0, len(a), size=(samples, len(a)))
    ratios = a[draws].mean(axis=1) / np.maximum(b[draws].mean(axis=1), 1e-12)
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


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


@dataclass
class OfflineWorld:
    """The history before ``split_time`` loaded as the service loads it (catalog, online profiles), and
    the clicks each user made on known, unseen items after it (up to ``until``): what methods are scored on."""

    catalog: Catalog
    reader: ProfileReader
    relevant: dict[str, set[str]]
    split_time: datetime
    _profiles: dict[str, UserProfile] = field(default_factory=dict)  # read once, for every method scored

    def score(self, method: str, rank: Callable[[Catalog, str, set[int], int], list[str]], k: int) -> Scores:
        """``rank(catalog, user, seen items, k)`` for every user with later clicks, scored against them."""
        rows, shown = [], set()
        for user in sorted(self.relevant):
            ranked = rank(self.catalog, user, self.catalog.clicked.get(user, set()), k)
            shown.update(ranked)
            rows.append(ranking_metrics(ranked, self.relevant[user], k))
        means = np.array(rows).mean(axis=0) if rows else np.zeros(4)
        return Scores(method, len(rows), *(float(x) for x in means), coverage=len(shown) / max(len(self.catalog), 1), per_user=[r[0] for r in rows])

    def ranker(self, feed: FeedSettings, k: int, method: str = "topicfeed") -> Scores:
        """Our feed under these ranking settings, through the service's ranker and profile read."""
        ranker = Ranker(feed)
        return self.score(method, lambda c, u, seen, n: [i.item_id for i in ranker.rank(c, self.profile(u), user_id=u, limit=n, now=self.split_time).items], k)

    def profile(self, user: str) -> UserProfile:
        """The user's online profile, read once (the store does not change inside the world)."""
        got = self._profiles.get(user)
        if got is None:
            got = self._profiles[user] = self.reader.get(user)
        return got

    def baselines(self, k: int) -> list[Scores]:
        """Popularity and trending, excluding the same seen items."""
        return [self.score("popularity", _baseline(self.catalog.by_popularity), k), self.score("trending", _baseline(self.catalog.by_trend), k)]


@contextmanager
def offline_world(
    settings: Settings,
    events: Path,
    documents: Path,
    split_time: datetime,
    *,
    until: datetime | None = None,
    workdir: Path | None = None,
    fmt: Format = "auto",
    intents: Refines | None = None,
    intent_days: float = 7.0,
    domains: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[OfflineWorld]:
    """The world of the module docstring, in a temporary directory that goes when the block ends.
    ``intents``: the searches with clicks of the ``intent_days`` before the split are refined by it
    and pushed online as the ``search_intents`` DAG does (``RawQuery``: Q* = Q), so the profiles
    hold recent intents; ``domains``: only later clicks in these domains are scored (e.g.
    ``homefeed``: what the feed is for); ``progress(refined, searches)`` while refining."""
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
        after = (pc.field("ts") >= split_time) & (pc.field("type") == "click")
        if domains:
            after = after & pc.field("domain").isin(list(domains))
        later = all_events.filter(after & (pc.field("ts") < until) if until is not None else after)
        if not history.exists("events") or later.num_rows == 0:
            raise ValueError(f"no events before or no clicks after {split_time.isoformat()}: choose another --split-time")
        compute_features(s, split_time)
        refresh_online(s, split_time)
        if intents is not None:
            from intent.jobs import refine_window  # torch and transformers: only when intents are refined

            refine_window(s, intents, split_time - timedelta(days=intent_days), split_time, progress=progress)
        catalog = Catalog.load(s, asof=split_time)
        reader = ProfileReader(s, now=lambda: split_time)
        known_users = set(pc.unique(history.read("events", columns=["user_id"]).column(0)).to_pylist())
        relevant: dict[str, set[str]] = {}
        for user, item in zip(later.column("user_id").to_pylist(), later.column("item_id").to_pylist()):
            if user in known_users and item in catalog.index and catalog.index[item] not in catalog.clicked.get(user, ()):
                relevant.setdefault(user, set()).add(item)
        try:
            yield OfflineWorld(catalog, reader, relevant, split_time)
        finally:
            reader.close()


@dataclass
class Tuned:
    """Ranking weights chosen on a validation window: the settings, the overrides that make them, and
    nDCG@k on the window with the defaults, with the choice and of the popularity baseline."""

    feed: FeedSettings
    overrides: dict[str, object]
    default_ndcg: float
    tuned_ndcg: float
    tried: int
    validation_time: datetime
    users: int
    popularity_ndcg: float = 0.0


def grid_size(grid: dict[str, tuple[float, ...]]) -> int:
    """How many weight sets ``tune_weights`` tries for this grid (every combination)."""
    return math.prod(len(v) for v in grid.values())


def _candidates(feed: FeedSettings, grid: dict[str, tuple[float, ...]]) -> Iterator[dict[str, object]]:
    """Every combination of the grid as ranking overrides (``topic_scale`` scales ``level_weights``)."""
    names = sorted(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        chosen = dict(zip(names, values))
        scale = chosen.pop("topic_scale", None)
        overrides: dict[str, object] = dict(chosen)
        if scale is not None:
            overrides["level_weights"] = tuple(round(w * scale, 6) for w in feed.level_weights)
        yield overrides


def tune_weights(
    settings: Settings,
    events: Path,
    documents: Path,
    split_time: datetime,
    *,
    days: float,
    k: int = 10,
    workdir: Path | None = None,
    fmt: Format = "auto",
    progress: Callable[[int, int], None] | None = None,
    intents: Refines | None = None,
    intent_days: float = 7.0,
    domains: Sequence[str] | None = None,
) -> Tuned:
    """Ranking weights for a domain: the history up to ``split_time - days`` ranks, the clicks of the
    ``days`` before ``split_time`` score, every combination of ``settings.feed.tune_grid`` is tried and
    the best nDCG@k wins (the defaults win ties). Nothing at or after ``split_time`` is read.
    ``progress(done, total)`` is called after each combination; ``intents``, ``intent_days``,
    ``domains``: as ``offline_world``'s, so that weights are tuned as they will be scored."""
    start = split_time - timedelta(days=days)
    feed = settings.feed
    with offline_world(settings, events, documents, start, until=split_time, workdir=workdir, fmt=fmt, intents=intents, intent_days=intent_days, domains=domains) as world:
        default = world.ranker(feed, k).ndcg
        best, best_ndcg, tried = {}, default, 0
        total = grid_size(feed.tune_grid)
        for overrides in _candidates(feed, feed.tune_grid):
            tried += 1
            ndcg = world.ranker(feed.model_copy(update=overrides), k).ndcg
            if ndcg > best_ndcg + 1e-12:
                best, best_ndcg = overrides, ndcg
            if progress is not None:
                progress(tried, total)
        users = len(world.relevant)
        popularity = world.baselines(k)[0].ndcg
    return Tuned(feed.model_copy(update=best), best, default, best_ndcg, tried, start, users, popularity)


def evaluate_offline(
    settings: Settings,
    events: Path,
    documents: Path,
    split_time: datetime,
    k: int = 10,
    workdir: Path | None = None,
    fmt: Format = "auto",
    feed: FeedSettings | None = None,
    intents: Refines | None = None,
    intent_days: float = 7.0,
    domains: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Scores]:
    """The three methods' scores (module docstring); ``workdir``: where the history goes (a temp dir by
    default); ``fmt``: both files' format (``topicfeed.ingest.Format``; auto: from their names);
    ``feed``: the ranking settings of our feed (default: ``settings.feed``; ``tune_weights`` makes
    some). A documents file whose topics are outside the configured taxonomy (MovieLens genres) gets
    a taxonomy made of the topics it uses. With ``intents`` (``offline_world``, as ``intent_days``,
    ``domains`` and ``progress``), a fourth row: our feed without its intents source, on the same profiles."""
    feed = feed or settings.feed
    with offline_world(settings, events, documents, split_time, workdir=workdir, fmt=fmt, intents=intents, intent_days=intent_days, domains=domains, progress=progress) as world:
        rows = [world.ranker(feed, k), *world.baselines(k)]
        if intents is not None:
            rows.append(world.ranker(without_intents(feed), k, method="no intents"))
        return rows


def without_intents(feed: FeedSettings) -> FeedSettings:
    """The same ranking settings with the intents source switched off."""
    return feed.model_copy(update={"sources": feed.sources.model_copy(update={"intents": feed.sources.intents.model_copy(update={"enabled": False})})})
