"""A topic answer and the re-ranking of a model's answers by an expert's probabilities: shared by the
classifier (``classifier.model``) and its re-scored variant (``classifier.rescore``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FLOOR = 1e-6  # the expert's probability for a path it never saw in training


@dataclass(frozen=True)
class TopicScore:
    path: str
    level: int
    score: float  # probability of the whole path under the model, 0..1


def rescore(candidates: Sequence[TopicScore | None], expert: Mapping[str, float], weight: float, k: int) -> list[TopicScore]:
    """The ``k`` best candidates by ``log p_LM + weight * log p_expert``; scores renormalised over the candidates."""
    valid = [c for c in candidates if c is not None]
    if not valid:
        return []
    logits = [math.log(max(c.score, 1e-12)) + weight * math.log(max(expert.get(c.path, 0.0), FLOOR)) for c in valid]
    top = max(logits)
    total = sum(math.exp(x - top) for x in logits)
    ranked = sorted(zip(valid, logits), key=lambda t: -t[1])[:k]
    return [TopicScore(c.path, c.level, math.exp(x - top) / total) for c, x in ranked]
