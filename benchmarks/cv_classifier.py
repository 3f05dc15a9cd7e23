"""Cross-validated quality of the default recipe and both baselines on all labelled documents.

One 265-document dev split has a standard error of about 0.03 on top-1 accuracy, as large as most
recipe differences. This script scores every document once, out of fold: ``--folds`` models of the
default recipe (5: 1,120 training documents each on the MIND sample), TF-IDF + LR and MiniLM + LR on the
same folds, pooled over all 1,401 documents (standard error about 0.012).

With a topic head (the default recipe trains one) it also scores what ``predict`` returns by default:
the LM's best ``rescore_beams`` re-ranked by the head; the ``lm`` rows are the LM's own beams.
It also scores the quality mode (``classifier/rescore.py``): the LM's best paths (``rescore_beams``, 5,
taken from a 10-wide search) re-ranked by ``log p_LM + w * log p_expert``, for the MiniLM + LR expert
as ``classify train`` fits it (reading the LM's 64 document tokens) and, for comparison, TF-IDF + LR.
The weight ``w`` of each fold is chosen on the other folds' out-of-fold answers, so the figure is not
fitted to the documents it is scored on.

    .venv/bin/python benchmarks/cv_classifier.py [--folds 5] [--out /tmp/cv]   # 5-7 min a fold here

Out-of-fold answers are written to ``--out`` (one JSONL file per method) so that other ways of
combining them can be scored without training again (``--rescore-only``). Last, it prints where the
default's level-1 answers go wrong: per gold topic, the most common confusions, and by the top score;
``--show-errors N`` adds N random confident errors to read.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from classifier.baselines import EmbeddingTopicClassifier, TfidfTopicClassifier
from classifier.data import Doc, level_path, load_documents
from classifier.evaluate import error_report, format_results, level_ranking, score
from classifier.model import TopicScore, train_recipe
from classifier.rescore import rescore
from topicfeed.settings import Settings
from topicfeed.taxonomy import Taxonomy

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def folds_of(docs: Sequence[Doc], n_folds: int, seed: int) -> list[int]:
    """A fold per document, stratified by main topic: each topic's documents are dealt round the folds."""
    rng = random.Random(seed)
    by_topic: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(docs):
        by_topic[d.topic].append(i)
    fold = [0] * len(docs)
    turn = 0
    for topic in sorted(by_topic):
        group = by_topic[topic]
        rng.shuffle(group)
        for i in group:
            fold[i] = turn % n_folds
            turn += 1
    return fold


