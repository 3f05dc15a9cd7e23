"""Day-by-day behaviour: home-feed and main-page impressions with a click model, search sessions.

Every day is vectorised over all users (numpy); only query strings are built one by one.
Click model: P(click) = examination(position) x document quality x (base + gain x match), where
match is how well the document's topics fit the user's interests of that day (0..1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from topicfeed.simulator import text
from topicfeed.simulator.world import World, _day_us, _diurnal_seconds

TYPES = ("impression", "click", "search")
HOMEFEED, SEARCH, MAIN = 0, 1, 2
IMPRESSION, CLICK, SEARCH_EVENT = 0, 1, 2
DAY_US = 86_400_000_000

# (base, gain) of the click model per surface
CLICK_MODEL = {HOMEFEED: (0.01, 0.30), MAIN: (0.005, 0.20), SEARCH: (0.02, 0.60)}


@dataclass
class EventColumns:
    """Events as parallel integer arrays (strings are looked up only when the table is written)."""

    user: list[np.ndarray] = field(default_factory=list)
    domain: list[np.ndarray] = field(default_factory=list)
    type: list[np.ndarray] = field(default_factory=list)
    doc: list[np.ndarray] = field(default_factory=list)
    query: list[np.ndarray] = field(default_factory=list)
    position: list[np.ndarray] = field(default_factory=list)
    ts: list[np.ndarray] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)

    def add(self, user, domain, type_, doc, query, position, ts) -> None:  # noqa: ANN001
        n = len(user)
        for name, value, dtype in (
            ("user", user, np.int32),
            ("domain", domain, np.int8),
            ("type", type_, np.int8),
            ("doc", doc, np.int32),
            ("query", query, np.int32),
            ("position", position, np.int16),
            ("ts", ts, np.int64),
        ):
            arr = np.broadcast_to(np.asarray(value, dtype=dtype), (n,))
            getattr(self, name).append(np.array(arr, dtype=dtype))

    def concat(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(getattr(self, k)) if getattr(self, k) else np.zeros(0) for k in ("user", "domain", "type", "doc", "query", "position", "ts")}


@dataclass
class Snapshot:
    """Users' interests valid on days [start, end)."""

    users: np.ndarray
    start: np.ndarray
    end: int
    interests: np.ndarray
    weights: np.ndarray


def examination(position: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + position)) ** 0.5


