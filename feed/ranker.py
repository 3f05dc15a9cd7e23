"""Ranking a home feed from one user profile and the in-memory catalog: plain library code.

Candidates come from named sources (``FeedSettings.sources``, each switchable): the user's top topics
at each level, refined intents (title words of the refined query), trending, popular, similar to what
the user clicked (cosine over the topic embedding, brute force), co-clicked with what the user
clicked (item-to-item co-click cosine, ``Catalog.coclick``) and fresh items. Each candidate is scored as

    level_weights[l] * pref_l(topic) * item_score(topic), summed over the item's topics and levels
  + intent_weight * (share of the intent's words in the title, by IDF, or 1 for the topics of a fresh search)
                  * 0.5 ** (age / intent half-life)
  + similar_weight * cosine(item, the user's clicked items)
  + coclick_weight * sum of the item's co-click cosines with the user's clicked items (scaled to 0..1 per user)
  + trend_weight * trend + popularity_weight * popularity + freshness_weight * 0.5 ** (age / half-life)
  + exploration * freshness * u,   u ~ U(0, 1), fixed per (user, day, item)

Items the user clicked are excluded; at most ``max_per_l2_topic`` items of one level-2 topic make a
page (the rest move down); a partner rule is applied last (``feed.partner``). The reason of an item is
its largest contribution, in words, or the recent search whose words it matches (``intent_reason_share``). An unknown user (or a store that does not answer) gets the
non-personalized feed: trending, popular and fresh, with ``fallback=True``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from featurestore.profile import UserProfile
from feed.catalog import Catalog, words
from feed.partner import place
from intent.text import STOPWORDS
from topicfeed.settings import FeedSettings

ReasonKind = Literal["intent", "topic", "trending", "popular", "similar", "fresh", "partner"]
TOPICS_PER_LEVEL = 5  # the user's strongest topics per level that feed the topic source
SOURCES = ("intents", "topics", "similar", "coclick", "trending", "popular", "fresh", "partner")  # Scored.source codes
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def unit_noise(seed: int, items: np.ndarray) -> np.ndarray:
    """A uniform draw in [0, 1) per item, a pure function of (seed, item): splitmix64 of the two."""
    with np.errstate(over="ignore"):
        z = (items.astype(np.uint64) + np.uint64(1)) * _GOLDEN + np.uint64(seed)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class RecentSearch:
    """A search with clicks that arrived moments ago: its query, and the clicked items' topics."""

    query: str
    topics: dict[str, float]
    ts: datetime
    refined: str | None = None  # Q* once the intent refiner has written it (the reason says it)


@dataclass(frozen=True)
class Reason:
    kind: ReasonKind
    text: str


@dataclass(frozen=True)
class FeedItem:
    item_id: str
    score: float
    source: str
    reason: Reason


@dataclass
class Scored:
    """Candidates (catalog indices) with their scores and score parts (intent, topic, similar, coclick,
    trend, popularity, fresh), as ``Ranker.scored`` returns them."""

    cands: np.ndarray
    score: np.ndarray
    parts: np.ndarray
    source: np.ndarray  # int: the source that offered each candidate first, as its index in SOURCES
    intent: dict[int, tuple[float, str]]
    topic_weights: np.ndarray | None  # the user's weight per catalog topic column (None: no topic preferences)
    clicked: set[int]
    similarity: np.ndarray | None  # cosine of every catalog item with the user's clicked items (None: no clicks)
    personal: bool


@dataclass
class Feed:
    user_id: str
    items: list[FeedItem]
    fallback: bool
    candidates: int = 0
    sources: dict[str, int] = field(default_factory=dict)


def age_hours(catalog: Catalog, items: np.ndarray, now_s: float) -> np.ndarray:
    """The items' ages in hours at ``now_s`` (epoch seconds); an item from the future is 0 hours old."""
    return np.maximum(now_s - catalog.created_s[items], 0) / 3600


def intent_matches(catalog: Catalog, query: str, limit: int, now_s: float | None = None, half_life_hours: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``limit`` items whose titles match a refined query best, and their match in 0..1: the
    share of the query's inverse document frequency (over the catalog's titles) that the title has,
    stopwords aside. A title with the query's rare words (its names) matches; one with only its
    common words ("new", "review") barely does. With ``half_life_hours``, the best are chosen by the
    match halved with every half-life of the item's age at ``now_s`` (as the ranker scores it)."""
    found = [(w, catalog.by_word[w]) for w in dict.fromkeys(words(query)) if w not in STOPWORDS and w in catalog.by_word]
    if not found:
        return np.zeros(0, np.int64), np.zeros(0)
    idf = np.array([math.log((len(catalog) + 1) / (len(items) + 0.5)) for _, items in found])
    every = np.concatenate([items for _, items in found])
    weights = np.repeat(idf, [len(items) for _, items in found])
    items, inverse = np.unique(every, return_inverse=True)
    share = np.bincount(inverse, weights=weights) / idf.sum()
    key = share
    if half_life_hours is not None and now_s is not None:
        key = share * 0.5 ** (age_hours(catalog, items, now_s) / half_life_hours)
    best = np.lexsort((-catalog.popularity[items], -key))[:limit]
    return items[best], share[best]


