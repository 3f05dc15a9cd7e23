"""Evaluating refiners side by side: on the held-out gold set and on held-out products of a real
search log (``topicfeed intent eval`` and ``benchmarks/bench_intent.py`` print these rows).

The real log is split by product (``held_out(product_uid)``): a model never saw the held-out
products' queries or titles. On them: (1) the mined (Q, Q*) pairs of those products are references,
ROUGE-L of each model's Q* (refined from Q and the product's title) against them, beside the raw Q's;
(2) for sampled held-out clicks, the clicked product's BM25 MRR over every product title of the log,
searching with Q* against searching with Q; (3) beside the models, ``QuerySuggester``'s one-word
suggestions, learned from the training products' clicks, and a word tagger's search head's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from intent.evaluate import TitleIndex, bert_f1_each, format_row, mean_tokens, paired_bootstrap, report, rouge
from intent.jobs import split_by_product
from intent.mining import Click, MiningReport, mine, read_search_log
from intent.model import Example, Request, gold_split, held_out
from intent.students import Student, load_refiner, new_student
from intent.suggest import QuerySuggester
from topicfeed.settings import IntentSettings, Settings


@dataclass
class LogSplit:
    train: list[Click]
    test: list[Click]
    mined_test: MiningReport
    index: TitleIndex
    bias: set[str]
    rejected: list[tuple[int, str, str]]  # rows of the log that could not be read: (line, field, message)


def split_log(path: Path, share: float = 0.2, min_relevance: float | None = None) -> LogSplit:
    """A real search log's clicks split by product (``held_out`` of the product id); a row rated
    ``min_relevance`` or more is a click (``read_search_log``)."""
    clicks, rejected = read_search_log(path, min_relevance)
    if not clicks:
        raise ValueError(f"{path}: no clicks in the search log (rows rated min_relevance, else IntentSettings.click_relevance, or more)" + (f"; {_rejected(rejected)}" if rejected else ""))
    train, test = split_by_product(clicks, share)
    titles = {c.doc_id: c.title for c in clicks}
    bias = {b.token for b in mine(clicks).bias}
    return LogSplit(train, test, mine(test), TitleIndex(list(titles), list(titles.values())), bias, rejected)


DEV_SHARE = 0.25


def dev_split() -> tuple[list[Example], list[Example]]:
    """Gold-train split for choosing settings without reading the held-out test: (the part to train on,
    the dev slice: a quarter, by the hash of ``"dev:" + query``)."""
    train_gold, _ = gold_split()
    return [e for e in train_gold if not held_out("dev:" + e.query, DEV_SHARE)], [e for e in train_gold if held_out("dev:" + e.query, DEV_SHARE)]


def _rejected(rows: list[tuple[int, str, str]]) -> str:
    line, field, message = rows[0]
    return f"{len(rows)} unreadable rows left out (the first: line {line}, field {field!r}: {message})"


def log_mined_model(params: IntentSettings, mined: MiningReport) -> Student:
    """The log-mined model the student is compared with: the same kind of student (``new_student``)
    trained on the (Q, Q*) pairs mined from a log's training products."""
    return new_student(params).fit([Example(p.query, (p.title,), p.refined_query) for p in mined.pairs])


def as_student_serves(params: IntentSettings) -> dict[str, object]:
    """Decoding overrides under which another refiner (the teacher) decodes as the student serves:
    copy-only, Q's words in order, the configured length preference, skipped title words put back, the
    student's beams and their minimum-Bayes-risk choice."""
    return {
        "copy_only": True,
        "keep_query_order": params.keep_query_order,
        "length_penalty": params.length_penalty,
        "end_penalty": params.end_penalty,
        "fill_title_gaps": params.fill_title_gaps,
        "num_beams": params.num_beams,
        "mbr_temperature": params.mbr_temperature,
    }


