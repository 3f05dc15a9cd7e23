"""`topicfeed classify train|predict|eval|items` end to end through the real console script, on a tiny
model saved on disk (the same code path as the default MiniLM recipe, in seconds)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_cli import tf

from topicfeed.settings import DEFAULT_TAXONOMY
from topicfeed.taxonomy import Taxonomy

from tiny_models import save_tiny


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("bert", tmp_path_factory.mktemp("tiny") / "bert")


def test_train_predict_eval_on_mind(tmp_path: Path, shared_data: Path, tiny_bert: Path) -> None:
    env = {
        "TOPICFEED_DATA_DIR": str(tmp_path / "data"),
        "TOPICFEED_CLASSIFIER__BASE_MODEL": str(tiny_bert),
        "TOPICFEED_CLASSIFIER__EPOCHS": "2",
        "TOPICFEED_CLASSIFIER__MAX_PROMPT_TOKENS": "32",
    }
    lines = (shared_data / "mind" / "news_train.tsv").read_text(encoding="utf-8").splitlines()
    data = tmp_path / "news.tsv"
    data.write_text("\n".join(lines[:150] + ["N0\tnews\tno_such_subcategory\tTitle\tAbstract\t\t[]\t[]"]) + "\n", encoding="utf-8")
    taxonomy = shared_data / "mind" / "taxonomy.tsv"
    model = tmp_path / "model"

    train = tf("classify", "train", "--taxonomy", str(taxonomy), "--data", str(data), "--out", str(model), env=env)
    assert "150 documents, 1 quarantined" in train.stdout
    assert "field 'topics.0'" in train.stdout and "record 151" in train.stdout
    assert (model / "topicfeed_classifier.json").is_file() and (model / "split.json").is_file()
    assert {"logreg.npz", "expert.json"} <= {p.name for p in (model / "expert").iterdir()}
    assert json.loads((model / "expert" / "expert.json").read_text())["max_tokens"] == 32  # the expert reads what the LM reads
    assert (model / "topic_head.safetensors").is_file()  # the default recipe trains a topic head with the LM

    preds = tmp_path / "preds.jsonl"
    tf("classify", "predict", "--model", str(model), "--input", str(data), "--output", str(preds), "--k", "3", env=env)
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 151  # unknown topics do not matter for prediction
    spelled = set(Taxonomy.load(taxonomy).paths())
    for row in rows:
        assert set(row) == {"doc_id", "topics"} and len(row["topics"]) == 3
        assert all(t["path"] in spelled for t in row["topics"])
        scores = [t["score"] for t in row["topics"]]
        assert scores == sorted(scores, reverse=True)

    # quality mode: the LM's 5 best re-ranked by the saved expert; still 3 distinct taxonomy paths, best first
    rescored = tmp_path / "rescored.jsonl"
    quality_env = env | {"TOPICFEED_CLASSIFIER__QUALITY_MODE": "true", "TOPICFEED_CLASSIFIER__RESCORE_WEIGHT": "1.5", "TOPICFEED_CLASSIFIER__RESCORE_BEAMS": "5"}
    tf("classify", "predict", "--model", str(model), "--input", str(data), "--output", str(rescored), env=quality_env)
    quality_rows = [json.loads(line) for line in rescored.read_text().splitlines()]
    assert [r["doc_id"] for r in quality_rows] == [r["doc_id"] for r in rows]
    for row in quality_rows:
        paths = [t["path"] for t in row["topics"]]
        assert len(paths) == len(set(paths)) == 3 and all(p in spelled for p in paths)
        scores = [t["score"] for t in row["topics"]]
        assert scores == sorted(scores, reverse=True) and sum(scores) <= 1 + 1e-5
    assert quality_rows != rows  # the expert's probabilities change the scores (and often the order)

    out = tmp_path / "eval.json"
    ev = tf("classify", "eval", "--model", str(model), "--data", str(data), "--json", str(out), env=env).stdout
    for name in ("LM + candidate beam search", "re-ranked by its topic head", "LM, same beam search unconstrained", "tfidf+logreg", "minilm+logreg", "quality mode"):
        assert name in ev
    assert "L1 top-1" in ev and "L2 R@3" in ev and "L3 top-1" in ev and "docs/s" in ev
    results = {r["name"]: r for r in json.loads(out.read_text())}
    split = json.loads((model / "split.json").read_text())
    lm = results["LM + candidate beam search"]
    assert lm["docs"] == len(split["dev_ids"]) and lm["valid_share"] == 1.0 and lm["l3_n"] == 0
    assert 0 <= lm["l1_top1"] <= lm["l1_recall@3"] <= 1


def test_items_from_lake_documents(tmp_path: Path, tiny_bert: Path) -> None:
    env = {
        "TOPICFEED_DATA_DIR": str(tmp_path / "data"),
        "TOPICFEED_CLASSIFIER__BASE_MODEL": str(tiny_bert),
        "TOPICFEED_CLASSIFIER__EPOCHS": "1",
        "TOPICFEED_CLASSIFIER__MAX_PROMPT_TOKENS": "24",
    }
    sim = tmp_path / "sim"
    tf("simulate", "--users", "50", "--days", "1", "--seed", "3", "--out", str(sim), "--format", "jsonl", env=env)
    tf("ingest", "documents", str(sim / "documents.jsonl"), env=env)
    tf("classify", "train", "--taxonomy", str(DEFAULT_TAXONOMY), "--data", str(sim / "documents.jsonl"), env=env)
    out = tf("classify", "items", env=env).stdout
    n_docs = sum(1 for _ in (sim / "documents.jsonl").open())
    assert f"classified {n_docs} documents" in out
    table = pq.read_table(tmp_path / "data" / "features" / "item_topics" / "item_topics.parquet")
    assert table.num_rows == n_docs
    taxonomy = Taxonomy.load(DEFAULT_TAXONOMY)
    for row in table.to_pylist()[:50]:
        assert all(t in taxonomy for t in row["topics"])
        assert 1 in row["topic_levels"] and abs(sum(x * x for x in row["topic_embedding"]) - 1) < 1e-4
    # incremental, as the content_topics DAG runs it: answers kept per model version, only new or
    # changed documents classified again, the same table written
    from classifier.items import classify_lake_documents, model_fingerprint
    from classifier.jobs import load_classifier
    from topicfeed.lake import Lake
    from topicfeed.schemas import DOCUMENT_SCHEMA
    from topicfeed.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", classifier={"base_model": str(tiny_bert), "max_prompt_tokens": 24})
    clf = load_classifier(settings, settings.classifier_dir)
    model_id = model_fingerprint(settings.classifier_dir)
    path, n, fresh = classify_lake_documents(settings, clf, model_id=model_id)
    assert (n, fresh) == (n_docs, n_docs)
    before = path.read_bytes()
    assert classify_lake_documents(settings, clf, model_id=model_id)[1:] == (n_docs, 0)
    assert path.read_bytes() == before
    lake = Lake(settings.lake_dir)
    docs = lake.read("documents", columns=DOCUMENT_SCHEMA.names)
    changed = docs.slice(0, 1).set_column(docs.schema.get_field_index("title"), "title", pa.array(["A brand new title about soccer"]))
    later = pa.array([docs.column("created_at")[0].as_py() + timedelta(hours=1)], docs.schema.field("created_at").type)
    lake.append("documents", changed.set_column(docs.schema.get_field_index("created_at"), "created_at", later))
    assert classify_lake_documents(settings, clf, model_id=model_id)[1:] == (n_docs, 1)  # the changed one only
    assert classify_lake_documents(settings, clf, model_id="another-model")[1:] == (n_docs, n_docs)

