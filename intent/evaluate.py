"""How good a refinement is: overlap with a reference, meaning, kept key tokens, bias, retrieval.

* ROUGE-1/2/L F1 (``rouge-score``, stemmed) against the reference Q*.
* BERTScore F1 (``bert-score``) with all-MiniLM-L6-v2 from its PyPI package, layer 6 of 6 (its last),
  no baseline rescaling: an encoder that runs here with no download.
* key-token retention: share of outputs that keep every key token of Q (``intent.text.key_tokens``).
* bias share: share of outputs that add a mined bias pattern (``intent.mining``) Q did not have.
* retrieval: BM25 (``bm25s``) over the catalog's titles; the MRR of the clicked document when
  searching with Q* against searching with Q. A refinement that only appends rare title words inflates
  MRR and reads badly, so it is reported beside ROUGE, with Q* capped in length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from intent.text import keeps_keys, stem, tokens


def rouge(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    got = [scorer.score(r, p) for p, r in zip(preds, refs)]
    return {k: float(np.mean([g[k].fmeasure for g in got])) if got else 0.0 for k in ("rouge1", "rouge2", "rougeL")}


_SCORER = None


def bert_f1(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Mean BERTScore F1 with all-MiniLM-L6-v2 (layer 6, see the module docstring)."""
    return float(bert_f1_each(preds, refs).mean()) if preds else 0.0


def bert_f1_each(preds: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """BERTScore F1 of each prediction against its reference (``bert_f1``'s scorer)."""
    global _SCORER
    if not preds:
        return np.zeros(0)
    if _SCORER is None:
        from bert_score import BERTScorer
        from transformers.utils import logging as hf_logging

        from classifier.lm import minilm_path

        hf_logging.set_verbosity_error()
        _SCORER = BERTScorer(model_type=str(minilm_path()), num_layers=6, batch_size=64, device="cpu")
    _, _, f = _SCORER.score(list(preds), list(refs))
    return f.numpy().astype(float)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 10_000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired examples and its percentile bootstrap interval (examples resampled
    with replacement): (mean, low, high)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        raise ValueError("paired_bootstrap: no examples")
    idx = np.random.default_rng(seed).integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    tail = (1 - level) / 2
    return float(d.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def key_retention(queries: Sequence[str], preds: Sequence[str]) -> float:
    return float(np.mean([keeps_keys(q, p) for q, p in zip(queries, preds)])) if preds else 0.0


def bias_share(queries: Sequence[str], preds: Sequence[str], bias: set[str]) -> float:
    """Share of outputs that add a bias token that Q did not have."""
    if not preds:
        return 0.0
    return float(np.mean([bool((set(tokens(p)) - set(tokens(q))) & bias) for q, p in zip(queries, preds)]))


def mean_tokens(preds: Sequence[str]) -> float:
    return float(np.mean([len(tokens(p)) for p in preds])) if preds else 0.0


@dataclass
class TitleIndex:
    """BM25 over titles (stemmed word tokens); ``ranks(queries, docs)`` -> rank of each clicked doc."""

    ids: list[str]

    def __init__(self, ids: Sequence[str], titles: Sequence[str]) -> None:
        import bm25s

        self.ids = list(ids)
        self.position = {d: i for i, d in enumerate(self.ids)}
        self.bm25 = bm25s.BM25()
        self.bm25.index([[stem(t) for t in tokens(x)] or ["_"] for x in titles], show_progress=False)

    def rank(self, query: str, doc_id: str) -> int:
        """1-based rank of ``doc_id`` for ``query`` (ties count against it: pessimistic)."""
        scores = self.bm25.get_scores([stem(t) for t in tokens(query)])
        mine = scores[self.position[doc_id]]
        return int((scores >= mine).sum()) if mine > 0 else len(self.ids)

    def mrr(self, queries: Sequence[str], docs: Sequence[str]) -> float:
        return float(np.mean([1.0 / self.rank(q, d) for q, d in zip(queries, docs)])) if queries else 0.0


def report(name: str, queries: Sequence[str], preds: Sequence[str], refs: Sequence[str], bias: set[str] | None = None, with_bert: bool = True) -> dict[str, float]:
    """Every figure of the module docstring except retrieval, as one row."""
    row = {"model": name, **rouge(preds, refs), "key_retention": key_retention(queries, preds), "bias_share": bias_share(queries, preds, bias or set()), "mean_tokens": mean_tokens(preds)}
    if with_bert:
        row["bertscore_f1"] = bert_f1(preds, refs)
    return row


def format_row(row: dict[str, object]) -> str:
    return " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
