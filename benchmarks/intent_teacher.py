"""The teacher's fine-tuning, LoRA or every weight, chosen by measurement.

Trains one teacher (``IntentSettings.teacher_base``, Gemma 3 270M from the PyPI GGUF package) per
call, as ``--lora`` adapters (peft) or a full fine-tune, and prints its training time and the
process's peak memory. ``--dev`` trains on gold-train less the dev slice of
``benchmarks/intent_decoding.py`` (a quarter, by the hash of ``"dev:" + query``) and scores the dev
slice, so a recipe is chosen without reading the test; without it the teacher trains on all of
gold-train. ``--score DIR ...`` scores saved teachers: on the dev slice (``--dev``) or on the held-out
gold (the 175 of ``gold_split``), each decoding as the student serves (copy-only, Q's words in order,
the length preference: how the bar is read) and freely; BERTScore F1 (all-MiniLM-L6-v2, layer 6),
each teacher's gap to the first with its paired 95% bootstrap interval.

    .venv/bin/python benchmarks/intent_teacher.py --out DIR [--dev] [--lora] [--learning-rate 1e-3] [--epochs 3]
    .venv/bin/python benchmarks/intent_teacher.py --score DIR [DIR ...] [--dev]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from intent.benchmark import as_student_serves, dev_split
from intent.evaluate import bert_f1_each, paired_bootstrap
from intent.model import IntentRefiner, Request, gold_split
from topicfeed.settings import Settings


def main() -> None:
    s = Settings()
    recipe = s.intent.teacher_params()  # the defaults below are the settings' teacher recipe
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="train a teacher and save it here")
    ap.add_argument("--score", type=Path, nargs="+", help="score saved teachers (the first is the reference of the gaps)")
    ap.add_argument("--dev", action="store_true", help="train without the dev slice / score on it (never the test)")
    ap.add_argument("--lora", action="store_true", help="LoRA adapters (peft) instead of every weight")
    ap.add_argument("--lora-r", type=int, default=recipe.lora_r)
    ap.add_argument("--learning-rate", type=float, default=recipe.learning_rate)
    ap.add_argument("--epochs", type=int, default=recipe.epochs)
    ap.add_argument("--batch-size", type=int, default=recipe.batch_size)
    ap.add_argument("--freeze-embeddings", action="store_true", help="full fine-tune but the (tied) embedding and head")
    args = ap.parse_args()
    fit, dev = dev_split()
    if args.out:
        examples = fit if args.dev else gold_split()[0]
        teacher = IntentRefiner.from_base(params=recipe, lora=args.lora, lora_r=args.lora_r, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate)
        if args.freeze_embeddings:
            teacher.model.get_input_embeddings().weight.requires_grad_(False)
        trainable = sum(p.numel() for p in teacher.model.parameters() if p.requires_grad)
        t = time.perf_counter()
        teacher.fit(examples)
        took = time.perf_counter() - t
        teacher.save_pretrained(args.out)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        kind = f"LoRA r {args.lora_r}" if args.lora else "full" + (" (embeddings frozen)" if args.freeze_embeddings else "")
        print(f"teacher {kind}, lr {args.learning_rate:g}, {args.epochs} epochs, batch {args.batch_size}: {trainable / 1e6:.1f}M trainable parameters, "
              f"{len(examples)} examples in {took:.0f}s (loss {teacher.fit_report_['first_loss']} -> {teacher.fit_report_['last_loss']}), peak RSS {peak:.1f} GiB -> {args.out}", flush=True)
    if args.score:
        examples = dev if args.dev else gold_split()[1]
        requests, refs = [Request(e.query, e.titles) for e in examples], [e.refined for e in examples]
        print(f"{'dev slice' if args.dev else 'held-out gold'}: {len(examples)} examples; BERTScore F1, gap to the first teacher [paired 95% interval]", flush=True)
        scores: dict[str, np.ndarray] = {}
        for directory in args.score:
            teacher = IntentRefiner.from_pretrained(directory)
            for how, model in (("copy", teacher.decoding(**as_student_serves(s.intent))), ("free", teacher.decoding(length_penalty=s.intent.length_penalty, end_penalty=s.intent.end_penalty))):
                t = time.perf_counter()
                out = model.predict(requests)
                name = f"{directory.name} {how}"
                scores[name] = bert_f1_each(out, refs)
                words = sum(len(o.split()) for o in out) / len(out)
                first = f"{args.score[0].name} {how}"
                gap = ""
                if name != first:
                    d, low, high = paired_bootstrap(scores[name], scores[first])
                    gap = f"  {d:+.3f} [{low:+.3f}, {high:+.3f}]"
                print(f"  {name:36s} {scores[name].mean():.4f}  {words:.2f} words  ({len(out) / (time.perf_counter() - t):.1f}/s){gap}", flush=True)


if __name__ == "__main__":
    main()
