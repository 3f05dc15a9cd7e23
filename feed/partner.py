"""A partner's share of the feed at the least loss of relevance.

The rule: "at least ``share`` of the top ``n`` slots go to items of partner P". A managed recommender
places promoted items at random slots; here the page is chosen to lose the least expected relevance.

For a DCG-type objective ``sum_i rel(item_i) * g(i)`` with position weights ``g`` that are positive and
non-increasing, and a quota of ``q`` partner items among the ``n`` slots, the optimum is:

1. keep the ``q`` most relevant partner items (all of them if the partner has fewer);
2. fill the other ``n - q`` slots with the most relevant of all the remaining items, partner or not;
3. order the chosen ``n`` by relevance.

Why (``docs/feed.md`` has the proof in full): for a fixed set of items, ordering by relevance maximises
the sum (rearrangement inequality, since ``g`` is non-increasing); and the sorted sum never decreases
when one item of the set is swapped for a more relevant one. A feasible set that misses one of the
``q`` best partner items can swap one of its partner items (it has at least ``q``) for it; a set that
then misses one of the best remaining items can swap one of its other free picks for it. Neither swap
breaks the quota, and neither lowers the objective, so the set built above is optimal. When the
unconstrained top ``n`` already holds ``q`` partner items, it is that set, and nothing is lost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def quota(n: int, share: float) -> int:
    """Partner slots the rule asks for among ``n``: ``ceil(share * n)``."""
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share}")
    return math.ceil(share * n - 1e-9)


def place(relevance: Sequence[float] | np.ndarray, is_partner: Sequence[bool] | np.ndarray, n: int, share: float) -> np.ndarray:
    """Indices of the ``n`` items to show, best first, with at least ``quota(n, share)`` partner items
    (or every partner item, when it has fewer), losing the least DCG (module docstring)."""
    rel = np.asarray(relevance, dtype=np.float64)
    partner = np.asarray(is_partner, dtype=bool)
    if rel.shape != partner.shape:
        raise ValueError("relevance and is_partner must have the same length")
    n = min(n, len(rel))
    order = np.argsort(-rel, kind="stable")
    q = min(quota(n, share), int(partner.sum()))
    keep = np.zeros(len(rel), dtype=bool)
    keep[order[partner[order]][:q]] = True
    rest = order[~keep[order]][: n - q]
    keep[rest] = True
    chosen = order[keep[order]]
    return chosen


def dcg(relevance: Sequence[float] | np.ndarray, ranked: Sequence[int] | np.ndarray) -> float:
    """``sum rel / log2(position + 1)`` over a ranked list of indices."""
    rel = np.asarray(relevance, dtype=np.float64)[np.asarray(ranked, dtype=np.int64)]
    return float((rel / np.log2(np.arange(2, len(rel) + 2))).sum())


def random_placement(relevance: Sequence[float] | np.ndarray, is_partner: Sequence[bool] | np.ndarray, n: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """What a managed service does: the unconstrained top list, with the quota's partner items (drawn at
    random among the partner's) put into random slots in place of the lowest non-partner items."""
    rel = np.asarray(relevance, dtype=np.float64)
    partner = np.asarray(is_partner, dtype=bool)
    n = min(n, len(rel))
    order = list(np.argsort(-rel, kind="stable")[:n])
    q = min(quota(n, share), int(partner.sum()))
    missing = q - int(partner[order].sum())
    if missing <= 0:
        return np.asarray(order)
    outside = [i for i in np.flatnonzero(partner) if i not in set(order)]
    promoted = list(rng.choice(outside, size=missing, replace=False))
    free = [i for i in order if not partner[i]]
    for victim in free[len(free) - missing :]:
        order.remove(victim)
    for item in promoted:
        order.insert(int(rng.integers(0, len(order) + 1)), item)
    return np.asarray(order)
