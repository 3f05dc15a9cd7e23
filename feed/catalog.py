"""The item side of the feed, held in memory as arrays and swapped whole when refreshed.

``Catalog.load(settings)`` reads what the feature store computed offline: ``item_topics`` (topics per
level with scores, the topic embedding) and the latest ``item_stats`` (decayed popularity, partner,
creation time), plus titles from the lake's documents and, from the lake's click events, each item's
trend (the largest rise of its clicks over the window before, over the configured windows) and each
user's clicked items (excluded from their feed; the service adds clicks that arrive later) and the
item-to-item co-click matrix built from them (``coclick_matrix``).
``CatalogHolder`` keeps the current catalog and replaces it atomically on refresh: a request reads
one reference and never sees a half-built catalog.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import sparse

from topicfeed.lake import Lake
from topicfeed.settings import Settings
from topicfeed.taxonomy import split_path

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-case alphanumeric tokens (for intent matching against titles)."""
    return _WORD.findall(text.lower())


@dataclass
class Catalog:
    """Every servable item as parallel arrays, plus the inverted indexes the candidate sources use."""

    ids: list[str]
    titles: list[str]
    created_s: np.ndarray  # float64 epoch seconds
    popularity: np.ndarray  # float32, decayed clicks, normalised to 0..1
    trend: np.ndarray  # float32, 0..1
    partner: np.ndarray  # object: partner name or ""
    embedding: np.ndarray  # float32 (n, d), unit rows (or zero)
    l2_topic: np.ndarray  # int32 id of the item's strongest level-2 topic (-1: none)
    item_topics: list[dict[str, float]]  # per item: topic path -> score, every level
    by_topic: dict[str, tuple[np.ndarray, np.ndarray]]  # topic -> (item indices, scores), best first
    by_word: dict[str, np.ndarray]  # title word -> item indices
    clicked: dict[str, set[int]]  # user -> items clicked (in the lake's window)
    asof: datetime
    index: dict[str, int] = field(default_factory=dict)
    by_popularity: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    by_trend: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    by_fresh: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    loaded_in_s: float = 0.0
    topic_paths: list[str] = field(default_factory=list)  # column j of ``topic_matrix``
    topic_levels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    topic_matrix: sparse.csr_matrix | None = None  # (items, topics): the item's score for the topic
    topic_readable: list[str] = field(default_factory=list)  # column j's path in words ("News > Politics")
    embedding_csr: sparse.csr_matrix | None = None  # the same embedding, sparse (a few topics per item)
    partner_items: dict[str, np.ndarray] = field(default_factory=dict)  # partner -> its item indices
    coclick: sparse.csr_matrix | None = None  # (items, items): co-click cosine, the strongest neighbours per row

    def __post_init__(self) -> None:
        self.index = {item: i for i, item in enumerate(self.ids)}
        self.topic_paths = sorted({p for topics in self.item_topics for p in topics})
        column = {p: j for j, p in enumerate(self.topic_paths)}
        self.topic_column = column
        self.topic_levels = np.array([p.count(" > ") + 1 for p in self.topic_paths], dtype=np.int64)
        rows = [i for i, topics in enumerate(self.item_topics) for _ in topics]
        cols = [column[p] for topics in self.item_topics for p in topics]
        vals = [s for topics in self.item_topics for s in topics.values()]
        self.topic_matrix = sparse.csr_matrix((np.array(vals, np.float64), (np.array(rows, np.int64), np.array(cols, np.int64))), shape=(len(self.ids), len(self.topic_paths)))
        self.embedding_csr = sparse.csr_matrix(self.embedding)
        self.partner_items = {p: np.flatnonzero(self.partner == p) for p in set(self.partner.tolist()) if p}
        self.topic_readable = [" > ".join(split_path(p)) for p in self.topic_paths]
        self.by_popularity = np.argsort(-self.popularity, kind="stable")
        self.by_trend = np.argsort(-self.trend, kind="stable")
        self.by_fresh = np.argsort(-self.created_s, kind="stable")

    def __len__(self) -> int:
        return len(self.ids)

    def _gather(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row in ``items``, position in the CSR arrays) of every stored topic score of those rows."""
        m = self.topic_matrix
        starts = m.indptr[items]
        lengths = m.indptr[items + 1] - starts
        row = np.repeat(np.arange(len(items)), lengths)
        at = np.arange(len(row)) - np.repeat(np.cumsum(lengths) - lengths, lengths) + starts[row]
        return row, at

    def topic_scores(self, items: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``topic_matrix[items] @ w``, gathered from the CSR arrays of those rows only (no sparse
        fancy indexing: its cost grows with the rows asked for, not with the catalog)."""
        if self.topic_matrix is None or not len(items):
            return np.zeros(len(items))
        row, at = self._gather(items)
        m = self.topic_matrix
        return np.bincount(row, weights=m.data[at] * w[m.indices[at]], minlength=len(items))

    def best_topics(self, items: np.ndarray, w: np.ndarray) -> list[int | None]:
        """Per item, the column of its topic that adds most to its topic score under weights ``w``
        (the first stored such topic on ties), or None where no topic adds anything."""
        best: list[int | None] = [None] * len(items)
        if self.topic_matrix is None or not len(items):
            return best
        row, at = self._gather(items)
        m = self.topic_matrix
        contrib = m.data[at] * w[m.indices[at]]
        order = np.lexsort((-contrib, row))  # by row, strongest first
        by_row = row[order]
        first = order[np.concatenate(([True], by_row[1:] != by_row[:-1]))]
        for r, a, c in zip(row[first].tolist(), at[first].tolist(), contrib[first].tolist()):
            if c > 0:
                best[r] = int(m.indices[a])
        return best

    @classmethod
    def load(cls, settings: Settings, asof: datetime | None = None) -> Catalog:
        """The catalog from the offline feature tables and the lake (see the module docstring)."""
        start = time.perf_counter()
        lake = Lake(settings.lake_dir)
        topics_path = settings.features_dir / "item_topics" / "item_topics.parquet"
        stats_files = sorted((settings.features_dir / "item_stats").glob("*.parquet"))
        if not topics_path.is_file() or not stats_files:
            raise FileNotFoundError(f"no item features under {settings.features_dir}: run `topicfeed store compute` first")
        topics = pq.read_table(topics_path)
        stats = pq.read_table(stats_files[-1], columns=["item_id", "popularity", "created_at", "partner"])
        docs = lake.read("documents", columns=["doc_id", "title"])
        ids = stats.column("item_id").to_pylist()
        n = len(ids)
        index = {item: i for i, item in enumerate(ids)}
        title_of = dict(zip(docs.column("doc_id").to_pylist(), docs.column("title").to_pylist()))
        titles = [title_of.get(i, i) for i in ids]
        created = pc.cast(stats.column("created_at"), "int64").to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
        pop = np.log1p(stats.column("popularity").to_numpy(zero_copy_only=False).astype(np.float32))
        pop = pop / pop.max() if n and pop.max() > 0 else pop
        partner = np.array([p or "" for p in stats.column("partner").to_pylist()], dtype=object)

        dim = len(topics.column("topic_embedding")[0]) if topics.num_rows else 0
        embedding = np.zeros((n, dim), dtype=np.float32)
        item_topics: list[dict[str, float]] = [{} for _ in range(n)]
        l2_names: dict[str, int] = {}
        l2_topic = np.full(n, -1, dtype=np.int32)
        postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        rows = zip(topics.column("item_id").to_pylist(), topics.column("topics").to_pylist(), topics.column("topic_scores").to_pylist())
        emb_rows = topics.column("topic_embedding").to_pylist()
        for (item, paths, scores), emb in zip(rows, emb_rows):
            i = index.get(item)
            if i is None:
                continue
            embedding[i] = emb
            best_l2 = None
            for path, score in zip(paths, scores):
                item_topics[i][path] = float(score)
                postings[path].append((i, float(score)))
                if best_l2 is None and len(split_path(path)) == 2:
                    best_l2 = path
            if best_l2 is not None:
                l2_topic[i] = l2_names.setdefault(best_l2, len(l2_names))
        by_topic = {}
        for path, items in postings.items():
            items.sort(key=lambda t: (-t[1], -pop[t[0]]))
            by_topic[path] = (np.array([i for i, _ in items], dtype=np.int64), np.array([s for _, s in items], dtype=np.float32))
        by_word: dict[str, list[int]] = defaultdict(list)
        for i, title in enumerate(titles):
            for w in set(words(title)):
                by_word[w].append(i)
        asof = asof or _newest_event(lake) or datetime.now(UTC)
        trend, clicked = _trend_and_clicks(settings, lake, index, asof)
        coclick = coclick_matrix(clicked.values(), n, settings.feed.coclick_neighbours, settings.feed.coclick_user_items)
        return cls(
            ids=ids,
            titles=titles,
            created_s=created,
            popularity=pop.astype(np.float32),
            trend=trend,
            partner=partner,
            embedding=embedding,
            l2_topic=l2_topic,
            item_topics=item_topics,
            by_topic=by_topic,
            by_word={w: np.array(v, dtype=np.int64) for w, v in by_word.items()},
            clicked=clicked,
            asof=asof,
            coclick=coclick,
            loaded_in_s=time.perf_counter() - start,
        )


