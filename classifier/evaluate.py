"""Top-1 accuracy and recall@k per taxonomy level, the share of valid outputs, and docs/s.

A classifier returns ranked paths with scores. The ranking at level ``l`` sums the scores of the
returned paths under each level-``l`` ancestor (so two answers in the same tier-1 topic support it
together); the gold topic at level ``l`` is the ancestor of the document's main topic.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from classifier.data import Doc, level_path
from classifier.model import TopicScore
from topicfeed.taxonomy import Taxonomy


class Predictor(Protocol):
    def predict(self, docs: Sequence[Doc], *, k: int = 3) -> list[list[TopicScore | None]]: ...


@dataclass
class LevelScore:
    level: int
    n: int  # documents whose main topic is at least this deep
    top1: float
    recall: float


@dataclass
class EvalResult:
    name: str
    n_docs: int
    k: int
    levels: list[LevelScore]
    valid_share: float  # answers that are taxonomy nodes, over all k answers of all documents
    docs_per_s: float
    extra: dict[str, float] = field(default_factory=dict)

    def level(self, level: int) -> LevelScore | None:
        return next((s for s in self.levels if s.level == level), None)

    def as_dict(self) -> dict:
        out: dict = {"name": self.name, "docs": self.n_docs, "k": self.k, "valid_share": round(self.valid_share, 4), "docs_per_s": round(self.docs_per_s, 1)}
        for s in self.levels:
            out[f"l{s.level}_n"] = s.n
            out[f"l{s.level}_top1"] = round(s.top1, 4) if s.n else None
            out[f"l{s.level}_recall@{self.k}"] = round(s.recall, 4) if s.n else None
        out.update(self.extra)
        return out


def level_ranking(answers: Sequence[TopicScore | None], level: int) -> list[str]:
    totals: dict[str, float] = defaultdict(float)
    first: dict[str, int] = {}
    for rank, a in enumerate(answers):
        if a is None:
            continue
        anc = level_path(a.path, level)
        if anc is not None:
            totals[anc] += a.score
            first.setdefault(anc, rank)
    return sorted(totals, key=lambda p: (-totals[p], first[p]))


def score(
    name: str, docs: Sequence[Doc], preds: Sequence[Sequence[TopicScore | None]], taxonomy: Taxonomy, *, seconds: float, k: int = 3, levels: Sequence[int] = (1, 2, 3)
) -> EvalResult:
    if len(docs) != len(preds):
        raise ValueError(f"{len(docs)} documents but {len(preds)} predictions")
    out = []
    for level in levels:
        n = hits = found = 0
        for d, answers in zip(docs, preds):
            gold = level_path(d.topic, level)
            if gold is None:
                continue
            n += 1
            ranking = level_ranking(answers, level)
            hits += bool(ranking) and ranking[0] == gold
            found += gold in ranking[:k]
        out.append(LevelScore(level, n, hits / n if n else 0.0, found / n if n else 0.0))
    answers = [a for p in preds for a in p]
    valid = sum(a is not None and a.path in taxonomy for a in answers)
    total = max(len(answers), 1)
    return EvalResult(name, len(docs), k, out, valid / total, len(docs) / seconds if seconds > 0 else float("inf"))


def evaluate(name: str, predictor: Predictor, docs: Sequence[Doc], taxonomy: Taxonomy, *, k: int = 3, **predict_kwargs) -> EvalResult:
    start = time.perf_counter()
    preds = predictor.predict(docs, k=k, **predict_kwargs)
    return score(name, docs, preds, taxonomy, seconds=time.perf_counter() - start, k=k)


def format_results(results: Sequence[EvalResult]) -> str:
    """A plain-text table: one row per classifier."""
    levels = [s.level for s in results[0].levels] if results else []
    k = results[0].k if results else 3
    head = ["classifier", *(c for lv in levels for c in (f"L{lv} top-1", f"L{lv} R@{k}")), "valid", "docs/s"]
    rows = [head]
    for r in results:
        row = [r.name]
        for lv in levels:
            s = r.level(lv)
            row += [f"{s.top1:.3f}", f"{s.recall:.3f}"] if s and s.n else ["n/a", "n/a"]
        row += [f"{r.valid_share:.1%}", f"{r.docs_per_s:.1f}"]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows)
