"""The student-teacher gap on the held-out gold set, read to the precision it has.

Scores a trained teacher (decoding copy-only with Q's words in order and the configured length
preference, as the student serves: its best way, and free with the same preference), optionally
the log-mined model (``--log``: the student's base on the pairs mined from the Home Depot log's
training products, as ``bench_intent.py`` trains it, about 40 s) and each ``--student`` served in
every precision (``IntentSettings.serving_precision``: float32, bfloat16, int8) on the held-out gold
(``gold_split``: the 43 held-out examples of ``gold.tsv`` and the 132 of ``gold_test.tsv``). Each line
is BERTScore F1 (all-MiniLM-L6-v2, layer 6) on all of it and on each file, and each model's gap to
the copy-only teacher with its paired 95% bootstrap interval (``intent.evaluate.paired_bootstrap``),
the bar being "student >= teacher - 0.02". No training of the student, no labelling: minutes.

    .venv/bin/python benchmarks/intent_gap.py --teacher DIR --student DIR [--student DIR ...] [--log]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from intent.benchmark import split_log
from intent.evaluate import bert_f1_each, paired_bootstrap
from intent.mining import mine
from intent.model import Example, IntentRefiner, Request, gold_split
from topicfeed.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, required=True, help="a trained teacher directory (bench_intent.py --teacher-out)")
    ap.add_argument("--student", type=Path, action="append", default=[], help="a trained student directory (repeatable)")
    ap.add_argument("--log", action="store_true", help="also train and score the log-mined model")
    args = ap.parse_args()
    s = Settings()
    _, test = gold_split()
    first = len(gold_split(test_file=False)[1])
    requests, refs = [Request(e.query, e.titles) for e in test], [e.refined for e in test]
    parts = {"all": slice(None), "gold.tsv": slice(0, first), "gold_test.tsv": slice(first, None)}
    print(f"held-out gold: {len(test)} examples ({first} of gold.tsv, {len(test) - first} of gold_test.tsv); BERTScore F1, gap to teacher-copy [paired 95% interval]")

    def line(name: str, scores: np.ndarray, teacher: np.ndarray | None) -> None:
        cells = []
        for part, sl in parts.items():
            cell = f"{part} {scores[sl].mean():.4f}"
            if teacher is not None:
                gap, low, high = paired_bootstrap(scores[sl], teacher[sl])
                cell += f" ({gap:+.3f} [{low:+.3f}, {high:+.3f}])"
            cells.append(cell)
        print(f"  {name:28s} " + "; ".join(cells), flush=True)

    like_student = {"copy_only": True, "keep_query_order": s.intent.keep_query_order, "length_penalty": s.intent.length_penalty, "end_penalty": s.intent.end_penalty}
    t = time.perf_counter()
    teacher = IntentRefiner.from_pretrained(args.teacher)
    best = bert_f1_each(teacher.decoding(**like_student).predict(requests), refs)
    line("teacher-copy", best, None)
    line("teacher-free", bert_f1_each(teacher.decoding(length_penalty=s.intent.length_penalty, end_penalty=s.intent.end_penalty).predict(requests), refs), best)
    print(f"  (teacher: {time.perf_counter() - t:.0f}s)")
    line("raw query", bert_f1_each([e.query.lower() for e in test], refs), best)
    if args.log:
        mined = mine(split_log(s.shared_data_dir / "homedepot" / "search_log.tsv").train)
        log_model = IntentRefiner.from_base(params=s.intent).fit([Example(p.query, (p.title,), p.refined_query) for p in mined.pairs])
        line("log-mined", bert_f1_each(log_model.predict(requests), refs), best)
    for directory in args.student:
        for precision in ("float32", "bfloat16", "int8"):
            model = IntentRefiner.from_pretrained(directory, serving_precision=precision, copy_only=True)
            line(f"{directory.name} {precision}", bert_f1_each(model.predict(requests), refs), best)


if __name__ == "__main__":
    main()
