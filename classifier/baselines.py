"""The two baselines the classifier is measured against, on the same split:

- ``TfidfTopicClassifier``: TF-IDF word and bigram features + logistic regression (the "old classifier");
- ``EmbeddingTopicClassifier``: all-MiniLM-L6-v2 sentence embeddings + logistic regression.

Both predict the main topic's full path as one class and, like the LM, return ranked paths with scores.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from classifier.data import Doc
from classifier.lm import minilm_path
from classifier.model import TopicScore
from topicfeed.taxonomy import Taxonomy


class _LogRegTopics:
    name = "logreg"

    def __init__(self, taxonomy: Taxonomy, C: float = 10.0, max_iter: int = 2000) -> None:
        self.taxonomy = taxonomy
        self.clf = LogisticRegression(C=C, max_iter=max_iter)

    def _features(self, texts: list[str], fit: bool) -> np.ndarray:
        raise NotImplementedError

    def fit(self, docs: Sequence[Doc]) -> _LogRegTopics:
        x = self._features([d.text for d in docs], fit=True)
        self.clf.fit(x, [d.topic for d in docs])
        return self

    def proba(self, docs: Sequence[Doc | str]) -> np.ndarray:
        """P(main topic | document), (documents, ``clf.classes_``)."""
        return self.clf.predict_proba(self._features([d if isinstance(d, str) else d.text for d in docs], fit=False))

    def path_proba(self, docs: Sequence[Doc | str]) -> list[dict[str, float]]:
        """P(main topic = path | document) for every path seen in training."""
        proba = self.proba(docs)
        classes = [str(c) for c in self.clf.classes_]
        return [dict(zip(classes, row.tolist())) for row in proba]

    def predict(self, docs: Sequence[Doc | str], *, k: int = 3) -> list[list[TopicScore]]:
        proba = self.proba(docs)
        order = np.argsort(-proba, axis=1)[:, :k]
        classes = self.clf.classes_
        return [[TopicScore(classes[j], self.taxonomy.node(classes[j]).level, float(p[j])) for j in row] for row, p in zip(order, proba)]


class TfidfTopicClassifier(_LogRegTopics):
    name = "tfidf+logreg"

    def __init__(self, taxonomy: Taxonomy, C: float = 10.0) -> None:
        super().__init__(taxonomy, C=C)
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, strip_accents="unicode")

    def _features(self, texts: list[str], fit: bool) -> np.ndarray:
        return self.vectorizer.fit_transform(texts) if fit else self.vectorizer.transform(texts)


class EmbeddingTopicClassifier(_LogRegTopics):
    name = "minilm+logreg"

    def __init__(
        self, taxonomy: Taxonomy, C: float = 10.0, model_path: str | Path | None = None, batch_size: int = 64, max_tokens: int | None = None
    ) -> None:
        """``max_tokens``: document tokens the encoder reads (default: the encoder's own limit, 256 for MiniLM)."""
        super().__init__(taxonomy, C=C)
        self.model_path = Path(model_path) if model_path else minilm_path()
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._encoder = None

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._encoder is None:
            from sentence_transformers import SentenceTransformer

            self._encoder = SentenceTransformer(str(self.model_path), device="cpu")
            if self.max_tokens:
                self._encoder.max_seq_length = self.max_tokens
        return self._encoder.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)

    def _features(self, texts: list[str], fit: bool) -> np.ndarray:
        return self.encode(texts)

    def save(self, directory: str | Path) -> Path:
        """The logistic regression as plain arrays (``logreg.npz``) and the encoder's location (``expert.json``)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "logreg.npz", coef=self.clf.coef_, intercept=self.clf.intercept_, classes=np.array([str(c) for c in self.clf.classes_]))
        encoder = "minilm" if self.model_path == minilm_path() else str(self.model_path)
        (directory / "expert.json").write_text(json.dumps({"kind": self.name, "encoder": encoder, "C": self.clf.C, "max_tokens": self.max_tokens}), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path, taxonomy: Taxonomy) -> EmbeddingTopicClassifier:
        directory = Path(directory)
        meta = json.loads((directory / "expert.json").read_text(encoding="utf-8"))
        if meta.get("kind") != cls.name:
            raise ValueError(f"{directory}: expert.json describes {meta.get('kind')!r}, not {cls.name!r}")
        arrays = np.load(directory / "logreg.npz")
        model = cls(taxonomy, C=meta["C"], model_path=None if meta["encoder"] == "minilm" else meta["encoder"], max_tokens=meta.get("max_tokens"))
        unknown = [c for c in arrays["classes"].tolist() if c not in taxonomy]
        if unknown:
            raise ValueError(f"{directory}: the expert predicts {unknown[:3]}, which are not paths of the taxonomy {taxonomy.name!r}")
        model.clf.coef_, model.clf.intercept_, model.clf.classes_ = arrays["coef"], arrays["intercept"], arrays["classes"]
        return model
