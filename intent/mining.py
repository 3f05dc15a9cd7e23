"""Mining (Q, Q*) pairs from search logs: which longer query did users type for the same document?

For each clicked document, every query that led to a click on it. Two queries of one document are in
a *containment* relation when one's tokens are a proper subset of the other's (after normalisation,
``intent.text``); the longer one is a candidate refinement Q* of the shorter Q. Users also add words
that say nothing about the document ("near me", "review", sizes): a *bias pattern* is an added token
that is added for many different documents and is absent from nearly all of their titles, found
statistically over the whole log (``bias_patterns``), dropped from every candidate and reported.
Among the clean candidates, the most informative is the one whose added words are grounded in the
document (in its title, weighted by their rarity over the catalog: IDF), against the added words that
are not (typos, chatter); ties go to the more clicked, then the shorter, then the first in order.

Inputs: ``clicks_from_lake`` (search clicks of the lake, with their query) or
``read_search_log`` (a search log such as Home Depot's, TSV or CSV: product_uid, product_title,
search_term, relevance, or other logs' names for them; a rating of ``IntentSettings.click_relevance``
(2) or more counts as a click; unreadable rows reported, not fatal). ``entity_searches`` makes searches of another kind from
a news catalog in MIND's ``news.tsv`` format, for the teacher to label (not for mining): each named
entity of a title (``title_entities``' surface forms, as users type names) is a query that clicks the
articles whose titles name it, in the article's category.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from intent.text import normalize, stem, stems
from topicfeed.adapters.mind import NEWS_COLUMNS
from topicfeed.lake import Lake
from topicfeed.settings import IntentSettings, Settings


@dataclass(frozen=True)
class Click:
    """A query that led to a click on a document."""

    query: str
    doc_id: str
    title: str
    user_id: str = ""
    ts: datetime | None = None
    category: str = ""  # the document's category (its first topic's top level), when known


@dataclass(frozen=True)
class MinedPair:
    query: str  # normalised Q
    refined_query: str  # Q*, bias patterns removed
    doc_id: str
    title: str
    support: int  # clicks of Q* on the document
    gain: float  # grounded IDF of the added words minus ungrounded


@dataclass(frozen=True)
class BiasPattern:
    token: str
    documents: int  # documents for which users added it
    absent_share: float  # share of those documents whose title lacks it
    position: str  # where it is added most: "suffix", "prefix" or "inside"


@dataclass
class MiningReport:
    pairs: list[MinedPair]
    bias: list[BiasPattern]
    clicks: int = 0
    documents: int = 0
    queries: int = 0
    containment_pairs: int = 0
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        top = ", ".join(f"'{b.token}' ({b.documents} docs, {b.position})" for b in self.bias[:12]) or "none"
        return (
            f"clicks={self.clicks:,} documents={self.documents:,} distinct (doc, query)={self.queries:,} "
            f"containment pairs={self.containment_pairs:,} mined (Q, Q*)={len(self.pairs):,}\n"
            f"bias patterns found ({len(self.bias)}): {top}"
        )

    def as_dict(self) -> dict:
        return {"pairs": [asdict(p) for p in self.pairs], "bias": [asdict(b) for b in self.bias], "clicks": self.clicks, "documents": self.documents}


SEARCH_LOG_COLUMNS = ("product_uid", "product_title", "search_term", "relevance")
CLICK_LOG_COLUMNS = SEARCH_LOG_COLUMNS[1:3]  # what a log needs at least: a query and the clicked title
CLICK_FLAGS = ("click", "clicked", "is_click")  # a rating column that is 0/1 (or true/false): 1 is a click
# Other logs' names for the same fields, matched case-blind (the first found wins): Kaggle's CrowdFlower
# search relevance ("query", "median_relevance"), click logs ("clicked"), item or document ids.
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "search_term": ("search_term", "query", "search_query", "keyword", "keywords"),
    "product_title": ("product_title", "title", "item_title", "doc_title", "product_name"),
    "product_uid": ("product_uid", "product_id", "item_id", "doc_id", "document_id", "asin", "sku"),
    "relevance": ("relevance", "median_relevance", "rating", "grade", *CLICK_FLAGS),
}
log = logging.getLogger(__name__)


def _decode(data: bytes) -> str:
    """UTF-8 (a byte-order mark dropped), else Windows-1252: Kaggle ships Home Depot's CSV in Latin-1."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _columns(header: Iterable[str]) -> dict[str, str]:
    """Our field -> the log's column (``COLUMN_NAMES``, case-blind) for the fields the log has."""
    by_lower = {h.strip().lower(): h for h in header if h}
    found = {}
    for field_name, names in COLUMN_NAMES.items():
        hit = next((by_lower[n] for n in names if n in by_lower), None)
        if hit is not None:
            found[field_name] = hit
    return found


