"""Quality mode: the LM's answers re-ranked together with a second expert.

The candidate beam search returns the LM's ``beams`` best paths (5 by default). Each is scored by
``log p_LM(path) + weight * log p_expert(path)``, and the ``k`` best are returned. The expert is
all-MiniLM-L6-v2 sentence embeddings + logistic regression. ``topicfeed classify train`` fits it on the
same documents and saves it beside the LM, in ``expert/``. Every answer is still one of the LM's
constrained beams, so it is still a valid node. Scores are renormalised over the candidates.

The two models make different errors: the LM reads the words, the expert a sentence embedding
trained on a billion sentence pairs. Before the topic head, 5-fold cross-validation on the MIND sample
picked ``weight`` 1.5 and gained about 0.02-0.03 of recall@3 at both levels. On top of the topic head
(the default since), the nested choice was ``weight`` 1 in every fold and the mode gained nothing
beyond noise (``benchmarks/cv_classifier.py``; figures in ``docs/classifier.md``). The price is one more
encoder pass per document and a wider beam, so this mode is off by default:
``TOPICFEED_CLASSIFIER__QUALITY_MODE=true`` turns it on, at ``..__RESCORE_WEIGHT`` (default 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from classifier.baselines import EmbeddingTopicClassifier
from classifier.data import Doc
from classifier.model import TopicClassifier
from classifier.scores import FLOOR, TopicScore, rescore  # noqa: F401  (rescore and FLOOR: re-exported)
from topicfeed.taxonomy import Taxonomy

EXPERT_DIR = "expert"


class RescoredClassifier:
    """A ``TopicClassifier`` whose ``beams`` best answers are re-ranked with an ``EmbeddingTopicClassifier``."""

    def __init__(self, lm: TopicClassifier, expert: EmbeddingTopicClassifier, *, weight: float | None = None, beams: int | None = None) -> None:
        """``weight`` and ``beams``: default the LM's ``params`` (``rescore_weight``, ``rescore_beams``)."""
        weight = lm.params.rescore_weight if weight is None else weight
        beams = lm.params.rescore_beams if beams is None else beams
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
    def with_saved_expert(cls, lm: TopicClassifier, directory: str | Path, *, weight: float | None = None, beams: int | None = None) -> RescoredClassifier:
        """``lm`` (loaded from ``directory``, perhaps moved or quantized since) with the expert saved beside it."""
        expert_dir = Path(directory) / EXPERT_DIR
        if not expert_dir.is_dir():
            raise FileNotFoundError(f"{directory} has no {EXPERT_DIR}/ (the quality mode's expert), which `topicfeed classify train` writes: train the model again")
        return cls(lm, EmbeddingTopicClassifier.load(expert_dir, lm.taxonomy), weight=weight, beams=beams)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, weight: float | None = None, beams: int | None = None) -> RescoredClassifier:
        return cls.with_saved_expert(TopicClassifier.from_pretrained(directory), directory, weight=weight, beams=beams)

    def predict(self, docs: Sequence[Doc | str], *, k: int = 3, batch_size: int = 32, progress: bool = False) -> list[list[TopicScore]]:
        candidates = self.lm.predict(docs, k=max(k, self.beams), batch_size=batch_size, progress=progress)
        return [rescore(c, e, self.weight, k) for c, e in zip(candidates, self.expert.path_proba(docs))]
