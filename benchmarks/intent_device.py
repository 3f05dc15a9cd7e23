"""The refiner on an accelerator: the teacher's fine-tuning and batch refinement throughput there.

One short, prepared run for a lent GPU (the issue's "when a device is lent" bar), and the same on the
CPU for comparison. Trains the teacher by its recipe (``IntentSettings.teacher_params``: LoRA on
gold-train) on ``--device``, timing it; then refines ``--requests`` searches made from the held-out
gold examples (repeated to that count) in batches of ``--batch-size``, with the teacher as it labels
(free decoding, float32), as the student serves (copy-only, bfloat16) and, with ``--student DIR``,
with a saved student; ``throughput`` reports the median of three passes and one request's p95. With
``--baseline-requests N``, the same decodings on the CPU on N requests, in the same process, and the
ratio. BERTScore is not read here: ``benchmarks/intent_gap.py`` reads quality, and decoding on a GPU
changes no Q* but by rounding.

    python benchmarks/intent_device.py --device cuda [--base DIR|FILE.gguf] [--student DIR] [--json F]

A machine without the PyPI GGUF package needs ``--base``: a Gemma 3 270M directory or ``.gguf`` file
carried there (or any causal LM: the numbers then describe that model).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from intent.benchmark import as_student_serves, throughput
from intent.model import IntentRefiner, Request, gold_split
from topicfeed.settings import Settings


def peak_memory_mb(device: torch.device) -> float:
    """The peak memory of the run so far: the accelerator's allocations, or the process's (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def refinements_per_s(refiner: IntentRefiner, requests: list[Request], batch_size: int) -> dict[str, float]:
    rate, p95 = throughput(refiner, requests, batch_size=batch_size)
    return {"refinements_per_s": round(rate, 2), "one_request_p95_ms": round(1000 * p95, 1)}


def main() -> None:
    s = Settings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="torch device (cuda, cuda:1, cpu)")
    ap.add_argument("--base", help=f"the teacher's base; default: {s.intent.teacher_base}")
    ap.add_argument("--epochs", type=int, help="teacher epochs; default: the teacher recipe's")
    ap.add_argument("--student", type=Path, help="a saved student to time as well")
    ap.add_argument("--requests", type=int, default=512, help="searches refined per pass")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--baseline-requests", type=int, default=0, help="also on the CPU, on this many searches (0: no baseline)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    recipe = s.intent.teacher_params().model_copy(update={"device": args.device, **({"epochs": args.epochs} if args.epochs else {})})
    device = torch.device(args.device)
    train, test = gold_split()
    requests = [Request(e.query, e.titles) for e in test]
    requests = (requests * (args.requests // len(requests) + 1))[: args.requests]
    results: dict[str, object] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "torch": torch.__version__}

    start = time.perf_counter()
    teacher = IntentRefiner.from_base(args.base, params=recipe).fit(train)
    results["teacher_fit"] = {"examples": len(train), "epochs": recipe.epochs, "seconds": round(time.perf_counter() - start, 1), "peak_mb": round(peak_memory_mb(device)), **(teacher.fit_report_ or {})}
    print(f"teacher ({args.base or recipe.base_model}, {'LoRA' if recipe.lora else 'full'}) on {len(train)} gold examples, {recipe.epochs} epochs on {results['device']}: {results['teacher_fit']['seconds']}s, peak {results['teacher_fit']['peak_mb']} MB", flush=True)

    decodings = {"teacher, as it labels (free, float32)": teacher, "teacher, decoding as the student serves (copy-only, float32)": teacher.decoding(**as_student_serves(s.intent))}
    if args.student:
        decodings["student " + args.student.name] = IntentRefiner.from_pretrained(args.student, serving_precision=s.intent.serving_precision, device=args.device)
    rows = {}
    for name, refiner in decodings.items():
        rows[name] = refinements_per_s(refiner, requests, args.batch_size)
        print(f"  {name}: {rows[name]['refinements_per_s']}/s in batches of {args.batch_size} ({len(requests)} searches), one request p95 {rows[name]['one_request_p95_ms']} ms", flush=True)
    if args.baseline_requests and device.type != "cpu":
        few = requests[: args.baseline_requests]
        for name, refiner in decodings.items():
            refiner.model.to("cpu")
            cpu = refinements_per_s(refiner, few, args.batch_size)
            rows[name] |= {"cpu_" + k: v for k, v in cpu.items()} | {"speedup": round(rows[name]["refinements_per_s"] / max(cpu["refinements_per_s"], 1e-9), 1)}
            print(f"  {name} on the CPU: {cpu['refinements_per_s']}/s ({len(few)} searches): {rows[name]['speedup']}x", flush=True)
    results["refinement"] = rows
    results["peak_mb"] = round(peak_memory_mb(device))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