def dump(path: Path, docs: Sequence[Doc], preds: Sequence[Sequence[TopicScore | None]]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        for d, answers in zip(docs, preds):
            fh.write(json.dumps({"doc_id": d.doc_id, "topics": [[a.path, a.level, a.score] for a in answers if a is not None]}) + "\n")


def read(path: Path) -> dict[str, list[TopicScore]]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        out[row["doc_id"]] = [TopicScore(p, lv, s) for p, lv, s in row["topics"]]
    return out


def main() -> None:
    settings = Settings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--data", type=Path, default=settings.shared_data_dir / "mind" / "news_train.tsv")
    ap.add_argument("--taxonomy", type=Path, default=settings.shared_data_dir / "mind" / "taxonomy.tsv")
    ap.add_argument("--out", type=Path, default=Path("/tmp/topicfeed-cv"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-folds", type=int, default=None, help="train and score only the first N folds (a paired comparison on fewer documents)")
    ap.add_argument("--rescore-only", action="store_true", help="score the answers already in --out")
    ap.add_argument("--compare", type=Path, action="append", default=[], help="another run's --out: its LM scored on the same documents")
    ap.add_argument("--show-errors", type=int, default=0, metavar="N", help="print N random confident level-1 errors of the default (top score >= 0.95) to read")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cs = settings.classifier
    k = cs.num_beams
    taxonomy = Taxonomy.load(args.taxonomy)
    docs = load_documents(args.data, taxonomy, settings.quarantine_dir).docs
    fold = folds_of(docs, args.folds, cs.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    methods = {"lm": "LM + candidate beam search (beam 3)", "lm10": "LM, beam 10", "tfidf": "tfidf+logreg", "minilm": "minilm+logreg"}
    if not args.rescore_only:
        for name in [*methods, "head"]:
            (args.out / f"{name}.jsonl").unlink(missing_ok=True)
        embed = EmbeddingTopicClassifier(taxonomy)  # its encoder loaded once; fit() refits the LR
        for f in range(args.max_folds or args.folds):
            train = [d for d, g in zip(docs, fold) if g != f]
            test = [d for d, g in zip(docs, fold) if g == f]
            clf, seconds = train_recipe(cs, taxonomy, train, progress=False)
            start = time.perf_counter()
            dump(args.out / "lm.jsonl", test, clf.predict(test, k=k, batch_size=cs.predict_batch_size, head_weight=0.0))
            lm_s = time.perf_counter() - start
            dump(args.out / "lm10.jsonl", test, clf.predict(test, k=10, batch_size=cs.predict_batch_size, head_weight=0.0))
            if clf.topic_head is not None:
                dump(args.out / "head.jsonl", test, clf.predict(test, k=k, batch_size=cs.predict_batch_size))
            dump(args.out / "tfidf.jsonl", test, TfidfTopicClassifier(taxonomy).fit(train).predict(test, k=len(taxonomy)))
            dump(args.out / "minilm.jsonl", test, embed.fit(train).predict(test, k=len(taxonomy)))
            print(f"fold {f + 1}/{args.folds}: trained on {len(train)} in {seconds:.0f} s, {len(test)} scored ({len(test) / lm_s:.1f} docs/s)", flush=True)
            del clf

    if (args.out / "head.jsonl").exists():  # the default recipe's topic head re-ranking the LM's best rescore_beams
        methods["head"] = f"LM beam {cs.rescore_beams} re-ranked by its topic head (w {cs.head_weight:g}, the default)"
    answers = {name: read(args.out / f"{name}.jsonl") for name in methods}
    ordered = [d for d in docs if d.doc_id in answers["lm"]]
    fold_of = {d.doc_id: g for d, g in zip(docs, fold)}
    scored_folds = sorted({fold_of[d.doc_id] for d in ordered})
    results = [score(label, ordered, [answers[name][d.doc_id][:k] for d in ordered], taxonomy, seconds=0, k=k) for name, label in methods.items()]
    for other in args.compare:
        theirs = read(other / "lm.jsonl")
        results.append(score(f"LM of {other}", ordered, [theirs[d.doc_id][:k] for d in ordered], taxonomy, seconds=0, k=k))

    # the products of experts, each weight chosen on the other folds
    proba = {"tfidf": {i: {a.path: a.score for a in v} for i, v in answers["tfidf"].items()}, "expert": {}}
    # the quality mode's expert as `classify train` fits it (reading the LM's document tokens), out of fold
    expert_model = EmbeddingTopicClassifier(taxonomy, max_tokens=cs.max_prompt_tokens)
    for f in scored_folds:
        test = [d for d in ordered if fold_of[d.doc_id] == f]
        expert_model.fit([d for d in docs if fold_of[d.doc_id] != f])
        proba["expert"].update(zip((d.doc_id for d in test), expert_model.path_proba(test)))
    beams = cs.rescore_beams  # the quality mode's candidates: the LM's best of its 10-wide search
    labels = {"expert": f"quality mode: LM best {beams} x MiniLM ({cs.max_prompt_tokens} tokens) + LR", "tfidf": f"LM best {beams} x tfidf+logreg"}
    for expert in ("expert", "tfidf"):
        combined: dict[str, list[TopicScore]] = {}
        chosen = []
        for f in scored_folds:
            others = [d for d in ordered if fold_of[d.doc_id] != f]

            def quality(w: float, others: list[Doc] = others, expert: str = expert) -> float:
                r = score("", others, [rescore(answers["lm10"][d.doc_id][:beams], proba[expert][d.doc_id], w, k) for d in others], taxonomy, seconds=0, k=k)
                return sum(s.top1 + s.recall for s in r.levels if s.n)

            w = max(WEIGHTS, key=quality)
            chosen.append(w)
            for d in ordered:
                if fold_of[d.doc_id] == f:
                    combined[d.doc_id] = rescore(answers["lm10"][d.doc_id][:beams], proba[expert][d.doc_id], w, k)
        label = f"{labels[expert]} (w per fold: {', '.join(map(str, chosen))})"
        results.append(score(label, ordered, [combined[d.doc_id] for d in ordered], taxonomy, seconds=0, k=k))
    print(f"{len(ordered)} documents scored out of fold ({len(chosen)} of {args.folds} folds)")
    print(format_results(results).replace("inf", " - "))
    default = "head" if "head" in answers else "lm"
    print(f"\nwhere {methods[default]} goes wrong:")
    print(error_report(ordered, [answers[default][d.doc_id][:k] for d in ordered], level=1).format())
    if args.show_errors:
        sure = [d for d in ordered if answers[default][d.doc_id][0].score >= 0.95 and level_ranking(answers[default][d.doc_id][:k], 1)[0] != level_path(d.topic, 1)]
        print(f"\n{min(args.show_errors, len(sure))} of the {len(sure)} level-1 errors with a top score >= 0.95 (gold | answered):")
        for n, d in enumerate(random.Random(1).sample(sorted(sure, key=lambda d: d.doc_id), min(args.show_errors, len(sure))), 1):
            print(f"{n}. {d.doc_id} {d.topic} | {answers[default][d.doc_id][0].path}\n   {d.title} || {d.body[:160]}")


if __name__ == "__main__":
    main()
