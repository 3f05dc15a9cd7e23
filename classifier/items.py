"""The classifier's output for the feature store: item topics (path, level, score) per document, every
ancestor of an answer included, and a per-item topic embedding (``featurestore/items.py``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from classifier.data import Doc, level_path
from classifier.model import TopicClassifier, TopicScore
from classifier.rescore import RescoredClassifier
from featurestore.items import write_item_topics
from topicfeed.lake import Lake
from topicfeed.settings import Settings
from topicfeed.taxonomy import Taxonomy


def topics_long(doc_ids: Sequence[str], preds: Sequence[Sequence[TopicScore | None]], levels: int) -> pa.Table:
    """Long rows ``item_id, topic, level, score``: each answer and its ancestors up to ``levels``; an
    ancestor's score is the sum of its answers' scores (capped at 1)."""
    items, topics, lvls, scores = [], [], [], []
    for doc_id, answers in zip(doc_ids, preds):
        total: dict[tuple[str, int], float] = defaultdict(float)
        for a in answers:
            if a is None:
                continue
            for level in range(1, min(a.level, levels) + 1):
                total[(level_path(a.path, level), level)] += a.score
        for (topic, level), s in total.items():
            items.append(doc_id)
            topics.append(topic)
            lvls.append(level)
            scores.append(min(1.0, s))
    return pa.table(
        {"item_id": pa.array(items, pa.string()), "topic": pa.array(topics, pa.string()), "level": pa.array(lvls, pa.int32()), "score": pa.array(scores, pa.float32())}
    )


def classify_lake_documents(settings: Settings, clf: TopicClassifier | RescoredClassifier, *, progress: bool = False) -> tuple[Path, int]:
    """Classify every document in the lake and write the offline ``item_topics`` table from the answers."""
    configured = Taxonomy.load(settings.taxonomy_path)
    if clf.taxonomy.paths() != configured.paths():
        raise ValueError(f"the classifier was trained on another taxonomy than {settings.taxonomy_path}; item topics must use the configured one")
    table = Lake(settings.lake_dir).read("documents", columns=["doc_id", "title", "body"])
    docs = [Doc(r["doc_id"], r["title"], r["body"] or "") for r in table.to_pylist()]
    cs = settings.classifier
    preds = clf.predict(docs, k=cs.num_beams, batch_size=cs.predict_batch_size, progress=progress)
    long = topics_long([d.doc_id for d in docs], preds, settings.preferences.levels)
    return write_item_topics(settings, long, configured), len(docs)