def coclick_matrix(clicks: Iterable[set[int]], n: int, neighbours: int, user_items: int) -> sparse.csr_matrix | None:
    """Item-to-item co-click cosine over ``n`` items from each user's clicked items (at most
    ``user_items`` of a user, the lowest indices: a bound on the pairs a heavy user adds):
    ``C[i, j] = users(i, j) / sqrt(users(i) * users(j))``, no diagonal, the ``neighbours`` strongest
    per row kept. None when no user clicked two items."""
    rows: list[np.ndarray] = []
    for u, items in enumerate(clicks):
        if len(items) > 1:
            rows.append(np.stack([np.full(min(len(items), user_items), u), np.sort(np.fromiter(items, np.int64, len(items)))[:user_items]]))
    if not rows:
        return None
    pairs = np.concatenate(rows, axis=1)
    m = sparse.csr_matrix((np.ones(pairs.shape[1]), (pairs[0], pairs[1])), shape=(int(pairs[0].max()) + 1, n))
    c = (m.T @ m).tocoo()
    users = np.asarray(m.sum(axis=0)).ravel()
    off = c.row != c.col
    r, col, v = c.row[off], c.col[off], c.data[off] / np.sqrt(users[c.row[off]] * users[c.col[off]])
    order = np.lexsort((-v, r))  # by row, strongest first
    r, col, v = r[order], col[order], v[order]
    starts = np.searchsorted(r, r, side="left")
    keep = np.arange(len(r)) - starts < neighbours
    if not keep.any():
        return None
    return sparse.csr_matrix((v[keep].astype(np.float32), (r[keep], col[keep])), shape=(n, n))


