"""The student on N teacher labels, scored on the held-out gold set (float32 and int8, copy-only).

The labels are those ``benchmarks/bench_intent.py`` makes (the teacher labels the first N of the same
seeded sample of training searches of the Home Depot log) and the student is trained as it trains it
(gold-train + labels, ``settings.intent``); only the gold rows are scored. ``--cache FILE`` keeps the
labels (JSON) so that a second run trains again without relabelling.

``--teacher-copy``: the teacher decodes copy-only (Q's words in order) and with the length
preference, as the student serves (measured: a worse student; ``label_with``).

    .venv/bin/python benchmarks/intent_labels.py --teacher DIR --samples 2000 --out DIR [--cache FILE] [--teacher-copy]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from intent.benchmark import gold_rows, split_log
from intent.evaluate import format_row
from intent.jobs import label_with, sample_requests
from intent.model import Example, IntentRefiner, gold_split
from topicfeed.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, required=True, help="a trained teacher directory (bench_intent.py --teacher-out)")
    ap.add_argument("--samples", type=int, default=2000, help="training searches the teacher labels")
    ap.add_argument("--out", type=Path, required=True, help="where the student is saved")
    ap.add_argument("--cache", type=Path, help="labels JSON: read if it exists, else written")
    ap.add_argument("--teacher-copy", action="store_true", help="the teacher labels decoding copy-only with Q's words in order and the length preference, as the student serves")
    args = ap.parse_args()
    s = Settings()
    split = split_log(s.shared_data_dir / "homedepot" / "search_log.tsv")
    if args.cache and args.cache.exists():
        labels = [Example(e["query"], tuple(e["titles"]), e["refined"], e["category"]) for e in json.loads(args.cache.read_text())]
        print(f"labels: {len(labels)} from {args.cache}")
    else:
        t = time.perf_counter()
        how = {"copy_only": True, "keep_query_order": s.intent.keep_query_order} if args.teacher_copy else {}
        labels = label_with(IntentRefiner.from_pretrained(args.teacher, **how), sample_requests(split.train, args.samples, seed=1), length_preference=args.teacher_copy)
        print(f"labels: {len(labels)} in {time.perf_counter() - t:.0f}s", flush=True)
        if args.cache:
            args.cache.write_text(json.dumps([{"query": e.query, "titles": list(e.titles), "refined": e.refined, "category": e.category} for e in labels]))
    train_gold, _ = gold_split()
    t = time.perf_counter()
    IntentRefiner.from_base(params=s.intent).fit(train_gold + labels).save_pretrained(args.out)
    print(f"student: {s.intent.base_model} on {len(train_gold)} gold + {len(labels)} labels in {time.perf_counter() - t:.0f}s (bar: <= 20 min)", flush=True)
    models = {f"student-{'int8' if q else 'f32'}-copy": IntentRefiner.from_pretrained(args.out, int8=q, copy_only=True) for q in (False, True)}
    for row in gold_rows(models, bias=split.bias):
        print("  " + format_row(row))


if __name__ == "__main__":
    main()
