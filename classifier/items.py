"""The classifier's output for the feature store: item topics (path, level, score) per document, every
ancestor of an answer included, and a per-item topic embedding (``featurestore/items.py``)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from classifier.data import Doc, level_path
from classifier.model import TopicClassifier, TopicScore
from classifier.rescore import RescoredClassifier
from featurestore.items import write_item_topics
from topicfeed.lake import Lake, write_parquet_atomic
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


def model_fingerprint(model_dir: Path) -> str:
    """A short id of a saved model: its files' names, sizes and modification times."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(model_dir)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


PREDICTION_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("text_hash", pa.string()), ("paths", pa.list_(pa.string())), ("levels", pa.list_(pa.int32())), ("scores", pa.list_(pa.float32()))]
)


def _text_hash(doc: Doc) -> str:
    return hashlib.blake2b(f"{doc.title}\x00{doc.body}".encode(), digest_size=12).hexdigest()


def classify_lake_documents(
    settings: Settings, clf: TopicClassifier | RescoredClassifier, *, progress: bool = False, model_id: str | None = None
) -> tuple[Path, int, int]:
    """Classify the lake's documents and write the offline ``item_topics`` table from the answers;
    returns (path, documents, documents classified now).

    With ``model_id`` (``model_fingerprint`` of the model's folder), answers are kept per model in
    ``<data_dir>/models/predictions/<model_id>.parquet`` and only new or changed documents (by a hash
    of title and body) are classified: an hourly run costs what arrived that hour, a rerun nothing.
    """
    configured = Taxonomy.load(settings.taxonomy_path)
    if clf.taxonomy.paths() != configured.paths():
        raise ValueError(f"the classifier was trained on another taxonomy than {settings.taxonomy_path}; item topics must use the configured one")
    table = Lake(settings.lake_dir).read("documents", columns=["doc_id", "title", "body", "created_at"])
    latest: dict[str, Doc] = {}  # a document stored more than once: its newest version (by created_at, then text)
    for r in sorted(table.to_pylist(), key=lambda r: (r["doc_id"], r["created_at"], r["title"], r["body"] or "")):
        latest[r["doc_id"]] = Doc(r["doc_id"], r["title"], r["body"] or "")
    docs = [latest[k] for k in sorted(latest)]
    hashes = {d.doc_id: _text_hash(d) for d in docs}
    known: dict[str, tuple[str, list[str], list[int], list[float]]] = {}
    cache = settings.data_dir / "models" / "predictions" / f"{model_id}.parquet" if model_id else None
    if cache is not None and cache.is_file():
        for r in pq.read_table(cache).to_pylist():
            known[r["doc_id"]] = (r["text_hash"], r["paths"], r["levels"], r["scores"])
    todo = [d for d in docs if d.doc_id not in known or known[d.doc_id][0] != hashes[d.doc_id]]
    cs = settings.classifier
    if todo:
        fresh = clf.predict(todo, k=cs.num_beams, batch_size=cs.predict_batch_size, progress=progress)
        for d, answers in zip(todo, fresh):
            kept = [a for a in answers if a is not None]
            known[d.doc_id] = (hashes[d.doc_id], [a.path for a in kept], [int(a.level) for a in kept], [float(a.score) for a in kept])
    if cache is not None and (todo or not cache.is_file()):
        rows = [{"doc_id": d.doc_id, "text_hash": hashes[d.doc_id], "paths": known[d.doc_id][1], "levels": known[d.doc_id][2], "scores": known[d.doc_id][3]} for d in docs]
        write_parquet_atomic(pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA), cache)
    preds = [[TopicScore(p, lv, s) for p, lv, s in zip(*known[d.doc_id][1:])] for d in docs]
    long = topics_long([d.doc_id for d in docs], preds, settings.preferences.levels)
    return write_item_topics(settings, long, configured), len(docs), len(todo)
