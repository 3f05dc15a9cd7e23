"""Distillation ablation, cross-validated: a local LLM teacher (Gemma 3 270M base by default) and the
fast student (the default recipe, MiniLM), on the seeded 5-fold split of ``cv_classifier.py``.

In each fold the training folds are cut in two, stratified by topic: a **gold** half (labels kept) and
an **unlabelled pool** (the other half, labels hidden; they are read only to report how many teacher
labels are right). The pool is real MIND news text: no other real unlabelled news text is on this
machine (the MIND behaviours' news ids have no text in the sample, and the Home Depot log is product
titles, another domain). Rows, each scored on the held-out fold and pooled over the folds run:

* ``teacher``: the teacher LM fine-tuned on gold (``teacher_epochs``, ``teacher_max_prompt_tokens``);
* ``gold``: the student on gold only;
* ``+hard``: + the teacher's best label of each pool document the judge scores >= ``judge_threshold``;
* ``+hard+synthetic``: + documents the teacher writes for topics with fewer than ``synthetic_min_docs``
  documents (``--per-topic`` each; written once, from the topic alone, and cached in ``--out``);
* ``+soft``: + every pool document with the teacher's top-3 candidates as soft targets;
* ``+hard-nojudge`` (``--rows``): + every teacher label, unfiltered.

It also reports how the judges agree with the hidden gold labels of the pool: the LM judge (the
teacher base's frozen states + LR), MiniLM's, and the teacher's own top probability, by ROC AUC of
"the teacher's label is right" and the share right among labels scored >= the threshold.

    .venv/bin/python benchmarks/ablate_teacher.py --max-folds 2 --out /tmp/ablate   # ~30 min a fold here

Results are appended per fold and row to ``--out``; a rerun skips what is there (``--report`` only prints).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import numpy as np
import torch
from cv_classifier import dump, folds_of, read
from sklearn.metrics import roc_auc_score

from classifier.baselines import EmbeddingTopicClassifier
from classifier.data import Doc, load_documents, split
from classifier.evaluate import score
from classifier.model import train_recipe
from classifier.pipeline import EmbeddingJudge, under_covered
from classifier.teacher import LMEncoder, LMFeatureTopicClassifier, LMTeacher, hard, teacher_labels
from topicfeed.settings import Settings
from topicfeed.taxonomy import Taxonomy

ROWS = ("teacher", "gold", "+hard", "+hard+synthetic", "+soft")


def docs_jsonl(path: Path, docs: list[Doc] | None = None) -> list[Doc]:
    if docs is not None:
        with path.open("a", encoding="utf-8") as fh:
            for d in docs:
                fh.write(json.dumps({"doc_id": d.doc_id, "title": d.title, "body": d.body, "topics": list(d.topics), "weights": list(d.weights)}) + "\n")
        return docs
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [Doc(r["doc_id"], r["title"], r["body"], tuple(r["topics"]), tuple(r["weights"])) for r in rows]


def auc(correct: np.ndarray, s: np.ndarray) -> float | None:
    return round(float(roc_auc_score(correct, s)), 4) if 0 < correct.sum() < len(correct) else None


def main() -> None:
    settings = Settings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--max-folds", type=int, default=2)
    ap.add_argument("--start-fold", type=int, default=0, help="skip the folds before this one (run a later fold alone)")
    ap.add_argument("--data", type=Path, default=settings.shared_data_dir / "mind" / "news_train.tsv")
    ap.add_argument("--taxonomy", type=Path, default=settings.shared_data_dir / "mind" / "taxonomy.tsv")
    ap.add_argument("--teacher", default=settings.classifier.teacher_base or "gemma3-270m", help="the teacher's base model")
    ap.add_argument("--per-topic", type=int, default=1, help="synthetic documents per under-covered topic")
    ap.add_argument("--rows", nargs="*", default=list(ROWS), help=f"rows to run, of {[*ROWS, '+hard-nojudge']}")
    ap.add_argument("--out", type=Path, default=Path("/tmp/topicfeed-ablate"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--report", action="store_true", help="only print the table of what --out holds")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cs = settings.classifier
    teacher_cs = cs.model_copy(update={"base_model": args.teacher, "epochs": cs.teacher_epochs, "max_prompt_tokens": cs.teacher_max_prompt_tokens, "batch_size": 8})
    taxonomy = Taxonomy.load(args.taxonomy)
    docs = load_documents(args.data, taxonomy, settings.quarantine_dir).docs
    fold = folds_of(docs, args.folds, cs.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "log.jsonl"
    done = {(r["fold"], r["row"]) for r in map(json.loads, log_path.read_text().splitlines())} if log_path.exists() else set()

    def record(f: int, row: str, **info: object) -> None:
        with log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"fold": f, "row": row, **info}) + "\n")
        done.add((f, row))
        print(json.dumps({"fold": f, "row": row, **info}), flush=True)

    halves = {}
    for f in range(args.start_fold, args.max_folds):
        train = [d for d, g in zip(docs, fold) if g != f]
        gold, pool = split(train, 0.5, cs.seed + f)  # stratified; a topic with one document keeps it in gold
        halves[f] = (gold, pool, [d for d, g in zip(docs, fold) if g == f])

    if not args.report:
        encoder = LMEncoder(args.teacher, max_tokens=cs.max_prompt_tokens)
        writer = LMTeacher(args.teacher, taxonomy, progress=True)
        syn_path = args.out / "synthetic.jsonl"
        for f, (gold, pool, test) in halves.items():
            labels_path = args.out / f"fold{f}-teacher-labels.jsonl"
            if (f, "teacher") not in done or not labels_path.exists():
                clf, seconds = train_recipe(teacher_cs, taxonomy, gold, progress=True)
                start = time.perf_counter()
                dump(args.out / "teacher.jsonl", test, clf.predict(test, k=cs.num_beams, batch_size=16))
                rate = len(test) / (time.perf_counter() - start)
                labels_path.unlink(missing_ok=True)
                docs_jsonl(labels_path, teacher_labels(clf, pool, k=cs.num_beams, min_weight=cs.soft_min_weight, batch_size=16))
                record(f, "teacher", train_docs=len(gold), train_s=round(seconds), docs_per_s=round(rate, 1))
                del clf
                gc.collect()
            labels = docs_jsonl(labels_path)
            right = {d.doc_id: d.topic for d in pool}
            correct = np.array([right[d.doc_id] == d.topic for d in labels])
            hard_labels = hard(labels)
            if (f, "judges") not in done:
                judges = {
                    "lm": EmbeddingJudge(taxonomy, LMFeatureTopicClassifier(taxonomy, encoder)).fit(gold),
                    "minilm": EmbeddingJudge(taxonomy, EmbeddingTopicClassifier(taxonomy)).fit(gold),
                }
                info: dict[str, object] = {"labels": len(labels), "right": round(float(correct.mean()), 4)}
                for name, judge in judges.items():
                    s = np.array(judge.score(hard_labels, [d.topic for d in hard_labels]))
                    np.save(args.out / f"fold{f}-judge-{name}.npy", s)
                    kept = s >= cs.judge_threshold
                    info[name] = {"auc": auc(correct, s), "kept": int(kept.sum()), "kept_right": round(float(correct[kept].mean()), 4) if kept.any() else None}
                own = np.array([100 * d.weights[0] for d in labels])
                kept = own >= cs.judge_threshold
                info["teacher_p"] = {"auc": auc(correct, own), "kept": int(kept.sum()), "kept_right": round(float(correct[kept].mean()), 4) if kept.any() else None}
                record(f, "judges", **info)
            judged = np.load(args.out / f"fold{f}-judge-lm.npy")
            kept_hard = [d for d, s in zip(hard_labels, judged) if s >= cs.judge_threshold]
            sets = {"gold": gold, "+hard": [*gold, *kept_hard], "+soft": [*gold, *labels], "+hard-nojudge": [*gold, *hard_labels]}
            if "+hard+synthetic" in args.rows:
                topics = under_covered(taxonomy, sets["+hard"], cs.synthetic_min_docs)
                have = {d.topic for d in docs_jsonl(syn_path)}
                missing = [t for t in topics if t not in have]
                if missing:
                    start = time.perf_counter()
                    docs_jsonl(syn_path, writer.write_many(missing, args.per_topic, cs.seed))
                    print(f"teacher wrote {len(missing) * args.per_topic} documents for {len(missing)} topics in {time.perf_counter() - start:.0f} s", flush=True)
                wanted = set(topics)
                sets["+hard+synthetic"] = [*sets["+hard"], *[d for d in docs_jsonl(syn_path) if d.topic in wanted]]
            for row in args.rows:
                if row == "teacher" or (f, row) in done:
                    continue
                clf, seconds = train_recipe(cs, taxonomy, sets[row], progress=False)
                dump(args.out / f"{row}.jsonl", test, clf.predict(test, k=cs.num_beams, batch_size=cs.predict_batch_size))
                record(f, row, train_docs=len(sets[row]), train_examples=sum(len(d.topics) for d in sets[row]), train_s=round(seconds))
                del clf
                gc.collect()

    log = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    answered = {row: read(args.out / f"{row}.jsonl") for row in [*ROWS, "+hard-nojudge"] if (args.out / f"{row}.jsonl").exists()}

    def figures(row: str, scored: list) -> list[float]:
        """L1 top-1, L1 R@3, L2 top-1, L2 R@3 of a row's answers for the documents ``scored``."""
        r = score(row, scored, [answered[row][d.doc_id][: cs.num_beams] for d in scored], taxonomy, seconds=0, k=cs.num_beams)
        return [r.level(1).top1, r.level(1).recall, r.level(2).top1, r.level(2).recall]

    print("\n| row | folds | train docs | train s / fold | L1 top-1 | L1 R@3 | L2 top-1 | L2 R@3 |\n|---|---|---|---|---|---|---|---|")
    for row, answers in answered.items():
        scored = [d for d in docs if d.doc_id in answers]
        runs = [x for x in log if x["row"] == row]
        cells = " | ".join(f"{v:.3f}" for v in figures(row, scored))
        print(f"| {row} | {len(runs)} ({len(scored)} docs) | {'/'.join(str(x['train_docs']) for x in runs)} | {'/'.join(str(x['train_s']) for x in runs)} | {cells} |")
    print("\nper fold (1-based), L1 top-1 / L1 R@3 / L2 top-1 / L2 R@3:")
    for row, answers in answered.items():
        per_fold = []
        for f in sorted({g for d, g in zip(docs, fold) if d.doc_id in answers}):
            scored = [d for d, g in zip(docs, fold) if g == f and d.doc_id in answers]
            per_fold.append(f"fold {f + 1} ({len(scored)}): " + " / ".join(f"{v:.3f}" for v in figures(row, scored)))
        print(f"  {row}: " + "; ".join(per_fold))
    for x in log:
        if x["row"] == "judges":
            print(json.dumps(x))


if __name__ == "__main__":
    main()