def _rating(raw: str, flag: bool) -> float:
    """A rating as a number; a click flag's true/false/yes/no too. ValueError if it is neither."""
    text = raw.strip().lower()
    if flag and text in ("true", "yes", "false", "no"):
        return 1.0 if text in ("true", "yes") else 0.0
    return float(text)


def read_search_log(path: Path, min_relevance: float | None = None) -> tuple[list[Click], list[tuple[int, str, str]]]:
    """Rated (query, product) pairs of a search log with the columns ``SEARCH_LOG_COLUMNS`` (Home
    Depot's; other columns ignored, any order; other logs' names for them, ``COLUMN_NAMES``, taken too):
    a rating of ``min_relevance`` (default ``IntentSettings.click_relevance``) or more is a click, and
    a 0/1 click flag (``CLICK_FLAGS``) of 1. A log without a rating is a click log: every row is a click. A log without product ids takes the title as
    the product (a warning says each of these). Tab-separated, or comma-separated (quoted) as Kaggle
    ships it; UTF-8, else Windows-1252. A header without a query or a title is an error that names
    them; a row that cannot be read comes back as (line, field, message), the field named as the log
    names it, and the others go through."""
    text = _decode(Path(path).read_bytes())
    delimiter = "\t" if "\t" in text.split("\n", 1)[0] else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = reader.fieldnames or ()
    cols = _columns(header)
    missing = [c for c in CLICK_LOG_COLUMNS if c not in cols]
    if missing:
        wanted = "; ".join(f"{c} (or {', '.join(COLUMN_NAMES[c][1:])})" for c in missing)
        raise ValueError(f"{path}: not a search log: column(s) {', '.join(missing)} missing: {wanted}; header: {list(header)}")
    rated = "relevance" in cols
    flag = rated and cols["relevance"].strip().lower() in CLICK_FLAGS
    threshold = 1.0 if flag else (IntentSettings().click_relevance if min_relevance is None else min_relevance)
    if not rated:
        log.warning("%s: no 'relevance' column (nor %s): every row is read as a click", path, ", ".join(COLUMN_NAMES["relevance"][1:]))
    if "product_uid" not in cols:
        log.warning("%s: no product id column (%s): each distinct title is a product", path, ", ".join(COLUMN_NAMES["product_uid"]))
    needed = [cols[c] for c in SEARCH_LOG_COLUMNS if c in cols]
    clicks: list[Click] = []
    bad: list[tuple[int, str, str]] = []
    for row in reader:
        empty = next((c for c in needed if not (row.get(c) or "").strip()), None)
        if empty:
            bad.append((reader.line_num, empty, "missing" if row.get(empty) is None else "empty"))
            continue
        relevance = threshold
        if rated:
            raw = row[cols["relevance"]]
            try:
                relevance = _rating(raw, flag)
            except ValueError:
                bad.append((reader.line_num, cols["relevance"], f"not a number: {raw[:40]!r}"))
                continue
            if not math.isfinite(relevance):
                bad.append((reader.line_num, cols["relevance"], f"not a finite number: {raw!r}"))
                continue
        if relevance >= threshold:
            title = row[cols["product_title"]].strip()
            doc = row[cols["product_uid"]].strip() if "product_uid" in cols else title
            clicks.append(Click(row[cols["search_term"]].strip(), doc, title))
    return clicks, bad


