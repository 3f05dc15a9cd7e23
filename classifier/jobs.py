"""The classifier's jobs (train, predict, eval, ablation), called by ``topicfeed classify`` (and by the DAGs, when they come)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from classifier.baselines import EmbeddingTopicClassifier, TfidfTopicClassifier
from classifier.data import Doc, LoadReport, load_documents, split
from classifier.evaluate import EvalResult, evaluate
from classifier.model import TopicClassifier, train_recipe
from classifier.pipeline import Ablation, run_ablation
from classifier.rescore import EXPERT_DIR, RescoredClassifier
from topicfeed.settings import Settings
from topicfeed.taxonomy import Taxonomy

SPLIT_NAME = "split.json"


def set_threads(settings: Settings) -> None:
    if settings.classifier.threads:
        torch.set_num_threads(settings.classifier.threads)


def load_lm(settings: Settings, model_dir: Path) -> TopicClassifier:
    cs = settings.classifier
    clf = TopicClassifier.from_pretrained(model_dir, params=cs).to(cs.device)
    return clf.quantize() if cs.int8 else clf


def load_classifier(settings: Settings, model_dir: Path) -> TopicClassifier | RescoredClassifier:
    """The classifier as configured: the LM, or in quality mode the LM re-ranked by its expert."""
    cs = settings.classifier
    lm = load_lm(settings, model_dir)
    if not cs.quality_mode:
        return lm
    return RescoredClassifier.with_saved_expert(lm, model_dir, weight=cs.rescore_weight, beams=cs.rescore_beams)


def load(path: Path, taxonomy: Taxonomy | None, settings: Settings, *, require_topics: bool = True, log: Callable[[str], None] = print) -> LoadReport:
    report = load_documents(path, taxonomy, settings.quarantine_dir, require_topics=require_topics)
    log(f"read {report.read} records from {path}: {len(report.docs)} documents, {report.quarantined} quarantined" + (f" ({report.quarantine_path})" if report.quarantine_path else ""))
    for line in report.problems:
        log(f"  quarantined {line}")
    return report


@dataclass
class TrainResult:
    model_dir: Path
    train_docs: int
    dev_docs: int
    seconds: float


def train(
    settings: Settings, taxonomy_path: Path, data: Path, out: Path, *, dev_fraction: float | None = None, progress: bool = True, log: Callable[[str], None] = print
) -> TrainResult:
    """SFT the default recipe on the labelled documents of ``data`` minus a dev split, and save it with the split."""
    set_threads(settings)
    cs = settings.classifier
    if dev_fraction is not None:
        cs = cs.model_copy(update={"dev_fraction": dev_fraction})
    taxonomy = Taxonomy.load(taxonomy_path)
    docs = load(data, taxonomy, settings, log=log).docs
    train_docs, dev_docs = split(docs, cs.dev_fraction, cs.seed)
    log(f"training on {len(train_docs)} documents, {len(dev_docs)} held out for eval; base model {cs.base_model}")
    clf, seconds = train_recipe(cs, taxonomy, train_docs, progress=progress)
    clf.save_pretrained(out)
    start = time.perf_counter()
    EmbeddingTopicClassifier(taxonomy, max_tokens=cs.max_prompt_tokens).fit(train_docs).save(Path(out) / EXPERT_DIR)  # reads what the LM reads
    log(f"quality mode's expert (MiniLM + LR) fitted in {time.perf_counter() - start:.0f} s")
    meta = {"data": str(Path(data).resolve()), "dev_fraction": cs.dev_fraction, "seed": cs.seed, "dev_ids": sorted(d.doc_id for d in dev_docs)}
    (Path(out) / SPLIT_NAME).write_text(json.dumps(meta), encoding="utf-8")
    log(f"trained in {seconds:.0f} s; saved to {out}")
    return TrainResult(Path(out), len(train_docs), len(dev_docs), seconds)


def predict(settings: Settings, model_dir: Path, input_path: Path, output: Path, *, k: int | None = None, progress: bool = True, log: Callable[[str], None] = print) -> int:
    """One JSON object per document: ``{"doc_id", "topics": [{"path", "score"}, ...]}``, best first."""
    set_threads(settings)
    clf = load_classifier(settings, model_dir)
    docs = load(input_path, None, settings, require_topics=False, log=log).docs
    preds = clf.predict(docs, k=k or settings.classifier.num_beams, batch_size=settings.classifier.predict_batch_size, progress=progress)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as fh:
        for d, answers in zip(docs, preds):
            topics = [{"path": a.path, "score": round(a.score, 6)} for a in answers if a is not None]
            fh.write(json.dumps({"doc_id": d.doc_id, "topics": topics}) + "\n")
    return len(docs)


def eval_split(model_dir: Path, data: Path, docs: list[Doc], settings: Settings) -> tuple[list[Doc], list[Doc]]:
    """(train, test): the dev split recorded at training when ``data`` is the training file, else all of ``data``
    as test and the recorded training file minus its dev split as train (for the baselines)."""
    meta_path = Path(model_dir) / SPLIT_NAME
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if meta and Path(meta["data"]) == Path(data).resolve():
        dev_ids = set(meta["dev_ids"])
        if not dev_ids:
            raise ValueError(f"{model_dir} was trained on all of {data} (dev_fraction 0): evaluate it on other labelled documents")
        return [d for d in docs if d.doc_id not in dev_ids], [d for d in docs if d.doc_id in dev_ids]
    if meta and Path(meta["data"]).exists():
        taxonomy = Taxonomy.load(Path(model_dir) / "taxonomy.tsv")
        train_all = load_documents(meta["data"], taxonomy, settings.quarantine_dir).docs
        dev_ids = set(meta["dev_ids"])
        return [d for d in train_all if d.doc_id not in dev_ids], docs
    train_docs, dev_docs = split(docs, settings.classifier.dev_fraction, settings.classifier.seed)
    return train_docs, dev_docs


def eval_model(
    settings: Settings, model_dir: Path, data: Path, *, baselines: bool = True, unconstrained: bool = True, log: Callable[[str], None] = print
) -> list[EvalResult]:
    """The classifier (and the two baselines, trained on the same training documents) on held-out documents."""
    set_threads(settings)
    cs = settings.classifier
    clf = load_lm(settings, model_dir)
    docs = load(data, clf.taxonomy, settings, log=log).docs
    train_docs, test_docs = eval_split(model_dir, data, docs, settings)
    log(f"evaluating on {len(test_docs)} held-out documents (baselines trained on {len(train_docs)})")
    clf.predict(test_docs[: cs.predict_batch_size], k=cs.num_beams)  # warm-up, not timed
    results = []
    if clf.topic_head is not None and clf.head_weight > 0:
        label = f"LM + candidate beam search, beam {max(cs.num_beams, clf.head_beams)} re-ranked by its topic head (w {clf.head_weight:g})"
        results.append(evaluate(label, clf, test_docs, clf.taxonomy, k=cs.num_beams, batch_size=cs.predict_batch_size))
    results.append(evaluate("LM + candidate beam search", clf, test_docs, clf.taxonomy, k=cs.num_beams, batch_size=cs.predict_batch_size, head_weight=0.0))
    if unconstrained:
        results.append(evaluate("LM, same beam search unconstrained", clf, test_docs, clf.taxonomy, k=cs.num_beams, batch_size=cs.predict_batch_size, constrained=False))
    if (Path(model_dir) / EXPERT_DIR).is_dir():
        weight = cs.rescore_weight
        quality = RescoredClassifier.with_saved_expert(clf, model_dir, weight=weight, beams=cs.rescore_beams)
        label = f"quality mode: LM beam {cs.rescore_beams} re-ranked by MiniLM + LR (w {weight:g})"
        results.append(evaluate(label, quality, test_docs, clf.taxonomy, k=cs.num_beams, batch_size=cs.predict_batch_size))
    if baselines:
        for base in (TfidfTopicClassifier(clf.taxonomy), EmbeddingTopicClassifier(clf.taxonomy)):
            base.fit(train_docs)
            results.append(evaluate(base.name, base, test_docs, clf.taxonomy, k=cs.num_beams))
    return results


def ablation(settings: Settings, taxonomy_path: Path, data: Path, *, gold_fraction: float = 0.5, progress: bool = True, log: Callable[[str], None] = print) -> Ablation:
    """The data pipeline's ablation: the training split is cut into a gold set and an unlabelled pool."""
    set_threads(settings)
    cs = settings.classifier
    taxonomy = Taxonomy.load(taxonomy_path)
    docs = load(data, taxonomy, settings, log=log).docs
    train_docs, dev_docs = split(docs, cs.dev_fraction, cs.seed)
    gold, pool = split(train_docs, 1 - gold_fraction, cs.seed + 1)
    log(f"gold {len(gold)}, unlabelled pool {len(pool)}, dev {len(dev_docs)}")
    return run_ablation(taxonomy, gold, pool, dev_docs, cs, progress=progress, log=log)
