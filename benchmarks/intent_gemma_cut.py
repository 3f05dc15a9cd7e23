"""Speed of Gemma 3 270M cut to its first K layers as the intent student (untrained weights: speed
only, the question being whether such a student could serve >= 30 refinements/s on these 2 cores).

The cut model decodes as the default student serves (int8, copy-only, the configured beams) 64
held-out Home Depot requests in batches of 32. Measured 2026-12-06: 4 layers, 190M parameters (168M
of them the 262k-token embedding and head), 7.4-8.1 refinements/s: the head decides, so such a student
needs a pruned vocabulary first (docs/intent.md).

    .venv/bin/python benchmarks/intent_gemma_cut.py [--layers 4 [6 ...]]
"""

from __future__ import annotations

import argparse
import time

from intent.benchmark import split_log
from intent.model import IntentRefiner, Request
from topicfeed.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, nargs="+", default=[4])
    ap.add_argument("--requests", type=int, default=64)
    args = ap.parse_args()
    s = Settings()
    split = split_log(s.shared_data_dir / "homedepot" / "search_log.tsv")
    requests = [Request(c.query, (c.title,)) for c in split.test[: args.requests]]
    for k in args.layers:
        r = IntentRefiner.from_base("gemma3-270m", params=s.intent)
        m = r.model
        m.model.layers = m.model.layers[:k]
        m.config.num_hidden_layers = k
        if getattr(m.config, "layer_types", None):
            m.config.layer_types = m.config.layer_types[:k]
        params = sum(p.numel() for p in m.parameters())
        m.eval()
        r.quantize()
        r.predict(requests[:8])  # warm-up
        t = time.perf_counter()
        r.predict(requests, batch_size=32)
        rate = len(requests) / (time.perf_counter() - t)
        print(f"Gemma 3 270M, first {k} layers: {params / 1e6:.0f}M parameters; int8 copy-only: {rate:.1f} refinements/s (bar >= 30)", flush=True)


if __name__ == "__main__":
    main()
