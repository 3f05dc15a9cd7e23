"""The two baselines the classifier is measured against, on the same split:

- ``TfidfTopicClassifier``: TF-IDF word and bigram features + logistic regression (the "old classifier");
- ``EmbeddingTopicClassifier``: all-MiniLM-L6-v2 sentence embeddings + logistic regression.

Both predict the main topic's full path as one class and, like the LM, return ranked paths with scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from classifier.data import Doc
from classifier.model import TopicScore, minilm_path
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

    def predict(self, docs: Sequence[Doc | str], *, k: int = 3) -> list[list[TopicScore]]:
        x = self._features([d if isinstance(d, str) else d.text for d in docs], fit=False)
        proba = self.clf.predict_proba(x)
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

    def __init__(self, taxonomy: Taxonomy, C: float = 10.0, model_path: str | Path | None = None, batch_size: int = 64) -> None:
        super().__init__(taxonomy, C=C)
        self.model_path = Path(model_path) if model_path else minilm_path()
        self.batch_size = batch_size
        self._encoder = None

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._encoder is None:
            from sentence_transformers import SentenceTransformer

            self._encoder = SentenceTransformer(str(self.model_path), device="cpu")
        return self._encoder.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)

    def _features(self, texts: list[str], fit: bool) -> np.ndarray:
        return self.encode(texts)
