"""A small causal LM of our own, randomly initialised, to compare with the MiniLM warm start.

Writes a 4-layer Llama (hidden 256, 4 heads, tied embeddings, all-MiniLM-L6-v2's tokenizer: about
11M parameters) to ``--out``. Train it with the classifier's recipe and evaluate it on the same dev
split as the default:

    .venv/bin/python benchmarks/small_lm.py --out /tmp/small-base
    TOPICFEED_CLASSIFIER__BASE_MODEL=/tmp/small-base TOPICFEED_CLASSIFIER__LEARNING_RATE=1e-3 \\
        TOPICFEED_CLASSIFIER__EPOCHS=10 topicfeed classify train --out /tmp/small
    topicfeed classify eval --model /tmp/small

The README's recipe table has the figures; the default recipe stays the MiniLM warm start.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from classifier.lm import minilm_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(minilm_path())
    config = LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=args.hidden, intermediate_size=3 * args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 64, num_key_value_heads=args.hidden // 64, max_position_embeddings=512,
        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters -> {args.out}")


if __name__ == "__main__":
    main()
