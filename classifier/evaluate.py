"""Top-1 accuracy and recall@k per taxonomy level, the share of valid outputs, and docs/s.

A classifier returns ranked paths with scores. The ranking at level ``l`` sums the scores of the
returned paths under each level-``l`` ancestor (so two answers in the same tier-1 topic support it
together); the gold topic at level ``l`` is the ancestor of the document's main topic.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
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


def ranked_at_level(docs: Sequence[Doc], preds: Sequence[Sequence[TopicScore | None]], level: int) -> Iterator[tuple[Sequence[TopicScore | None], str, list[str]]]:
    """``(answers, gold, ranking)`` at ``level`` for each document whose main topic is at least that deep."""
    if len(docs) != len(preds):
        raise ValueError(f"{len(docs)} documents but {len(preds)} predictions")
    for d, answers in zip(docs, preds):
        gold = level_path(d.topic, level)
        if gold is not None:
            yield answers, gold, level_ranking(answers, level)


def score(
    name: str, docs: Sequence[Doc], preds: Sequence[Sequence[TopicScore | None]], taxonomy: Taxonomy, *, seconds: float, k: int = 3, levels: Sequence[int] = (1, 2, 3)
) -> EvalResult:
    if len(docs) != len(preds):
        raise ValueError(f"{len(docs)} documents but {len(preds)} predictions")
    out = []
    for level in levels:
        n = hits = found = 0
        for _, gold, ranking in ranked_at_level(docs, preds, level):
            n += 1
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


@dataclass
class ErrorReport:
    """Where a classifier's top-1 answers go wrong at one level: per gold topic, the confusions, and by confidence."""

    level: int
    n: int
    per_topic: list[tuple[str, int, int]]  # (gold topic, documents, wrong), most documents first
    confusions: list[tuple[str, str, int]]  # (gold, answered, count), most frequent first
    by_confidence: list[tuple[float, float, int, int]]  # (low, high, documents, wrong) by the top answer's score

    def format(self, top: int = 10) -> str:
        wrong = sum(w for _, _, w in self.per_topic)
        lines = [f"L{self.level} top-1 errors: {wrong} of {self.n}"]
        lines += [f"  {t:<28} {n:5d} docs  {w:4d} wrong  acc {1 - w / n:.2f}" for t, n, w in self.per_topic]
        lines.append("  most common confusions (gold -> answered): " + ", ".join(f"{g} -> {p} {c}" for g, p, c in self.confusions[:top]))
        lines += [f"  top score in [{lo:.2f}, {hi:.2f}): {n:5d} docs, acc {1 - w / n:.3f}" for lo, hi, n, w in self.by_confidence if n]
        return "\n".join(lines)


def error_report(
    docs: Sequence[Doc], preds: Sequence[Sequence[TopicScore | None]], *, level: int = 1, bins: Sequence[float] = (0.0, 0.5, 0.8, 0.95, 1.0)
) -> ErrorReport:
    """Top-1 errors at ``level`` (ranked as ``score`` ranks them), per gold topic, as confusions and by the top answer's score."""
    n_docs: dict[str, int] = defaultdict(int)
    n_wrong: dict[str, int] = defaultdict(int)
    confusions: dict[tuple[str, str], int] = defaultdict(int)
    edges = list(bins)
    in_bin = [[0, 0] for _ in edges[:-1]]
    n = 0
    for answers, gold, ranking in ranked_at_level(docs, preds, level):
        n += 1
        answered = ranking[0] if ranking else "(none)"
        ok = answered == gold
        n_docs[gold] += 1
        top = max((a.score for a in answers if a is not None), default=0.0)
        b = next((i for i in range(len(edges) - 1) if top < edges[i + 1]), len(edges) - 2)
        in_bin[b][0] += 1
        if not ok:
            n_wrong[gold] += 1
            confusions[(gold, answered)] += 1
            in_bin[b][1] += 1
    per_topic = sorted(((t, c, n_wrong[t]) for t, c in n_docs.items()), key=lambda r: (-r[1], r[0]))
    ranked = sorted(((g, p, c) for (g, p), c in confusions.items()), key=lambda r: (-r[2], r[0], r[1]))
    by_conf = [(edges[i], edges[i + 1], c[0], c[1]) for i, c in enumerate(in_bin)]
    return ErrorReport(level, n, per_topic, ranked, by_conf)
