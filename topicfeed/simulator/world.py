"""The synthetic world: topic geometry, documents with 1-3 true topics, users with hierarchical interests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from topicfeed.settings import SimulatorSettings
from topicfeed.simulator import text
from topicfeed.taxonomy import Taxonomy

SOURCES = np.array(["news", "blog", "cafe"])
SOURCE_P = np.array([0.4, 0.35, 0.25])


@dataclass
class Groups:
    """A many-to-many membership (group -> members) stored as CSR arrays for vectorised sampling."""

    offsets: np.ndarray  # (n_groups + 1,)
    members: np.ndarray  # member ids, grouped

    @classmethod
    def build(cls, group: np.ndarray, member: np.ndarray, n_groups: int) -> Groups:
        order = np.lexsort((member, group))
        group, member = group[order], member[order]
        keep = np.ones(len(group), dtype=bool)
        keep[1:] = (group[1:] != group[:-1]) | (member[1:] != member[:-1])
        group, member = group[keep], member[keep]
        offsets = np.zeros(n_groups + 1, dtype=np.int64)
        np.add.at(offsets, group + 1, 1)
        return cls(np.cumsum(offsets), member)

    def sample(self, rng: np.random.Generator, groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """One member per requested group, drawn by member weight; -1 where a group has no weight."""
        w = weights[self.members]
        cum = np.concatenate([[0.0], np.cumsum(w)])
        lo, hi = cum[self.offsets[groups]], cum[self.offsets[groups + 1]]
        u = lo + rng.random(len(groups)) * (hi - lo)
        pick = np.searchsorted(cum, u, side="right") - 1
        pick = np.clip(pick, self.offsets[groups], np.maximum(self.offsets[groups + 1] - 1, self.offsets[groups]))
        out = np.where(hi > lo, self.members[np.minimum(pick, len(self.members) - 1)], -1)
        return out


@dataclass
class Geometry:
    """Taxonomy as arrays: levels, ancestors, and how much an interest in one node likes another."""

    taxonomy: Taxonomy
    level: np.ndarray  # (n,)
    ancestor: np.ndarray  # (n, depth) ancestor id at each level, -1 below the node's own level
    leaves: np.ndarray  # node ids without children
    affinity: np.ndarray  # (n, n): interest node -> document topic node, in 0..1
    subtree: Groups  # node -> leaves under it (itself for a leaf)

    @classmethod
    def build(cls, taxonomy: Taxonomy) -> Geometry:
        n, depth = len(taxonomy), taxonomy.depth
        level = np.array([node.level for node in taxonomy], dtype=np.int64)
        ancestor = np.full((n, depth), -1, dtype=np.int64)
        for node in taxonomy:
            for lvl, a in enumerate(taxonomy.ancestors(node.id)):
                ancestor[node.id, lvl] = a
        anc = np.zeros((n, n), dtype=np.float32)
        for lvl in range(depth):
            rows = np.nonzero(ancestor[:, lvl] >= 0)[0]
            anc[rows, ancestor[rows, lvl]] = 1.0
        lca = anc @ anc.T  # depth of the lowest common ancestor
        ln, lt = level[:, None], level[None, :]
        affinity = np.select(
            [(lca == ln) & (ln == lt), lca == ln, lca == lt, lca >= 2, lca == 1],
            [1.0, 0.75, 0.5, 0.3, 0.1],
            default=0.0,
        ).astype(np.float32)
        leaves = np.array([node.id for node in taxonomy.leaves()], dtype=np.int64)
        pairs = [(a, leaf) for leaf in leaves for a in taxonomy.ancestors(int(leaf))]
        g, m = np.array(pairs, dtype=np.int64).T
        return cls(taxonomy, level, ancestor, leaves, affinity, Groups.build(g, m, n))


@dataclass
class Documents:
    doc_id: np.ndarray  # str
    created_day: np.ndarray  # int, relative to the first event day (negative: warm-up)
    created_us: np.ndarray  # int64 microseconds since epoch
    topics: np.ndarray  # (n, 3) node ids, -1 padded; column 0 is the main topic
    entity: np.ndarray  # (n, 2) global entity ids, -1 padded
    aspect: np.ndarray  # (n,) index of the main aspect word in its tier-1 aspect list
    quality: np.ndarray
    popularity: np.ndarray  # Zipf base popularity
    partner: np.ndarray  # partner index or -1
    source: np.ndarray  # str
    title: list[str]
    body: list[str]

    def __len__(self) -> int:
        return len(self.doc_id)


@dataclass
class Users:
    user_id: np.ndarray
    light: np.ndarray  # bool: light home-feed user
    uses_search: np.ndarray
    uses_main: np.ndarray
    feed_rate: np.ndarray  # sessions per day
    search_rate: np.ndarray
    main_rate: np.ndarray
    interests: np.ndarray  # (n, K) node ids, -1 padded
    weights: np.ndarray  # (n, K) relative weights (max 1), 0 where padded


class World:
    """Everything fixed before the first day: taxonomy geometry, vocabulary, documents, users."""

    def __init__(self, taxonomy: Taxonomy, cfg: SimulatorSettings, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng
        self.geo = Geometry.build(taxonomy)
        self.prefix = f"s{cfg.seed}"
        self._vocabulary()
        self.topic_pop = self._zipf(len(self.geo.leaves))  # popularity of each leaf, shuffled ranks
        self.docs = self._documents()
        self.users = self._users()
        n = len(taxonomy)
        pairs = [(t, d) for d in range(len(self.docs)) for t in self.docs.topics[d] if t >= 0]
        topic_of, doc_of = np.array(pairs, dtype=np.int64).T
        # node -> documents with a topic at or under the node
        anc = self.geo.ancestor[topic_of]
        g = anc[anc >= 0]
        m = np.repeat(doc_of, (anc >= 0).sum(axis=1))
        self.docs_under = Groups.build(g, m, n)
        ent = self.docs.entity
        rows, cols = np.nonzero(ent >= 0)
        self.docs_with_entity = Groups.build(ent[rows, cols], rows.astype(np.int64), len(self.entity_names))

    # vocabulary ---------------------------------------------------------------------------
    def _vocabulary(self) -> None:
        tax, cfg = self.geo.taxonomy, self.cfg
        names = text.entity_names(self.rng, len(self.geo.leaves) * cfg.entities_per_topic)
        self.entity_names = np.array(names, dtype=object)
        self.entity_leaf = np.repeat(self.geo.leaves, cfg.entities_per_topic)
        self.leaf_entity_start = np.full(len(tax), -1, dtype=np.int64)
        self.leaf_entity_start[self.geo.leaves] = np.arange(len(self.geo.leaves)) * cfg.entities_per_topic
        self.topic_words = [text.name_words(node.name) for node in tax]
        self.aspects = [text.ASPECTS.get(tax.nodes[self.geo.ancestor[i, 0]].name, text.GENERIC_ASPECTS) for i in range(len(tax))]

    def _zipf(self, n: int) -> np.ndarray:
        ranks = self.rng.permutation(n) + 1
        return (1.0 / ranks**self.cfg.zipf_exponent).astype(np.float64)

    def entity_of(self, leaf: np.ndarray, rank_u: np.ndarray) -> np.ndarray:
        """An entity of each leaf, the first ones more often (Zipf within the topic)."""
        k = self.cfg.entities_per_topic
        w = 1.0 / np.arange(1, k + 1)
        cum = np.cumsum(w) / w.sum()
        return self.leaf_entity_start[leaf] + np.searchsorted(cum, rank_u, side="right").clip(0, k - 1)

    # documents ----------------------------------------------------------------------------
    def _documents(self) -> Documents:
        cfg, rng, geo = self.cfg, self.rng, self.geo
        total_days = cfg.warmup_days + cfg.days
        n = cfg.docs_per_day * total_days
        created_day = rng.integers(-cfg.warmup_days, cfg.days, size=n)
        created_day.sort()
        start_us = _day_us(cfg)
        created_us = start_us + created_day * 86_400_000_000 + _diurnal_seconds(rng, n) * 1_000_000

        leaf_p = self.topic_pop / self.topic_pop.sum()
        main_leaf = geo.leaves[rng.choice(len(geo.leaves), size=n, p=leaf_p)]
        topics = np.full((n, 3), -1, dtype=np.int64)
        topics[:, 0] = main_leaf
        broad = (rng.random(n) < cfg.broad_doc_share) & (geo.level[main_leaf] >= 3)
        topics[broad, 0] = geo.ancestor[main_leaf[broad], 1]
        n_topics = rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1])
        for slot in (1, 2):
            need = np.nonzero(n_topics > slot)[0]
            # related topic: a sibling leaf (50%), a leaf of the same tier-1 (30%) or anywhere (20%)
            kind = rng.choice(3, size=len(need), p=[0.5, 0.3, 0.2])
            anchor = np.where(kind == 0, geo.ancestor[main_leaf[need], 1], geo.ancestor[main_leaf[need], 0])
            anchor = np.where(anchor < 0, geo.ancestor[main_leaf[need], 0], anchor)
            other = geo.subtree.sample(rng, anchor, np.ones(len(geo.taxonomy)))
            anywhere = geo.leaves[rng.integers(len(geo.leaves), size=len(need))]
            other = np.where(kind == 2, anywhere, other)
            fresh = np.all(topics[need, :slot] != other[:, None], axis=1)
            topics[need[fresh], slot] = other[fresh]

        entity = np.full((n, 2), -1, dtype=np.int64)
        specific = ~broad
        entity[specific, 0] = self.entity_of(main_leaf[specific], rng.random(specific.sum()))
        second = specific & (rng.random(n) < 0.4)
        entity[second, 1] = self.entity_of(main_leaf[second], rng.random(second.sum()))
        entity[second & (entity[:, 1] == entity[:, 0]), 1] = -1
        t1 = topics[:, 1]
        side = (t1 >= 0) & (entity[:, 1] < 0) & (rng.random(n) < 0.5) & (self.leaf_entity_start[np.maximum(t1, 0)] >= 0)
        entity[side, 1] = self.entity_of(t1[side], rng.random(side.sum()))

        aspect_draw = rng.integers(0, 1 << 30, size=n)
        aspect = np.array([aspect_draw[i] % len(self.aspects[t]) for i, t in enumerate(topics[:, 0])], dtype=np.int64)
        quality = rng.beta(5, 2, size=n)
        popularity = self._zipf(n)
        partner = np.where(rng.random(n) < cfg.partner_share, rng.integers(cfg.partners, size=n), -1)
        source = np.where(partner >= 0, "brand", SOURCES[rng.choice(3, size=n, p=SOURCE_P)])
        doc_id = np.array([f"{self.prefix}-d{i:07d}" for i in range(n)], dtype=object)
        titles, bodies = [], []
        for i in range(n):
            t0 = int(topics[i, 0])
            asp_list = self.aspects[t0]
            a = asp_list[aspect[i]]
            a2 = asp_list[(aspect_draw[i] // 7) % len(asp_list)]
            ents = [str(self.entity_names[e]) for e in entity[i] if e >= 0]
            words = [self.topic_words[t] + self.topic_words[int(geo.ancestor[t, 0])] for t in topics[i] if t >= 0]
            titles.append(text.title(rng, ents[0] if ents else None, a, self.geo.taxonomy.nodes[t0].name.lower()))
            bodies.append(text.body(rng, ents, [a, a2], words, sentences=int(rng.integers(2, 5))))
        return Documents(doc_id, created_day, created_us, topics, entity, aspect, quality, popularity, partner, source, titles, bodies)

    # users --------------------------------------------------------------------------------
    def _users(self) -> Users:
        cfg, rng = self.cfg, self.rng
        n = cfg.users
        light = rng.random(n) < cfg.light_share
        uses_search = rng.random(n) < np.where(light, cfg.light_search_share, cfg.heavy_search_share)
        uses_main = rng.random(n) < np.where(light, cfg.light_main_share, cfg.heavy_main_share)
        spread = rng.lognormal(0.0, 0.4, size=(3, n))
        feed_rate = np.where(light, cfg.light_feed_sessions_per_day, cfg.heavy_feed_sessions_per_day) * spread[0]
        search_rate = uses_search * cfg.search_sessions_per_day * spread[1]
        main_rate = uses_main * cfg.main_sessions_per_day * spread[2]
        k = cfg.max_interests
        interests = np.full((n, k), -1, dtype=np.int64)
        weights = np.zeros((n, k))
        count = np.minimum(1 + rng.poisson(1.5, size=n), k)
        for slot in range(k):
            rows = np.nonzero(count > slot)[0]
            interests[rows, slot] = self.new_interest(len(rows))
            weights[rows, slot] = rng.gamma(1.0, size=len(rows))
        weights /= weights.max(axis=1, keepdims=True)
        user_id = np.array([f"{self.prefix}-u{i:06d}" for i in range(n)], dtype=object)
        return Users(user_id, light, uses_search, uses_main, feed_rate, search_rate, main_rate, interests, weights)

    def new_interest(self, count: int, near: np.ndarray | None = None) -> np.ndarray:
        """Interest nodes: mostly leaves (70%), some broad tier-2 (25%) or tier-1 (5%) interests.

        Popular topics are chosen more often; with ``near``, half the new interests are a sibling of it.
        """
        rng, geo = self.rng, self.geo
        leaf_p = self.topic_pop / self.topic_pop.sum()
        leaf = geo.leaves[rng.choice(len(geo.leaves), size=count, p=leaf_p)]
        if near is not None:
            parent = geo.ancestor[near, np.maximum(geo.level[near] - 2, 0)]
            sibling = geo.subtree.sample(rng, parent, np.ones(len(geo.taxonomy)))
            use = (rng.random(count) < 0.5) & (sibling >= 0)
            leaf = np.where(use, sibling, leaf)
        level = rng.choice([0, 1, 2], size=count, p=[0.70, 0.25, 0.05])
        up = np.where(level == 1, geo.ancestor[leaf, 1], np.where(level == 2, geo.ancestor[leaf, 0], leaf))
        return np.where(up >= 0, up, leaf)


def _day_us(cfg: SimulatorSettings) -> int:
    import datetime as dt

    start = dt.datetime.combine(cfg.start, dt.time(), tzinfo=dt.UTC)
    return int(start.timestamp()) * 1_000_000


HOURLY = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.2, 3, 2.6, 2.2, 2.3, 2.8, 2.5, 2.2, 2.1, 2.2, 2.4, 2.8, 3.2, 3.5, 3.3, 2.6, 1.7])
HOURLY_P = HOURLY / HOURLY.sum()


def _diurnal_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds into a day, following a daily activity curve (quiet nights, evening peak)."""
    hours = rng.choice(24, size=n, p=HOURLY_P)
    return hours * 3600 + rng.integers(0, 3600, size=n)