def entity_searches(path: Path) -> tuple[list[Click], list[tuple[int, str, str]]]:
    """Searches for the named entities of a news catalog's titles (MIND ``news.tsv``, no header): one
    click per (entity surface form, article whose title has it), lowercased as users type, in the
    article's category. Surface forms of under 3 characters or without a letter are left out. Rows
    that cannot be read come back as (line, field, message); the others go through."""
    clicks: list[Click] = []
    bad: list[tuple[int, str, str]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):  # tab-separated, no quoting (MIND's format), fields of any size
            row = line.rstrip("\r\n").split("\t")
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < 7:
                bad.append((n, "<record>", f"{len(row)} columns, expected {len(NEWS_COLUMNS)} ({', '.join(NEWS_COLUMNS)})"))
                continue
            doc, category, title, raw = row[0], row[1].strip(), row[3].strip(), row[6].strip()
            if not title:
                bad.append((n, "title", "empty"))
                continue
            try:
                entities = json.loads(raw) if raw else []
                forms = [str(s) for e in entities for s in e.get("SurfaceForms", [])]
            except (json.JSONDecodeError, AttributeError, TypeError) as exc:
                bad.append((n, "title_entities", f"not a JSON list of entities with SurfaceForms: {exc}"))
                continue
            for form in dict.fromkeys(" ".join(s.lower().split()) for s in forms):
                if len(form) >= 3 and any(ch.isalpha() for ch in form):
                    clicks.append(Click(form, doc, title, category=category))
    return clicks, bad


def clicks_from_lake(events: Iterable[dict], titles: dict[str, str], categories: dict[str, str] | None = None) -> list[Click]:
    """Search-domain clicks of the lake's events (rows as dicts), each with its query: the click's own
    ``query``, or else the user's last search before it (same user, search domain); ``categories``:
    the documents' categories, carried on their clicks."""
    categories = categories or {}
    out: list[Click] = []
    last: dict[str, str] = {}
    for e in sorted(events, key=lambda r: r["ts"]):
        if e["domain"] != "search":
            continue
        if e["type"] == "search":
            last[e["user_id"]] = e["query"]
        elif e["type"] == "click":
            query = e.get("query") or last.get(e["user_id"])
            item = e.get("item_id")
            if query and item in titles:
                out.append(Click(query, item, titles[item], e["user_id"], e["ts"], categories.get(item, "")))
    return out


def _position(short: set[str], long: list[str], token: str) -> str:
    """Where ``token`` was added to the short query: after all its words, before them, or among them."""
    at = long.index(token)
    kept = [i for i, t in enumerate(long) if t in short]
    if not kept or at > max(kept):
        return "suffix"
    return "prefix" if at < min(kept) else "inside"


def bias_patterns(per_doc: dict[str, Counter], title_tokens: dict[str, set[str]], *, min_documents: int = 4, min_absent_share: float = 0.9) -> list[BiasPattern]:
    """Tokens added (in a containment pair) for at least ``min_documents`` documents and absent from the
    titles of at least ``min_absent_share`` of them, most documents first."""
    docs_added: dict[str, set[str]] = defaultdict(set)
    where: dict[str, Counter] = defaultdict(Counter)
    for doc, queries in per_doc.items():
        qs = [q.split() for q in queries]
        for short in qs:
            s = set(short)
            for long in qs:
                if s < set(long):
                    for t in set(long) - s:
                        docs_added[t].add(doc)
                        where[t][_position(s, long, t)] += 1
    found = []
    for t, docs in docs_added.items():
        absent = sum(stem(t) not in title_tokens[d] for d in docs) / len(docs)
        if len(docs) >= min_documents and absent >= min_absent_share:
            found.append(BiasPattern(t, len(docs), round(absent, 3), where[t].most_common(1)[0][0]))
    return sorted(found, key=lambda b: (-b.documents, b.token))


