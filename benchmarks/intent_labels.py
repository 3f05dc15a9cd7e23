"""The student on N teacher labels, scored on the held-out gold set (float32, bfloat16 and int8, copy-only).

The labels are those ``benchmarks/bench_intent.py`` makes (the teacher labels the first N of the same
seeded sample of training searches of the Home Depot log) and the student is trained as it trains it
(gold-train + labels, ``settings.intent``); only the gold rows are scored. ``--cache FILE`` keeps the
labels (JSON) so that a second run trains again without relabelling. The sample is the same prefix for
any N, so labels grow by parts: ``--skip 2000 --samples 4000 --cache B`` labels searches 2,000..3,999
into B, and ``--cache A --cache B`` trains on both (every cache that exists is read; one that does not
is written with the labels of searches ``--skip``..``--samples``; one at most).

``--news FILE`` (a news catalog in MIND ``news.tsv`` format): the teacher labels searches for the
titles' named entities (``intent.mining.entity_searches``), balanced by the articles' categories, in
place of the Home Depot log's: the gold set's categories (people, shows, sports, places …) that a
shop's log lacks. ``--label-only`` writes the labels and trains nothing.

``--log-judge``: the log's labels are judged by what its users type before the student trains on
them (``judged_by_log``; measured on Home Depot: the student's Q* 4.8 words there against 8.1 and
ROUGE-L 0.565 against 0.420, still under the raw query's 0.663, and 0.007 lower on the gold set: not
kept).

With the word tagger (the default student), ``IntentSettings.search_examples`` searches made from the
training products' clicks (``intent.jobs.made_searches``) train its search head (and with
``searches_train_intent``, the default, its intent head too), as the default recipe makes them from
the lake's.

``--teacher-copy``: the teacher decodes copy-only (Q's words in order) and with the length
preference, as the student serves (measured: a worse student; ``label_with``).

    .venv/bin/python benchmarks/intent_labels.py --teacher DIR --samples 2000 --out DIR [--cache FILE] [--teacher-copy]
    .venv/bin/python benchmarks/intent_labels.py --cache A.json --cache B.json --out DIR   # train on labels made before
    .venv/bin/python benchmarks/intent_labels.py --teacher DIR --news ../shared/data/mind/news_train.tsv --samples 1200 --cache N.json --label-only
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from intent.benchmark import gold_rows, split_log
from intent.evaluate import format_row
from intent.jobs import label_with, read_labels, recipe_searches, sample_requests, title_searches, write_labels
from intent.mining import entity_searches
from intent.model import Example, IntentRefiner, gold_split
from intent.students import load_refiner, new_student, student_name
from intent.suggest import QuerySuggester
from intent.text import tokens
from topicfeed.settings import Settings


def judged_by_log(labels: list[Example], suggester: QuerySuggester) -> list[Example]:
    """Teacher labels of a search log's searches judged by what the log's users type: each Q* becomes
    Q with the one word the teacher added that the users type most with Q's words
    (``QuerySuggester.suggest(..., among=)``); where the teacher added no word anybody typed, the
    suggester's own word; Q alone where there is none. (Measured, 2026-12-06: not kept; docs/intent.md.)"""
    out = []
    for e in labels:
        refined = suggester.suggest(e.query, e.titles, among=tokens(e.refined))
        if refined == " ".join(tokens(e.query)):
            refined = suggester.suggest(e.query, e.titles)
        out.append(Example(e.query, e.titles, refined, e.category))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, help="a trained teacher directory (bench_intent.py --teacher-out); needed to label")
    ap.add_argument("--samples", type=int, default=2000, help="training searches the teacher labels")
    ap.add_argument("--skip", type=int, default=0, help="label searches from this index of the sample on (the first were labelled into another cache)")
    ap.add_argument("--out", type=Path, help="where the student is saved (needed unless --label-only)")
    ap.add_argument("--news", type=Path, help="label entity searches of this MIND-format news catalog instead of the Home Depot log's searches")
    ap.add_argument("--label-only", action="store_true", help="write the labels (--cache) and train nothing")
    ap.add_argument("--cache", type=Path, action="append", default=[], help="labels JSON: read if it exists, else written (repeatable)")
    ap.add_argument("--per-file", type=int, help="train on the first N labels of each --cache file (the sample's balanced prefix)")
    ap.add_argument("--log-judge", action="store_true", help="judge the log's labels by what its users type (intent.jobs.judged_by_log, the suggester fitted on the training products' clicks)")
    ap.add_argument("--teacher-copy", action="store_true", help="the teacher labels decoding copy-only with Q's words in order and the length preference, as the student serves")
    args = ap.parse_args()
    if args.out is None and not args.label_only:
        ap.error("--out is needed to train (or pass --label-only)")
    s = Settings()
    split = split_log(s.shared_data_dir / "homedepot" / "search_log.tsv")
    labels: list[Example] = []
    teacher = IntentRefiner.from_pretrained(args.teacher) if args.teacher is not None else None  # loaded once: labels, then the gold-example searches
    for path in (c for c in args.cache if c.exists()):
        read = read_labels(path)[: args.per_file]
        print(f"labels: {len(read)} from {path}")
        labels += read
    missing = [c for c in args.cache if not c.exists()]
    if len(missing) > 1:
        ap.error(f"one --cache file can be written per run, and {len(missing)} do not exist: {', '.join(map(str, missing))}")
    if missing or not args.cache:
        if teacher is None:
            ap.error("--teacher is needed to label (no --cache file to read, or one to write)")
        t = time.perf_counter()
        how = {"copy_only": True, "keep_query_order": s.intent.keep_query_order} if args.teacher_copy else {}
        if args.news is not None:
            clicks, bad = entity_searches(args.news)
            print(f"entity searches: {len(clicks):,} clicks from {args.news} ({len(bad)} rows unreadable)")
        else:
            clicks = split.train
        requests = sample_requests(clicks, args.samples, seed=1)[args.skip :]
        made = label_with(teacher.decoding(**how), requests, length_preference=args.teacher_copy)
        print(f"labels: {len(made)} of {len(requests)} searches in {time.perf_counter() - t:.0f}s", flush=True)
        if missing:
            write_labels(missing[0], made)
        labels += made
    if args.label_only:
        return
    if args.log_judge:
        labels = judged_by_log(labels, QuerySuggester.from_params(s.intent).fit(split.train))
        print(f"labels judged by the log: mean {sum(len(e.refined.split()) for e in labels) / max(len(labels), 1):.1f} words")
    train_gold, _ = gold_split()
    if teacher is not None and s.intent.title_searches:  # as the default recipe: searches made from the gold examples too
        made = label_with(teacher, title_searches(train_gold, s.intent.title_searches))
        print(f"labels: {len(made)} searches made from the gold examples (intent.jobs.title_searches)")
        labels += made
    else:
        print(f"{'no --teacher' if teacher is None else 'title_searches 0'}: the student trains without labels of searches made from the gold examples (intent.jobs.title_searches)")
    searches = recipe_searches(s.intent, split.train)  # made from the training products' clicks, as the default recipe from the lake's
    t = time.perf_counter()
    new_student(s.intent).fit(train_gold * s.intent.gold_repeats + labels + searches).save_pretrained(args.out)
    print(f"student: {student_name(s.intent)} on {len(train_gold)} gold x{s.intent.gold_repeats} + {len(labels)} labels + {len(searches)} made searches in {time.perf_counter() - t:.0f}s (bar: <= 20 min)", flush=True)
    models = {f"student-{q}-copy": load_refiner(args.out, serving_precision=q, copy_only=True) for q in ("float32", "bfloat16", "int8")}
    for row in gold_rows(models, bias=split.bias):
        print("  " + format_row(row))


if __name__ == "__main__":
    main()