class Ranker:
    """``rank(catalog, profile, ...)`` -> ``Feed``; stateless apart from its settings."""

    def __init__(self, settings: FeedSettings) -> None:
        self.settings = settings
        self.enabled = settings.sources.enabled()

    # candidates -------------------------------------------------------------------------------
    def _candidates(
        self, catalog: Catalog, profile: UserProfile | None, clicked: set[int], searches: list[RecentSearch], personal: bool, partner: str | None, now_s: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[float, str]], np.ndarray | None, np.ndarray | None]:
        """(candidates in first-offer order, the source that offered each first, item -> (intent match,
        query), every item's cosine with the user's clicked items or None, every item's co-click score
        with them or None)."""
        offered: list[np.ndarray] = []
        names: list[str] = []
        intent: dict[int, tuple[float, str]] = {}

        def offer(items: Iterable[int] | np.ndarray, name: str) -> None:
            arr = np.asarray(items if isinstance(items, np.ndarray) else list(items), dtype=np.int64)
            if len(arr):
                offered.append(arr)
                names.append(name)

        limits = self.enabled
        read = np.fromiter(clicked, dtype=np.int64, count=len(clicked))  # the clicked items as indices
        sims: np.ndarray | None = None
        co: np.ndarray | None = None
        if personal and profile is not None:
            if "intents" in limits:
                queries = [q for q in [profile.last_refined_query, *profile.recent_refined_queries] if q]
                for q in dict.fromkeys(queries):
                    best, shares = intent_matches(catalog, q, limits["intents"], now_s, self.settings.intent_half_life_hours)
                    for i, share in zip(best.tolist(), shares.tolist()):
                        if share > intent.get(i, (0.0, ""))[0]:
                            intent[i] = (share, q)
                    offer(best, "intents")
            if "topics" in limits:
                per = max(1, limits["topics"] // (TOPICS_PER_LEVEL * max(1, len(self.settings.level_weights))))
                for level in range(len(self.settings.level_weights), 0, -1):
                    for topic, _ in profile.top(level, k=TOPICS_PER_LEVEL):
                        got = catalog.by_topic.get(topic)
                        if got is not None:
                            offer(got[0][:per], "topics")
            if "similar" in limits and clicked and catalog.embedding.shape[1]:
                user_vec = catalog.embedding[read].mean(axis=0)
                norm = float(np.linalg.norm(user_vec))
                if norm > 0:
                    sims = catalog.embedding_csr @ (user_vec / norm)  # sparse: cost grows with topics per item
                    k = min(limits["similar"] + len(clicked), len(sims))
                    top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
                    offer(top[np.argsort(-sims[top])], "similar")
            if "coclick" in limits and clicked and catalog.coclick is not None:
                got = np.asarray(catalog.coclick[read].sum(axis=0)).ravel()
                if got.max(initial=0) > 0:
                    co = got / got.max()
                    nz = np.flatnonzero(co)
                    k = min(limits["coclick"] + len(clicked), len(nz))
                    top = nz[np.argpartition(-co[nz], k - 1)[:k]] if k < len(nz) else nz
                    offer(top[np.argsort(-co[top], kind="stable")], "coclick")
        for search in searches:
            for topic in search.topics:
                got = catalog.by_topic.get(topic)
                if got is not None:
                    for i in got[0][: limits.get("intents", 20)]:
                        if intent.get(int(i), (0.0, ""))[0] < 1.0:
                            intent[int(i)] = (1.0, search.refined or search.query)
                    offer(got[0][: limits.get("intents", 20)], "intents")
        for name, order in (("trending", catalog.by_trend), ("popular", catalog.by_popularity), ("fresh", catalog.by_fresh)):
            if name in limits:
                offer(order[: limits[name]], name)
        if partner:
            offer(catalog.partner_items.get(partner, np.zeros(0, np.int64)), "partner")
        if not offered:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), intent, sims, co
        every = np.concatenate(offered)
        codes = np.repeat(np.array([SOURCES.index(n) for n in names], dtype=np.int64), [len(a) for a in offered])
        _, first = np.unique(every, return_index=True)
        keep = np.sort(first)
        cands, src = every[keep], codes[keep]
        if clicked:
            seen = np.zeros(len(catalog), dtype=bool)
            seen[read] = True
            fresh = ~seen[cands]
            cands, src = cands[fresh], src[fresh]
        return cands, src, intent, sims, co

    # scoring -----------------------------------------------------------------------------------
    def scored(
        self,
        catalog: Catalog,
        profile: UserProfile | None,
        *,
        user_id: str,
        now: datetime,
        exclude: Iterable[int] = (),
        searches: Iterable[RecentSearch] = (),
        partner: str | None = None,
        fallback: bool = False,
    ) -> Scored:
        """Every candidate with its score and the parts of it (before diversity and the partner rule);
        ``partner`` adds that partner's items as candidates."""
        s = self.settings
        searches = list(searches)
        clicked = set(catalog.clicked.get(user_id, ())) | set(exclude)
        personal = not fallback and ((profile is not None and profile.found) or bool(searches) or bool(clicked))
        cands, source, intent, sims, co = self._candidates(catalog, profile, clicked, searches if personal else [], personal, partner, now.timestamp())
        topic = np.zeros(len(cands))
        w: np.ndarray | None = None
        if personal and profile is not None and len(cands) and catalog.topic_matrix is not None:
            # the user's preferences as one weight per catalog topic column (level weight x preference)
            w = np.zeros(len(catalog.topic_paths))
            for level, lw in enumerate(s.level_weights, start=1):
                for path, pref in profile.top(level):
                    j = catalog.topic_column.get(path)
                    if j is not None:
                        w[j] = lw * pref
            if w.any():
                topic = catalog.topic_scores(cands, w)
            else:
                w = None
        age_h = age_hours(catalog, cands, now.timestamp())
        intent_score = np.zeros(len(cands))
        if personal and intent:
            at = {int(i): j for j, i in enumerate(cands)}
            for i, (share, _) in intent.items():
                if i in at:
                    intent_score[at[i]] = share * s.intent_weight
            if s.intent_half_life_hours is not None:
                intent_score *= 0.5 ** (age_h / s.intent_half_life_hours)
        similar = np.clip(sims[cands], 0, 1) * s.similar_weight if sims is not None else np.zeros(len(cands))
        coclick = co[cands] * s.coclick_weight if co is not None else np.zeros(len(cands))
        trend = catalog.trend[cands] * s.trend_weight
        pop = catalog.popularity[cands] * s.popularity_weight
        fresh_raw = 0.5 ** (age_h / s.freshness_half_life_hours)
        seed = int.from_bytes(hashlib.blake2b(f"{user_id}|{now:%Y-%m-%d}".encode(), digest_size=8).digest(), "little")
        fresh = fresh_raw * (s.freshness_weight + s.exploration * unit_noise(seed, cands))
        parts = np.vstack([intent_score, topic, similar, coclick, trend, pop, fresh]) if len(cands) else np.zeros((7, 0))
        return Scored(cands, parts.sum(axis=0), parts, source, intent, w, clicked, sims, personal)

    def rank(
        self,
        catalog: Catalog,
        profile: UserProfile | None,
        *,
        user_id: str,
        limit: int | None = None,
        now: datetime | None = None,
        exclude: Iterable[int] = (),
        searches: Iterable[RecentSearch] = (),
        partner: str | None = None,
        share: float | None = None,
        fallback: bool = False,
    ) -> Feed:
        """The user's feed. ``fallback=True`` (or a profile that is absent or not found, with no recent
        search) gives the non-personalized feed. ``partner``/``share`` override the settings' rule."""
        s = self.settings
        limit = limit or s.default_limit
        now = now or datetime.now(UTC)
        partner = partner if partner is not None else s.partner
        share = s.partner_share if share is None else share
        sc = self.scored(catalog, profile, user_id=user_id, now=now, exclude=exclude, searches=searches, partner=partner if share > 0 else None, fallback=fallback)
        cands, score, parts, source, intent, clicked = sc.cands, sc.score, sc.parts, sc.source, sc.intent, sc.clicked
        if len(cands) == 0:
            return Feed(user_id, [], fallback=not sc.personal)
        order = self._cap_intents(parts, np.argsort(-score, kind="stable"))
        ranked = self._diversify(catalog.l2_topic[cands[order]], order, limit_hint=max(limit, s.partner_top_n))  # positions in cands
        if partner and share > 0:
            top_n = min(s.partner_top_n, limit)
            chosen = place(score[ranked], catalog.partner[cands[ranked]] == partner, top_n, share)
            head = ranked[chosen]
            rest = ranked[~np.isin(ranked, head)]
            ranked = np.concatenate([head, rest])
        items = []
        counts: dict[str, int] = {}
        kinds = ("intent", "topic", "similar", "coclick", "trending", "popular", "fresh")  # the rows of parts
        page = ranked[:limit]
        page_items = cands[page]
        strongest = parts[:, page].argmax(axis=0).tolist()
        top_part = parts[:, page].max(axis=0).tolist()
        topics = catalog.best_topics(page_items, sc.topic_weights) if sc.topic_weights is not None else [None] * len(page)
        for i, j, k, top, column in zip(page_items.tolist(), page.tolist(), strongest, top_part, topics):
            src = SOURCES[source[j]]
            if src == "partner" or (partner and share > 0 and catalog.partner[i] == partner and top <= 0):
                reason = Reason("partner", f"from our partner {catalog.partner[i]}")
            else:
                match, query = intent.get(i, (0.0, ""))
                kind = "intent" if parts[0, j] > 0 and match >= s.intent_reason_share else kinds[k]  # it names what the user searched
                reason = self._reason(kind, catalog, i, query, column, clicked)
            counts[src] = counts.get(src, 0) + 1
            items.append(FeedItem(catalog.ids[i], round(float(score[j]), 6), src, reason))
        return Feed(user_id, items, fallback=not sc.personal, candidates=len(cands), sources=counts)

    def _cap_intents(self, parts: np.ndarray, order: np.ndarray) -> np.ndarray:
        """``order`` (positions in the candidates, best first) with the items led by an intent (their
        intent part the largest, and above 0) past the first ``max_intent_items`` moved behind the rest."""
        cap = self.settings.max_intent_items
        if cap is None or parts.shape[1] == 0:
            return order
        intent = parts[0, order]
        led = (intent > 0) & (intent >= parts[1:, order].max(axis=0))
        over = led & (np.cumsum(led) > cap)
        return np.concatenate([order[~over], order[over]]) if over.any() else order

    def _diversify(self, l2: np.ndarray, ranked: np.ndarray, limit_hint: int) -> np.ndarray:
        """``ranked`` reordered so that each of the first ``limit_hint`` has at most ``max_per_l2_topic``
        items of one level-2 topic (``l2``: the topic of each, in ``ranked`` order); the others keep
        their order behind. Vectorized: an item is eligible for the page while fewer than the cap of
        its topic come before it; the page is the first ``limit_hint`` eligible ones."""
        cap = self.settings.max_per_l2_topic
        n = len(ranked)
        if n == 0:
            return ranked
        by_topic = np.argsort(l2, kind="stable")  # positions grouped by topic, in rank order inside
        grouped = l2[by_topic]
        group_start = np.flatnonzero(np.concatenate(([True], grouped[1:] != grouped[:-1])))
        rank_in_topic = np.empty(n, dtype=np.int64)
        rank_in_topic[by_topic] = np.arange(n) - np.repeat(group_start, np.diff(group_start, append=n))
        eligible = np.flatnonzero((l2 < 0) | (rank_in_topic < cap))[:limit_hint]
        behind = np.ones(n, dtype=bool)
        behind[eligible] = False
        return np.concatenate([ranked[eligible], ranked[behind]])

    @staticmethod
    def _reason(kind: str, catalog: Catalog, i: int, query: str, column: int | None, clicked: set[int]) -> Reason:
        """``kind``: the score part that adds most; ``column``: the item's topic that adds most to its
        topic score (``Catalog.best_topics``)."""
        if kind == "intent" and query:
            return Reason("intent", f"because you recently searched '{query}'")
        if kind == "topic" and column is not None:
            return Reason("topic", f"because you follow {catalog.topic_readable[column]}")
        if kind == "similar" and clicked:
            read = np.fromiter(clicked, dtype=np.int64, count=len(clicked))
            near = int(read[np.argmax(catalog.embedding[read] @ catalog.embedding[i])])
            return Reason("similar", f"similar to '{catalog.titles[near]}', which you read")
        if kind == "coclick" and clicked and catalog.coclick is not None:
            read = np.fromiter(clicked, dtype=np.int64, count=len(clicked))
            near = int(read[np.argmax(catalog.coclick[read][:, [i]].toarray().ravel())])
            return Reason("similar", f"people who read '{catalog.titles[near]}' also read this")
        if kind == "trending":
            return Reason("trending", "trending now")
        if kind == "popular":
            return Reason("popular", "popular right now")
        return Reason("fresh", "new: something to discover")