class LogSimulator:
    def __init__(self, world: World) -> None:
        self.w = world
        self.cfg = world.cfg
        self.rng = world.rng
        self.out = EventColumns()
        self.snapshots: list[Snapshot] = []
        users = world.users
        self.since = np.zeros(len(users.user_id), dtype=np.int64)
        self.affinity = self._affinity(np.arange(len(users.user_id)))

    def _affinity(self, rows: np.ndarray) -> np.ndarray:
        users, geo = self.w.users, self.w.geo
        out = np.zeros((len(rows), len(geo.taxonomy)), dtype=np.float32)
        for k in range(users.interests.shape[1]):
            node = users.interests[rows, k]
            ok = node >= 0
            out[ok] = np.maximum(out[ok], users.weights[rows[ok], k, None].astype(np.float32) * geo.affinity[node[ok]])
        return out

    def run(self) -> tuple[EventColumns, list[Snapshot]]:
        for day in range(self.cfg.days):
            weights, bursts = self._doc_weights(day)
            self._feed(day, HOMEFEED, weights)
            self._feed(day, MAIN, weights)
            self._search(day, weights, bursts)
            self._drift(day + 1)
        users = np.arange(len(self.w.users.user_id))
        self.snapshots.append(Snapshot(users, self.since.copy(), self.cfg.days, self.w.users.interests.copy(), self.w.users.weights.copy()))
        return self.out, self.snapshots

    # helpers -------------------------------------------------------------------------------
    def _doc_weights(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        docs, cfg, geo = self.w.docs, self.cfg, self.w.geo
        age = day - docs.created_day
        weights = np.where(age >= 1, docs.popularity * 0.5 ** ((age - 1) / cfg.popularity_half_life_days), 0.0)
        leaf_p = self.w.topic_pop / self.w.topic_pop.sum()
        bursts = geo.leaves[self.rng.choice(len(geo.leaves), size=min(cfg.burst_topics_per_day, len(geo.leaves)), replace=False, p=leaf_p)]
        bursting = np.isin(docs.topics, bursts).any(axis=1)
        weights[bursting] *= cfg.burst_multiplier
        return weights, bursts

    def _popular(self, weights: np.ndarray, count: int) -> np.ndarray:
        cum = np.cumsum(weights)
        return np.minimum(np.searchsorted(cum, self.rng.random(count) * cum[-1], side="right"), len(weights) - 1)

    def _interest_nodes(self, users: np.ndarray) -> np.ndarray:
        """One interest node per entry, drawn by the user's interest weights."""
        w = self.w.users.weights[users]
        cum = np.cumsum(w, axis=1)
        r = self.rng.random(len(users)) * cum[:, -1]
        slot = (cum < r[:, None]).sum(axis=1)
        return self.w.users.interests[users, np.minimum(slot, w.shape[1] - 1)]

    def _sessions(self, day: int, rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        counts = self.rng.poisson(rate)
        users = np.repeat(np.arange(len(rate)), counts)
        start = _day_us(self.cfg) + day * DAY_US + _diurnal_seconds(self.rng, len(users)) * 1_000_000
        return users, start

    def _match(self, users: np.ndarray, docs: np.ndarray) -> np.ndarray:
        topics = self.w.docs.topics[docs]
        m = np.zeros(len(docs), dtype=np.float32)
        for j in range(topics.shape[1]):
            t = topics[:, j]
            m = np.maximum(m, np.where(t >= 0, self.affinity[users, np.maximum(t, 0)], 0.0))
        return m

    @staticmethod
    def _dedupe(session: np.ndarray, doc: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keep one entry per (session, doc), order each session by descending score; -> (kept indices, positions)."""
        order = np.lexsort((-score, session))
        s, d = session[order], doc[order]
        key = s.astype(np.int64) * (int(doc.max(initial=0)) + 1) + d
        _, first = np.unique(key, return_index=True)
        keep = np.zeros(len(order), dtype=bool)
        keep[first] = True
        kept = order[keep]
        ks = session[kept]
        starts = np.searchsorted(ks, ks, side="left")
        return kept, np.arange(len(kept)) - starts

    def _emit_views(self, domain: int, users, docs, positions, start, relevance, query=-1) -> None:  # noqa: ANN001
        base, gain = CLICK_MODEL[domain]
        ts = start + positions.astype(np.int64) * 200_000
        self.out.add(users, domain, IMPRESSION, docs, query, positions, ts)
        p = examination(positions) * self.w.docs.quality[docs] * (base + gain * relevance)
        click = self.rng.random(len(docs)) < p
        delay = self.rng.integers(2_000_000, 60_000_000, size=int(click.sum()))
        q = query[click] if isinstance(query, np.ndarray) else query
        self.out.add(users[click], domain, CLICK, docs[click], q, positions[click], ts[click] + delay)

    # surfaces ------------------------------------------------------------------------------
    def _feed(self, day: int, domain: int, weights: np.ndarray) -> None:
        cfg, users = self.cfg, self.w.users
        rate, slots, share = (
            (users.feed_rate, cfg.feed_slots, cfg.feed_interest_share)
            if domain == HOMEFEED
            else (users.main_rate, cfg.main_slots, cfg.main_interest_share)
        )
        s_user, s_start = self._sessions(day, rate)
        if len(s_user) == 0:
            return
        session = np.repeat(np.arange(len(s_user)), slots)
        user = s_user[session]
        doc = self._popular(weights, len(session))
        personal = np.nonzero(self.rng.random(len(session)) < share)[0]
        picked = self.w.docs_under.sample(self.rng, self._interest_nodes(user[personal]), weights)
        doc[personal] = np.where(picked >= 0, picked, doc[personal])
        slot_order = -np.tile(np.arange(slots), len(s_user)).astype(np.float64)
        kept, positions = self._dedupe(session, doc, slot_order)
        user, doc, session = user[kept], doc[kept], session[kept]
        self._emit_views(domain, user, doc, positions, s_start[session], self._match(user, doc))

    def _search(self, day: int, weights: np.ndarray, bursts: np.ndarray) -> None:
        cfg, rng, w = self.cfg, self.rng, self.w
        s_user, s_start = self._sessions(day, w.users.search_rate)
        n = len(s_user)
        if n == 0:
            return
        node = self._interest_nodes(s_user)
        trending = (rng.random(n) < 0.2) & (len(bursts) > 0)
        if len(bursts):
            node[trending] = bursts[rng.integers(len(bursts), size=int(trending.sum()))]
        leaf = w.geo.subtree.sample(rng, node, np.ones(len(w.geo.taxonomy)))
        entity = w.entity_of(leaf, rng.random(n))
        n_aspects = rng.choice(3, size=n, p=[0.45, 0.35, 0.20])
        aspect_draw = rng.integers(0, 1 << 30, size=(n, 2))
        first_aspect = np.full(n, -1, dtype=np.int64)
        base_q = len(self.out.queries)
        for i in range(n):
            asp = w.aspects[int(leaf[i])]
            words = [str(w.entity_names[entity[i]])]
            if rng.random() < 0.7:
                words[0] = words[0].lower()
            for a in range(int(n_aspects[i])):
                idx = int(aspect_draw[i, a] % len(asp))
                if a == 0:
                    first_aspect[i] = idx
                words.append(asp[idx])
            q = " ".join(words)
            if rng.random() < cfg.typo_rate:
                q = text.typo(rng, q)
            self.out.queries.append(q)
        query = base_q + np.arange(n)
        self.out.add(s_user, SEARCH, SEARCH_EVENT, -1, query, -1, s_start)

        r = cfg.search_results
        session = np.repeat(np.arange(n), r)
        ent = entity[session]
        by_entity = rng.random(len(session)) < 0.6
        doc = w.docs_with_entity.sample(rng, ent, weights)
        by_topic = w.docs_under.sample(rng, leaf[session], weights)
        doc = np.where(by_entity & (doc >= 0), doc, by_topic)
        doc = np.where(doc >= 0, doc, self._popular(weights, len(session)))
        has_entity = (w.docs.entity[doc] == ent[:, None]).any(axis=1)
        same_aspect = (first_aspect[session] >= 0) & (w.docs.aspect[doc] == first_aspect[session])
        relevance = (has_entity + 0.5 * (has_entity & same_aspect)) / 1.5
        score = relevance + 0.3 * rng.random(len(session)) + 0.1 * np.log1p(weights[doc])
        kept, positions = self._dedupe(session, doc, score)
        session, doc = session[kept], doc[kept]
        self._emit_views(SEARCH, s_user[session], doc, positions, s_start[session] + 1_000_000, relevance[kept], query=query[session])

    def _drift(self, day: int) -> None:
        """Interests change slowly: a few users a day swap or add one interest and reweigh the rest."""
        users, rng, cfg = self.w.users, self.rng, self.cfg
        if day >= cfg.days:
            return
        idx = np.nonzero(rng.random(len(users.user_id)) < cfg.drift_per_day)[0]
        if len(idx) == 0:
            return
        self.snapshots.append(Snapshot(idx, self.since[idx].copy(), day, users.interests[idx].copy(), users.weights[idx].copy()))
        self.since[idx] = day
        k = users.interests.shape[1]
        valid = users.interests[idx] >= 0
        count = valid.sum(axis=1)
        slot = np.argmin(np.where(valid, users.weights[idx], np.inf), axis=1)
        grow = (count < k) & (rng.random(len(idx)) < 0.3)
        slot = np.where(grow, count, slot)
        near = users.interests[idx, (rng.random(len(idx)) * count).astype(np.int64)]
        users.interests[idx, slot] = self.w.new_interest(len(idx), near=near)
        users.weights[idx, slot] = rng.gamma(1.0, size=len(idx))
        valid = users.interests[idx] >= 0
        users.weights[idx] = np.where(valid, users.weights[idx] * rng.lognormal(0, 0.2, size=valid.shape), 0.0)
        users.weights[idx] /= users.weights[idx].max(axis=1, keepdims=True)
        self.affinity[idx] = self._affinity(idx)
