"""The student-teacher gap on the held-out gold set, read to the precision it has.

Scores a trained teacher (decoding copy-only with Q's words in order and the configured length
preference, as the student serves, with and without ``fill_title_gaps``, and free with the same preference), optionally
the log-mined model (``--log``: the student's base on the pairs mined from the Home Depot log's
training products, as ``bench_intent.py`` trains it, about 40 s) and each ``--student`` (either kind, ``load_refiner``) served in
every precision (``IntentSettings.serving_precision``: float32, bfloat16, int8) on the held-out gold
(``gold_split``: the 43 held-out examples of ``gold.tsv`` and the 132 of ``gold_test.tsv``). Each line
is BERTScore F1 (all-MiniLM-L6-v2, layer 6) on all of it and on each file, and each model's gap to
the best of the teacher's ways with its paired 95% bootstrap interval (``intent.evaluate.paired_bootstrap``),
the bar being "student >= teacher - 0.02". No training of the student, no labelling: minutes.

    .venv/bin/python benchmarks/intent_gap.py --teacher DIR --student DIR [--student DIR ...] [--log]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from intent.benchmark import as_student_serves, gold_rows, log_mined_model, split_log
from intent.evaluate import paired_bootstrap
from intent.mining import mine
from intent.model import IntentRefiner, gold_split
from intent.students import load_refiner
from topicfeed.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, required=True, help="a trained teacher directory (bench_intent.py --teacher-out)")
    ap.add_argument("--student", type=Path, action="append", default=[], help="a trained student directory (repeatable)")
    ap.add_argument("--log", action="store_true", help="also train and score the log-mined model")
    args = ap.parse_args()
    s = Settings()
    held = len(gold_split()[1])
    first = len(gold_split(test_file=False)[1])
    parts = {"all": slice(None), "gold.tsv": slice(0, first), "gold_test.tsv": slice(first, None)}
    print(f"held-out gold: {held} examples ({first} of gold.tsv, {held - first} of gold_test.tsv); BERTScore F1, gap to the best teacher [paired 95% interval]")

    teacher = IntentRefiner.from_pretrained(args.teacher)
    # the teacher three ways: as the student serves, the same without putting skipped title words back
    # (the rule helps the student, not the teacher), and free; the gaps are read against the best
    models = {
        "teacher-copy": teacher.decoding(**as_student_serves(s.intent)),
        "teacher-copy-unfilled": teacher.decoding(**{**as_student_serves(s.intent), "fill_title_gaps": 0}),
        "teacher-free": teacher.decoding(length_penalty=s.intent.length_penalty, end_penalty=s.intent.end_penalty),
    }
    if args.log:
        models["log-mined"] = log_mined_model(s.intent, mine(split_log(s.shared_data_dir / "homedepot" / "search_log.tsv").train))
    for directory in args.student:
        for precision in ("float32", "bfloat16", "int8"):
            models[f"{directory.name} {precision}"] = load_refiner(directory, serving_precision=precision, copy_only=True)  # copy_only: the LM student's; a word tagger copies anyway
    t = time.perf_counter()
    scores: dict[str, np.ndarray] = {}
    gold_rows(models, scores=scores)
    print(f"  ({len(models)} models decoded and scored in {time.perf_counter() - t:.0f}s)")
    top = max((n for n in scores if n.startswith("teacher")), key=lambda n: scores[n].mean())
    best = scores[top]
    print(f"  gaps to the best teacher: {top}")
    for name, each in scores.items():
        cells = []
        for part, sl in parts.items():
            cell = f"{part} {each[sl].mean():.4f}"
            if name != top:
                gap, low, high = paired_bootstrap(each[sl], best[sl])
                cell += f" ({gap:+.3f} [{low:+.3f}, {high:+.3f}])"
            cells.append(cell)
        print(f"  {name:28s} " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
