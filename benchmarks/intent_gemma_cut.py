"""Gemma 3 270M cut to K of its layers as the intent student: how fast it serves, and (saved with
``--out``) what it learns. The question: could a larger pretrained student than MiniLM serve >= 30
refinements/s on these 2 cores and close the gap to the teacher?

Each cut model decodes as the default student serves (copy-only, the configured beams and serving
precision) held-out Home Depot requests in batches of 32, beside the default MiniLM student when
``--student`` is given (same process). ``--from DIR`` cuts a trained refiner (the teacher, its LoRA
merged) instead of the base model. ``--prune-vocab`` keeps only the tokens that a corpus uses (the
Home Depot log's training side, the MIND titles and abstracts, gold-train), closed under the BPE
merges that build them, so that the tokenizer still writes every word it wrote before, and any
other word in smaller pieces (byte fallback for the rest); the embedding and the tied head keep
those rows only. ``--layers 0+1+16+17`` keeps those layers.

Measured 2026-12-06 (docs/intent.md): whole vocabulary, 4 layers, 190M parameters (168M of them
the 262k-token embedding and head): 7.4-8.1 refinements/s int8. The teacher cut, its vocabulary
pruned to 48,149 tokens (``--from TEACHER --prune-vocab --layers 4 2 --student DIR``), bfloat16:
4 layers (53M parameters) 30.4/s, 2 layers 40.1/s, the MiniLM student 46.7/s. The first 4 layers,
trained by the default recipe for 4 epochs (875 s; ``TOPICFEED_INTENT__BASE_MODEL=OUT/L0_1_2_3
TOPICFEED_INTENT__EPOCHS=4 benchmarks/intent_labels.py --cache LABELS --out DIR``), scored 0.737
BERTScore F1 on the 175 held-out gold examples, against MiniLM's 0.830: not a better student.

    .venv/bin/python benchmarks/intent_gemma_cut.py [--layers 4 [2 ...]] [--from DIR] [--prune-vocab] [--out DIR] [--student DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from intent.benchmark import split_log, throughput
from intent.model import IntentRefiner, Request, gold_split
from topicfeed.settings import Settings


def pruned_tokenizer(tokenizer_json: dict, tokenizer: object, texts: Iterable[str]) -> tuple[dict, list[int]]:
    """(tokenizer.json of a BPE tokenizer cut to the tokens ``texts`` use, the kept ids in order).
    Kept: special tokens, byte-fallback and single-character tokens, every token of the texts, and
    every token a merge needs to build them (all of a token's merges, so the tokenizer segments the
    texts as before)."""
    model = tokenizer_json["model"]
    vocab: dict[str, int] = model["vocab"]
    name = {i: s for s, i in vocab.items()}
    keep = set(range(5))
    texts = list(texts)
    for ids in tokenizer([" " + t for t in texts] + texts, add_special_tokens=False)["input_ids"]:
        keep.update(ids)
    keep |= {i for s, i in vocab.items() if (s.startswith("<0x") and len(s) == 6) or (len(s) == 1 and ord(s) < 0x250)}
    makers: dict[str, list[tuple[str, str]]] = {}
    for a, b in model["merges"]:
        makers.setdefault(a + b, []).append((a, b))
    todo = [name[i] for i in keep if i in name]
    while todo:
        for part in (p for pair in makers.get(todo.pop(), ()) for p in pair):
            if part in vocab and vocab[part] not in keep:
                keep.add(vocab[part])
                todo.append(part)
    kept = sorted(keep)
    new = {old: k for k, old in enumerate(kept)}
    out = copy.deepcopy(tokenizer_json)
    out["model"]["vocab"] = {name[o]: new[o] for o in kept if o in name}
    names = set(out["model"]["vocab"])
    out["model"]["merges"] = [[a, b] for a, b in model["merges"] if a in names and b in names and a + b in names]
    out["added_tokens"] = [dict(t, id=new[t["id"]]) for t in tokenizer_json["added_tokens"] if t["id"] in new]
    return out, kept


def news_text(path: Path) -> list[str]:
    """Titles and abstracts of a news catalog in MIND's news.tsv format."""
    rows = (line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf-8").splitlines())
    return [text for row in rows for text in row[3:5] if text]


def cut(refiner: IntentRefiner, layers: Sequence[int], vocab: tuple[dict, list[int]] | None, directory: Path) -> Path:
    """Save the refiner's model with only ``layers`` (renumbered) and, with ``vocab``, only those token rows."""
    m = copy.deepcopy(refiner.model)
    m.model.layers = torch.nn.ModuleList([m.model.layers[i] for i in layers])
    m.config.layer_types = [m.config.layer_types[i] for i in layers]
    m.config.num_hidden_layers = len(layers)
    if vocab is not None:
        rows = m.get_input_embeddings().weight.data[torch.tensor(vocab[1])].clone()
        m.resize_token_embeddings(len(vocab[1]))
        m.get_input_embeddings().weight.data.copy_(rows)
        m.tie_weights()
    m.save_pretrained(directory)  # reloaded from config: the layers' indices follow the new numbering
    refiner.tokenizer.save_pretrained(directory)
    if vocab is not None:
        (directory / "tokenizer.json").write_text(json.dumps(vocab[0], ensure_ascii=False))
    return directory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", nargs="+", default=["4"], help="K (the first K layers) or i+j+... (those layers)")
    ap.add_argument("--from", dest="source", type=Path, help="a trained refiner directory to cut (default: the Gemma 3 270M base)")
    ap.add_argument("--prune-vocab", action="store_true", help="keep only the tokens a corpus uses (see above)")
    ap.add_argument("--out", type=Path, help="where the cut models are saved (one directory per layer choice)")
    ap.add_argument("--student", type=Path, help="a trained student to time beside them")
    ap.add_argument("--requests", type=int, default=128)
    args = ap.parse_args()
    s = Settings()
    split = split_log(s.shared_data_dir / "homedepot" / "search_log.tsv")
    requests = [Request(c.query, (c.title,)) for c in split.test[: args.requests]]
    source = IntentRefiner.from_pretrained(args.source, serving_precision="float32") if args.source else IntentRefiner.from_base("gemma3-270m", params=s.intent)
    vocab = None
    if args.prune_vocab:
        train_gold, _ = gold_split()
        texts = [t for c in split.train for t in (c.query, c.title)] + news_text(s.shared_data_dir / "mind" / "news_train.tsv")
        texts += [t for e in train_gold for t in (e.query, *e.titles, e.refined)] + ["query: q\ntitles: a | b\nrefined query:"]
        with tempfile.TemporaryDirectory() as tmp:
            source.tokenizer.save_pretrained(tmp)
            vocab = pruned_tokenizer(json.loads((Path(tmp) / "tokenizer.json").read_text()), source.tokenizer, texts)
        print(f"vocabulary pruned to {len(vocab[1]):,} of {len(source.tokenizer):,} tokens", flush=True)
    out = args.out or Path(tempfile.mkdtemp(prefix="gemma-cut-"))
    models: dict[str, IntentRefiner] = {}
    if args.student:
        models["student " + args.student.name] = IntentRefiner.from_pretrained(args.student, serving_precision=s.intent.serving_precision)
    for spec in args.layers:
        layers = [int(x) for x in spec.split("+")] if "+" in spec else list(range(int(spec)))
        directory = cut(source, layers, vocab, out / ("L" + "_".join(map(str, layers))))
        models[f"layers {spec} ({directory})"] = IntentRefiner.from_base(directory, params=s.intent).for_serving(s.intent.serving_precision)
    del source
    for name, model in models.items():
        params = sum(p.numel() for p in model.model.parameters())
        model.predict(requests[:8])  # warm-up
        rate, p95 = throughput(model, requests, passes=2)
        print(f"{name}: {params / 1e6:.0f}M parameters; {s.intent.serving_precision} copy-only {rate:.1f} refinements/s, one request p95 {p95 * 1e3:.0f} ms (bar >= 30/s)", flush=True)


if __name__ == "__main__":
    main()