def gold_rows(
    models: dict[str, Student],
    share: float = 0.2,
    bias: set[str] | None = None,
    scores: dict[str, np.ndarray] | None = None,
    examples: Sequence[Example] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """One row per model (and the raw query) on the held-out gold set, or on ``examples`` (all of
    them) where given; ``scores``, when given, is filled with each row's per-example BERTScore F1, for
    ``paired_bootstrap`` of two rows' gap (on the 175 held-out examples its 95% interval is about
    ±0.02 wide, on the 43 of ``gold.tsv`` alone ±0.03: how far a bar such as "student >= teacher -
    0.02" can be read). ``progress``: called with each batch's count of refinements."""
    test = list(examples) if examples is not None else gold_split(share=share)[1]
    queries, refs = [e.query for e in test], [e.refined for e in test]
    outputs = {"raw query": [e.query.lower() for e in test]}
    outputs.update({name: m.predict([Request(e.query, e.titles) for e in test], progress=progress) for name, m in models.items()})
    rows = []
    for name, preds in outputs.items():
        each = bert_f1_each(preds, refs)
        rows.append({**report(name, queries, preds, refs, bias, with_bert=False), "bertscore_f1": float(each.mean()) if len(each) else 0.0})
        if scores is not None:
            scores[name] = each
    return rows


def log_rows(
    models: dict[str, Student], split: LogSplit, samples: int = 500, seed: int = 0, suggester: QuerySuggester | None = None, progress: Callable[[int], None] | None = None
) -> list[dict]:
    """One row per model (and the raw query) on the held-out products of the real log; with
    ``suggester`` (fitted on ``split.train``), a row for its one-word suggestions; ``progress`` as
    ``gold_rows``'; a word tagger with a search head gets a second row, its
    re-search suggestions (``WordTagger.suggest``)."""
    pairs = split.mined_test.pairs
    sample = random.Random(seed).sample(split.test, min(samples, len(split.test)))
    rows = []
    raw_mrr = split.index.mrr([c.query for c in sample], [c.doc_id for c in sample])
    rows.append({"model": "raw query", "rougeL_vs_mined": rouge([p.query for p in pairs], [p.refined_query for p in pairs])["rougeL"], "mrr": raw_mrr, "mrr_ratio": 1.0, "mean_tokens": mean_tokens([c.query for c in sample])})

    def row(name: str, predict: Callable[[list[Request]], list[str]]) -> dict:
        mined_out = predict([Request(p.query, (p.title,)) for p in pairs])
        out = predict([Request(c.query, (c.title,)) for c in sample])
        mrr = split.index.mrr(out, [c.doc_id for c in sample])
        return {"model": name, "rougeL_vs_mined": rouge(mined_out, [p.refined_query for p in pairs])["rougeL"], "mrr": mrr, "mrr_ratio": mrr / max(raw_mrr, 1e-9), "mean_tokens": mean_tokens(out)}

    if suggester is not None:
        rows.append(row("log word suggestion", suggester.predict))
    for name, m in models.items():
        rows.append({**row(name, lambda requests, m=m: m.predict(requests, progress=progress)), "key_repairs": m.last_repairs_})
        if getattr(m, "has_search_head", False):
            rows.append(row(f"{name}, search head", m.suggest))
    return rows


def throughput(model: Student, requests: Sequence[Request], batch_size: int = 32, passes: int = 3) -> tuple[float, float]:
    """(refinements/s in batches, the median of ``passes`` passes; p95 seconds of one fresh request alone)."""
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        model.predict(requests, batch_size=batch_size)
        rates.append(len(requests) / (time.perf_counter() - start))
    rate = sorted(rates)[len(rates) // 2]
    one = []
    for r in requests[:40]:
        t = time.perf_counter()
        model.predict([r], batch_size=1)
        one.append(time.perf_counter() - t)
    one.sort()
    return rate, one[int(0.95 * (len(one) - 1))]


def model_names(model_dirs: Sequence[Path]) -> list[str]:
    """Each refiner's name in the rows: its directory's name, or its whole path where two share a
    name; the same directory twice is an error."""
    paths = [Path(d) for d in model_dirs]
    if len({p.resolve() for p in paths}) < len(paths):
        raise ValueError(f"the same model directory is given twice: {[str(p) for p in paths]}")
    names = [p.name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


@dataclass
class Evaluation:
    """What ``intent eval`` measured: rows as ``gold_rows`` and ``log_rows`` write them, and each
    model's BERTScore gap to the first model with its paired bootstrap interval."""

    gold_name: str  # which labelled searches: the held-out gold set, or the file given
    examples: int
    precision: str
    gold: list[dict]
    gaps: list[dict]  # {"model", "baseline", "gap", "low", "high"}
    log_name: str | None = None  # the real search log, None where it was not read
    log_clicks: int = 0  # its held-out clicks
    log_pairs: int = 0  # its held-out products' mined pairs (ROUGE-L references)
    log_samples: int = 0  # held-out clicks sampled for MRR
    log: list[dict] = field(default_factory=list)
    by_category: dict[str, dict[str, float]] = field(default_factory=dict)  # category -> row's model -> mean BERTScore F1 (examples with a category)
    rejected: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)  # unreadable lines per input file

    def lines(self) -> list[str]:
        out = [f"{self.gold_name} ({self.examples} examples; BERTScore: all-MiniLM-L6-v2 layer 6; models served in {self.precision}):"]
        out += ["  " + format_row(r) for r in self.gold]
        out += [f"  BERTScore F1 {g['model']} - {g['baseline']}: {g['gap']:+.3f} (paired bootstrap 95% interval {g['low']:+.3f} .. {g['high']:+.3f})" for g in self.gaps]
        if self.log_name is not None:
            rejected = f", {_rejected(self.rejected[self.log_name])}" if self.rejected.get(self.log_name) else ""
            out.append(f"real search log {self.log_name}, held-out products ({self.log_clicks:,} clicks, {self.log_pairs} mined pairs, {self.log_samples} sampled for MRR{rejected}):")
            out += ["  " + format_row(r) for r in self.log]
        return out


def evaluate_models(
    settings: Settings,
    model_dirs: Sequence[Path],
    search_log: Path | None,
    holdout: float = 0.2,
    samples: int = 500,
    gold: Sequence[Example] | None = None,
    gold_name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Saved refiners side by side, served as configured: on the held-out gold set (or on ``gold``,
    labelled searches of the user's, all of them evaluated), and on ``search_log``'s held-out
    products unless it is ``None``; ``progress``: called with each batch's count of refinements."""
    precision = settings.intent.serving_precision  # scored as served
    models = {name: load_refiner(d, **settings.intent.serving()) for name, d in zip(model_names(model_dirs), model_dirs, strict=True)}
    split = split_log(search_log, holdout, settings.intent.click_relevance) if search_log is not None else None
    examples = list(gold) if gold is not None else gold_split(share=holdout)[1]
    if not examples:
        raise ValueError("no labelled searches to evaluate on")
    scores: dict[str, np.ndarray] = {}
    rows = gold_rows(models, holdout, split.bias if split else None, scores, examples, progress)
    names = list(models)
    gaps = []
    for name in names[1:]:
        gap, low, high = paired_bootstrap(scores[name], scores[names[0]])
        gaps.append({"model": name, "baseline": names[0], "gap": gap, "low": low, "high": high})
    result = Evaluation(gold_name or "held-out gold", len(examples), precision, rows, gaps)
    categories = np.array([e.category for e in examples])
    for category in sorted(set(categories) - {""}):
        result.by_category[category] = {name: float(each[categories == category].mean()) for name, each in scores.items()}
    if split is not None and search_log is not None:
        suggester = QuerySuggester.from_params(settings.intent).fit(split.train) if split.train else None
        result.log_name, result.log_clicks, result.log_pairs = search_log.name, len(split.test), len(split.mined_test.pairs)
        result.log_samples = min(samples, len(split.test))
        result.log = log_rows(models, split, samples, suggester=suggester, progress=progress)
        if split.rejected:
            result.rejected[search_log.name] = split.rejected
    return result
