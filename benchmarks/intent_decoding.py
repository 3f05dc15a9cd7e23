"""Choosing the student's decoding length on a dev slice of the gold set, never on the held-out test.

The held-out gold test (``gold_split``) scores every model; the student trains on the rest
(gold-train) and on the teacher's labels. Here a quarter of gold-train (by the hash of
``"dev:" + query``) is set aside as a dev slice, a student is trained on the other three quarters +
the teacher's labels (``--labels``: the JSON ``benchmarks/intent_labels.py --cache`` writes), and the
grid of ``length_penalty`` x ``end_penalty`` (``IntentSettings``) is scored on the dev slice:
BERTScore F1 against its gold Q* and the mean words written. The best pair is printed; the
settings' defaults are taken from it.

    .venv/bin/python benchmarks/intent_decoding.py --labels FILE [--labels FILE ...] [--teacher DIR] [--student DIR] [--out DIR]
        [--length-penalty 1,1.5,2,3] [--end-penalty 0,0.5,1,2,3,4,5,6,8]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from intent.benchmark import dev_split
from intent.evaluate import bert_f1
from intent.jobs import label_with, read_labels, title_searches
from intent.model import IntentRefiner, Request, gold_split
from topicfeed.settings import Settings


def floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=Path, action="append", default=[], help="teacher labels JSON (benchmarks/intent_labels.py --cache; repeatable); needed unless --student")
    ap.add_argument("--per-file", type=int, help="train on the first N labels of each --labels file (the sample's balanced prefix)")
    ap.add_argument("--teacher", type=Path, help="a trained teacher: it labels the searches made from the dev student's gold examples, as the default recipe has it (intent.jobs.title_searches)")
    ap.add_argument("--student", type=Path, help="a student already trained without the dev slice (this script's --out)")
    ap.add_argument("--out", type=Path, default=Path("intent-dev-student"), help="where the student trained here is saved")
    ap.add_argument("--length-penalty", type=floats, default=(1.0, 1.5, 2.0, 3.0))
    ap.add_argument("--end-penalty", type=floats, default=(0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0))
    args = ap.parse_args()
    s = Settings()
    train_gold, _ = gold_split()
    fit, dev = dev_split()
    print(f"gold-train {len(train_gold)}: {len(fit)} to train on, {len(dev)} dev; the held-out gold test is not read", flush=True)
    if args.student is None:
        if not args.labels:
            ap.error("--labels is needed to train a student (or pass --student)")
        labels = [e for path in args.labels for e in read_labels(path)[: args.per_file]]
        if args.teacher is not None and s.intent.title_searches:
            labels += label_with(IntentRefiner.from_pretrained(args.teacher), title_searches(fit, s.intent.title_searches))
        t = time.perf_counter()
        IntentRefiner.from_base(params=s.intent).fit(fit * s.intent.gold_repeats + labels).save_pretrained(args.out)
        print(f"student on {len(fit)} gold x{s.intent.gold_repeats} + {len(labels)} labels in {time.perf_counter() - t:.0f}s -> {args.out}", flush=True)
    directory = args.student or args.out
    requests, refs = [Request(e.query, e.titles) for e in dev], [e.refined for e in dev]
    print(f"dev gold Q*: {sum(len(r.split()) for r in refs) / len(refs):.2f} words on average")
    results = []
    for lp, ep in itertools.product(args.length_penalty, args.end_penalty):
        out = IntentRefiner.from_pretrained(directory, length_penalty=lp, end_penalty=ep).predict(requests)
        f1, n = bert_f1(out, refs), sum(len(o.split()) for o in out) / len(out)
        results.append((f1, lp, ep, n))
        print(f"  length_penalty={lp:g} end_penalty={ep:g}: dev BERTScore F1 {f1:.4f}, {n:.2f} words", flush=True)
    f1, lp, ep, n = max(results)
    print(f"best on dev: length_penalty={lp:g} end_penalty={ep:g} (BERTScore F1 {f1:.4f}, {n:.2f} words)")


if __name__ == "__main__":
    main()
