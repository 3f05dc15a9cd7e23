"""The intent refiner end to end on real data: teacher, log-mined model and student, side by side.

1. teacher: Gemma 3 270M (base, the PyPI GGUF package) fine-tuned on the gold set's training part
   by the settings' teacher recipe (``IntentSettings.teacher_params``: LoRA; ``--teacher DIR`` reuses one);
2. the real search log (Home Depot, ``../shared/data``) split by product; the log-mined model: the
   student's base fine-tuned on the (Q, Q*) pairs mined from the training products;
3. the teacher labels ``--teacher-samples`` sampled (Q, clicked title) of the training products
   (with ``--news FILE``, ``--news-samples`` of them are entity searches of a MIND-format news
   catalog instead, ``intent.mining.entity_searches``, balanced by category, as ``intent train --news``);
   the student (``settings.intent``: MiniLM, copy-only decoding) is trained on gold-train + those labels
   (the word tagger also on ``search_examples`` searches made from the training products' clicks, for
   its search head, whose re-search suggestions get their own rows and bars, and with
   ``searches_train_intent`` for its intent head too);
4. every model on the held-out gold and on the held-out products (ROUGE, BERTScore, key tokens, bias,
   MRR; the teacher also decoding copy-only as the student does, and with no length preference
   (``length_penalty`` 1, ``end_penalty`` 0): the BERTScore bar is read against the best teacher),
   the training times, and for the student served six ways (float32, bfloat16 or int8, free or
   copy-only decoding) its throughput, single-request latency and every bar; the BERTScore gap to the best
   teacher comes with its paired bootstrap interval (``intent.benchmark.gold_rows``' per-example scores, ``intent.evaluate.paired_bootstrap``).

``--student DIR`` scores a student trained before (steps 3's labelling and training are skipped).

    .venv/bin/python benchmarks/bench_intent.py [--teacher DIR] [--student DIR] [--teacher-samples 600] [--samples 400]
        [--news ../shared/data/mind/news_train.tsv --news-samples 300]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from intent.benchmark import as_student_serves, gold_rows, log_mined_model, log_rows, split_log, throughput
from intent.evaluate import format_row, paired_bootstrap
from intent.jobs import label_with, mixed_requests, recipe_searches, title_searches
from intent.mining import entity_searches, mine
from intent.model import NO_LENGTH_PREFERENCE, IntentRefiner, Request, gold_split
from intent.students import load_refiner, new_student, student_name
from topicfeed.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, help="a trained teacher directory to reuse")
    ap.add_argument("--teacher-out", type=Path, help="where to save the teacher trained here")
    ap.add_argument("--teacher-samples", type=int, default=600)
    ap.add_argument("--news", type=Path, help="a MIND-format news catalog: the teacher labels --news-samples entity searches of it too")
    ap.add_argument("--news-samples", type=int, default=0, help="of --teacher-samples, entity searches of --news")
    ap.add_argument("--student", type=Path, help="a trained student directory to reuse (no labelling, no student training)")
    ap.add_argument("--samples", type=int, default=400, help="held-out log clicks for the MRR check")
    ap.add_argument("--log", type=Path, help="search log TSV; default: ../shared/data/homedepot/search_log.tsv")
    args = ap.parse_args()
    s = Settings()
    log = args.log or s.shared_data_dir / "homedepot" / "search_log.tsv"
    tmp = Path(tempfile.mkdtemp())
    train_gold, _ = gold_split()

    def say(msg: str) -> None:
        print(msg, flush=True)

    if args.teacher:
        teacher = IntentRefiner.from_pretrained(args.teacher)
        say(f"teacher: reused {args.teacher}")
    else:
        t = time.perf_counter()
        teacher = IntentRefiner.from_base(params=s.intent.teacher_params())
        teacher.fit(train_gold)
        say(f"teacher: {s.intent.teacher_base} + {'LoRA' if s.intent.teacher_lora else 'every weight'} on {len(train_gold)} gold examples in {time.perf_counter() - t:.0f}s (loss {teacher.fit_report_['first_loss']} -> {teacher.fit_report_['last_loss']})")
        teacher.save_pretrained(args.teacher_out or tmp / "teacher")
        teacher = IntentRefiner.from_pretrained(args.teacher_out or tmp / "teacher")

    split = split_log(log)
    mined = mine(split.train)
    say(f"log {log.name}: {len(split.train):,} training clicks, {len(split.test):,} held-out; mined from training products: {len(mined.pairs)} pairs; bias patterns: {sorted(split.bias)}")
    t = time.perf_counter()
    log_model = log_mined_model(s.intent, mined)
    say(f"log-mined model: {s.intent.base_model} on {len(mined.pairs)} mined pairs in {time.perf_counter() - t:.0f}s")

    if args.student:
        student_dir = args.student
        say(f"student: reused {args.student}")
    else:
        news = entity_searches(args.news)[0] if args.news else []
        requests = mixed_requests(split.train, args.teacher_samples, 1, news, args.news_samples) + title_searches(train_gold, s.intent.title_searches)
        t = time.perf_counter()
        labels = label_with(teacher, requests)
        say(f"teacher labels: {len(labels)} of {len(requests)} sampled training searches in {time.perf_counter() - t:.0f}s ({len(requests) / (time.perf_counter() - t):.1f}/s)")
        for e in random.Random(0).sample(labels, min(5, len(labels))):
            say(f"  {e.query!r} + {e.titles[0][:50]!r} -> {e.refined!r}")
        searches = recipe_searches(s.intent, split.train)  # made from the training products' clicks, as the default recipe from the lake's
        t = time.perf_counter()
        student = new_student(s.intent).fit(train_gold * s.intent.gold_repeats + labels + searches)
        train_s = time.perf_counter() - t
        say(f"student: {student_name(s.intent)} on {len(train_gold)} gold + {len(labels)} teacher labels + {len(searches)} made searches in {train_s:.0f}s (bar: <= 20 min)")
        student_dir = tmp / "student"
        student.save_pretrained(student_dir)
    # the one trained student, served in float32, bfloat16 or int8 (settings.intent.serving_precision);
    # an LM student also free or copy-only (settings.intent.copy_only; a word tagger only copies)
    short = {"float32": "f32", "bfloat16": "bf16", "int8": "int8"}
    variants = {
        f"student-{short[q]}-{'copy' if c else 'free'}": load_refiner(student_dir, serving_precision=q, copy_only=c)
        for q in short
        for c in (False, True)
        if c or s.intent.student == "lm"
    }
    configured = f"student-{short[s.intent.serving_precision]}-{'copy' if s.intent.copy_only or s.intent.student == 'tagger' else 'free'}"
    say(f"the configured serving student (settings.intent.serving_precision={s.intent.serving_precision}, copy_only={s.intent.copy_only}): {configured}")

    # the teacher also decoding as the student serves (copy-only, Q's words in order, the configured
    # length preference) and with no length preference: the bar is read against the best of the
    # three teachers; the same loaded model, decoded other ways
    teacher_copy = teacher.decoding(**as_student_serves(s.intent))
    teacher_unfilled = teacher.decoding(**{**as_student_serves(s.intent), "fill_title_gaps": 0})
    teacher_plain = teacher.decoding(**NO_LENGTH_PREFERENCE)
    models = {"log-mined": log_model, "teacher": teacher, "teacher-copy": teacher_copy, "teacher-copy-unfilled": teacher_unfilled, "teacher-plain": teacher_plain, **variants}
    say("held-out gold:")
    scores: dict = {}
    rows = gold_rows(models, bias=split.bias, scores=scores)
    for r in rows:
        say("  " + format_row(r))
    by = {r["model"]: r for r in rows}
    te, lg = max(by["teacher"], by["teacher-copy"], by["teacher-copy-unfilled"], by["teacher-plain"], key=lambda r: r["bertscore_f1"]), by["log-mined"]
    say(f"held-out products of the real log ({args.samples} sampled clicks for MRR):")
    lrows = log_rows({**variants, "teacher": teacher, "teacher-copy": teacher_copy, "log-mined": log_model}, split, args.samples)
    for r in lrows:
        say("  " + format_row(r))
    lby = {r["model"]: r for r in lrows}
    raw = lby["raw query"]
    requests = [Request(c.query, (c.title,)) for c in split.test[:256]]
    say("bars, per served variant of the student:")
    for name, m in variants.items():
        st, sl = by[name], lby[name]
        rate, p95 = throughput(m, requests)
        _, low, high = paired_bootstrap(scores[name], scores[te["model"]])
        checks = {
            f"BERTScore {st['bertscore_f1']:.3f} >= {te['model']} {te['bertscore_f1']:.3f} - 0.02 (paired 95% interval of the gap [{low:+.3f}, {high:+.3f}])": st["bertscore_f1"] >= te["bertscore_f1"] - 0.02,
            f"{st['bertscore_f1'] / lg['bertscore_f1'] - 1:+.1%} over log-mined {lg['bertscore_f1']:.3f} (>= +7%)": st["bertscore_f1"] >= 1.07 * lg["bertscore_f1"],
            f"key tokens {st['key_retention']:.1%} (>= 99%)": st["key_retention"] >= 0.99,
            f"bias outputs {st['bias_share']:.1%} (<= 1%)": st["bias_share"] <= 0.01,
            f"HD ROUGE-L {sl['rougeL_vs_mined']:.3f} > raw {raw['rougeL_vs_mined']:.3f}": sl["rougeL_vs_mined"] > raw["rougeL_vs_mined"],
            f"MRR {sl['mrr_ratio']:.2f}x raw (>= 1.3x)": sl["mrr_ratio"] >= 1.3,
            f"mean {sl['mean_tokens']:.1f} words (<= 10)": sl["mean_tokens"] <= 10,
            f"{rate:.1f} refinements/s in batches of 32 (>= 30)": rate >= 30,
            f"one fresh request p95 {p95 * 1e3:.0f} ms (<= 300)": p95 <= 0.3,
        }
        if (sh := lby.get(f"{name}, search head")) is not None:  # the word tagger's re-search suggestions
            checks[f"search head HD ROUGE-L {sh['rougeL_vs_mined']:.3f} > raw {raw['rougeL_vs_mined']:.3f}"] = sh["rougeL_vs_mined"] > raw["rougeL_vs_mined"]
            checks[f"search head MRR {sh['mrr_ratio']:.2f}x raw (>= 1.3x), {sh['mean_tokens']:.1f} words (<= 10)"] = sh["mrr_ratio"] >= 1.3 and sh["mean_tokens"] <= 10
        met = sum(checks.values())
        say(f"  {name}{' (configured)' if name == configured else ''}: {met}/{len(checks)} met; " + "; ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()))

if __name__ == "__main__":
    sys.exit(main())