def mine(clicks: Iterable[Click], *, min_bias_documents: int = 4, min_absent_share: float = 0.9, max_tokens: int = 10) -> MiningReport:
    """(Q, Q*) pairs and the bias patterns of a click log (see the module docstring)."""
    per_doc: dict[str, Counter] = defaultdict(Counter)
    titles: dict[str, str] = {}
    n = 0
    for c in clicks:
        q = normalize(c.query)
        n += 1
        if q:
            per_doc[c.doc_id][q] += 1
            titles.setdefault(c.doc_id, c.title)
    title_tokens = {d: stems(t) for d, t in titles.items()}  # words match by their stem (intent.text.stem)
    df = Counter(t for toks in title_tokens.values() for t in toks)
    n_docs = max(len(titles), 1)

    def idf(t: str) -> float:
        return math.log((n_docs + 1) / (df.get(t, 0) + 1)) + 1.0

    bias = bias_patterns(per_doc, title_tokens, min_documents=min_bias_documents, min_absent_share=min_absent_share)
    bias_set = {b.token for b in bias}
    report = MiningReport([], bias, clicks=n, documents=len(per_doc), queries=sum(len(q) for q in per_doc.values()))
    for doc, queries in per_doc.items():
        ordered = list(queries)  # first-seen order, for the final tie-break
        grounded = title_tokens[doc]
        for short in ordered:
            s_toks = short.split()
            s = set(s_toks)
            best: tuple | None = None
            for rank, long in enumerate(ordered):
                l_toks = long.split()
                if not s < set(l_toks):
                    continue
                report.containment_pairs += 1
                clean = [t for t in l_toks if t in s or t not in bias_set or stem(t) in grounded]
                added = set(clean) - s
                if not added:
                    report.skipped["only bias words added"] += 1
                    continue
                if len(clean) > max_tokens:
                    report.skipped["too long"] += 1
                    continue
                gain = sum(idf(stem(t)) for t in added if stem(t) in grounded) - sum(idf(stem(t)) for t in added if stem(t) not in grounded)
                if gain <= 0:
                    report.skipped["added words not in the document"] += 1
                    continue
                key = (-gain, -queries[long], len(clean), rank)
                if best is None or key < best[0]:
                    best = (key, " ".join(clean), queries[long], gain)
            if best is not None:
                report.pairs.append(MinedPair(short, best[1], doc, titles[doc], best[2], round(best[3], 4)))
    return report


def lake_clicks(settings: Settings, start: datetime | None = None, end: datetime | None = None) -> list[Click]:
    """Search clicks of the lake (optionally in [start, end)), with their queries and titles."""
    lake = Lake(settings.lake_dir)
    if not lake.exists("events") or not lake.exists("documents"):
        raise FileNotFoundError(f"no events or documents in the lake at {settings.lake_dir}: run `topicfeed ingest` first")
    import duckdb

    where = "domain = 'search' and type in ('search', 'click')"
    args: dict[str, Any] = {}
    if start is not None:
        where += " and ts >= $start"
        args["start"] = start
    if end is not None:
        where += " and ts < $end"
        args["end"] = end
    con = duckdb.connect()
    rows = con.execute(f"select user_id, domain, type, item_id, query, ts from {lake.scan('events')} where {where} order by ts", args).fetchall()
    docs = lake.read("documents", columns=["doc_id", "title", "topics"])
    ids = docs.column("doc_id").to_pylist()
    titles = dict(zip(ids, docs.column("title").to_pylist()))
    categories = {d: topics[0].split("/")[0] for d, topics in zip(ids, docs.column("topics").to_pylist()) if topics}
    events = [{"user_id": u, "domain": d, "type": t, "item_id": i, "query": q, "ts": ts} for u, d, t, i, q, ts in rows]
    return clicks_from_lake(events, titles, categories)