def _newest_event(lake: Lake) -> datetime | None:
    if not lake.exists("events"):
        return None
    newest = duckdb.connect().execute(f"select max(ts) from {lake.scan('events')}").fetchone()[0]
    return newest.astimezone(UTC) if newest is not None else None


def _trend_and_clicks(settings: Settings, lake: Lake, index: dict[str, int], asof: datetime) -> tuple[np.ndarray, dict[str, set[int]]]:
    """Per item, the largest rise of clicks over the window before, ``(recent - before) / sqrt(before + 1)``
    over the configured windows, scaled to 0..1; per user, the items clicked in the preference window."""
    n = len(index)
    trend = np.zeros(n, dtype=np.float32)
    clicked: dict[str, set[int]] = defaultdict(set)
    if not lake.exists("events"):
        return trend, clicked
    con = duckdb.connect()
    start = asof - timedelta(days=settings.preferences.window_days)
    scan = lake.scan("events")
    for minutes in settings.feed.trending_windows_minutes:
        w = timedelta(minutes=minutes)
        got = con.execute(
            f"""select item_id,
                       count(*) filter (where ts >= $mid) as recent,
                       count(*) filter (where ts < $mid) as before
                from {scan} where type = 'click' and ts >= $lo and ts < $hi group by item_id""",
            {"lo": asof - 2 * w, "mid": asof - w, "hi": asof},
        ).fetchall()
        for item, recent, before in got:
            i = index.get(item)
            if i is not None:
                trend[i] = max(trend[i], (recent - before) / np.sqrt(before + 1.0))
    if trend.max(initial=0) > 0:
        trend = np.clip(trend / trend.max(), 0, 1).astype(np.float32)
    pairs = con.execute(f"select distinct user_id, item_id from {scan} where type = 'click' and ts >= $lo and ts < $hi", {"lo": start, "hi": asof}).fetchall()
    for user, item in pairs:
        i = index.get(item)
        if i is not None:
            clicked[user].add(i)
    return trend, dict(clicked)


class CatalogHolder:
    """The current catalog behind one reference; ``refresh`` builds a new one and swaps it in."""

    def __init__(self, loader: Callable[[], Catalog]) -> None:
        self._loader = loader
        self.catalog = loader()
        self.version = 0  # +1 on every refresh (feeds memoized by the service name the version they came from)
        self.refreshed_at = time.time()
        self.refresh_errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> Catalog:
        fresh = self._loader()
        # clicks that arrived through the service since the last load stay excluded
        for user, items in self.catalog.clicked.items():
            ids = [self.catalog.ids[i] for i in items]
            fresh.clicked.setdefault(user, set()).update(fresh.index[x] for x in ids if x in fresh.index)
        self.catalog = fresh  # one reference assignment: atomic for readers
        self.version += 1
        self.refreshed_at = time.time()
        return fresh

    def start(self, every_s: float) -> None:
        def loop() -> None:
            while not self._stop.wait(every_s):
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001 - a failed refresh keeps serving the previous catalog
                    self.refresh_errors += 1

        self._thread = threading.Thread(target=loop, name="catalog-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
