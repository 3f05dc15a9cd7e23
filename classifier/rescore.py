"""Quality mode: the LM's answers re-ranked together with a second expert.

The candidate beam search returns the LM's ``beams`` best paths (5 by default). Each is scored by
``log p_LM(path) + weight * log p_expert(path)``, and the ``k`` best are returned. The expert is
all-MiniLM-L6-v2 sentence embeddings + logistic regression. ``topicfeed classify train`` fits it on the
same documents and saves it beside the LM, in ``expert/``. Every answer is still one of the LM's
constrained beams, so it is still a valid node. Scores are renormalised over the candidates.

The two models make different errors: the LM reads the words, the expert a sentence embedding
trained on a billion sentence pairs. On the MIND sample, 5-fold cross-validation picked ``weight``
1.5 (see ``benchmarks/cv_classifier.py``; the README has the figures): recall@3 gains about 0.02-0.03
at both levels, top-1 stays where it was. The price is one more encoder pass per document and a
wider beam, so this mode is off by default: ``TOPICFEED_CLASSIFIER__RESCORE_WEIGHT=1.5`` turns it on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from classifier.baselines import EmbeddingTopicClassifier
from classifier.data import Doc
from classifier.model import TopicClassifier, TopicScore
from topicfeed.taxonomy import Taxonomy

EXPERT_DIR = "expert"
DEFAULT_WEIGHT = 1.5
DEFAULT_BEAMS = 5
FLOOR = 1e-6  # the expert's probability for a path it never saw in training


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


class RescoredClassifier:
    """A ``TopicClassifier`` whose ``beams`` best answers are re-ranked with an ``EmbeddingTopicClassifier``."""

    def __init__(self, lm: TopicClassifier, expert: EmbeddingTopicClassifier, *, weight: float = DEFAULT_WEIGHT, beams: int = DEFAULT_BEAMS) -> None:
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.lm = lm
        self.expert = expert
        self.weight = weight
        self.beams = beams

    @property
    def taxonomy(self) -> Taxonomy:
        return self.lm.taxonomy

    @classmethod
    def with_saved_expert(cls, lm: TopicClassifier, directory: str | Path, *, weight: float = DEFAULT_WEIGHT, beams: int = DEFAULT_BEAMS) -> RescoredClassifier:
        """``lm`` (loaded from ``directory``, perhaps moved or quantized since) with the expert saved beside it."""
        expert_dir = Path(directory) / EXPERT_DIR
        if not expert_dir.is_dir():
            raise FileNotFoundError(f"{directory} has no {EXPERT_DIR}/ (the quality mode's expert), which `topicfeed classify train` writes: train the model again")
        return cls(lm, EmbeddingTopicClassifier.load(expert_dir, lm.taxonomy), weight=weight, beams=beams)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, weight: float = DEFAULT_WEIGHT, beams: int = DEFAULT_BEAMS) -> RescoredClassifier:
        return cls.with_saved_expert(TopicClassifier.from_pretrained(directory), directory, weight=weight, beams=beams)

    def predict(self, docs: Sequence[Doc | str], *, k: int = 3, batch_size: int = 32, progress: bool = False) -> list[list[TopicScore]]:
        candidates = self.lm.predict(docs, k=max(k, self.beams), batch_size=batch_size, progress=progress)
        return [rescore(c, e, self.weight, k) for c, e in zip(candidates, self.expert.path_proba(docs))]
