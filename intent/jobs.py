"""The refiner's jobs over the lake and files: mine, train the default recipe, refine files and log
windows (offline history + online push). The CLI and the DAGs are thin wiring over these."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from intent.mining import Click, MiningReport, entity_searches, lake_clicks, mine, read_search_log
from intent.model import NO_LENGTH_PREFERENCE, Example, IntentRefiner, Refines, Request, gold_split, held_out, read_gold
from intent.students import Student, load_refiner, new_student
from intent.suggest import SUGGESTER_NAME, QuerySuggester
from intent.text import capitalized_runs, normalize, stem, stems, tokens
from topicfeed.lake import Lake, write_parquet_atomic
from topicfeed.settings import IntentSettings, Settings

MAX_QUERY_CHARS = 512
MAX_DOCUMENTS = 50


def mine_lake(settings: Settings) -> MiningReport:
    return mine(lake_clicks(settings))


def pairs_as_examples(report: MiningReport, max_examples: int | None = None, seed: int = 0) -> list[Example]:
    """Mined (Q, Q*) pairs as training examples, the clicked document's title as the context."""
    pairs = list(report.pairs)
    random.Random(seed).shuffle(pairs)
    return [Example(p.query, (p.title,), p.refined_query, "log") for p in pairs[:max_examples]]


def grounded(query: str, titles: Sequence[str], refined: str) -> str:
    """``refined`` with every word that is neither in Q nor (by stem) in a clicked title removed, in
    order and without repeats: a teacher's invented words never reach the student."""
    allowed = set(tokens(query)) | {s for t in titles for s in stems(t)}
    kept: list[str] = []
    for w in tokens(refined):
        if (w in allowed or stem(w) in allowed) and w not in kept:
            kept.append(w)
    return " ".join(kept)


def label_with(
    teacher: IntentRefiner, requests: list[Request], progress: Callable[[int], None] | None = None, ground: bool = True, length_preference: bool = False
) -> list[Example]:
    """The teacher's Q* for sampled (Q, clicked titles) requests, as training examples; with
    ``ground``, trimmed to words found in Q or the titles (``grounded``). The teacher labels with no
    length preference (``length_penalty`` 1, ``end_penalty`` 0) unless ``length_preference``: labels
    written with it made the student worse (gold BERTScore 0.865 against 0.875, 2,000 labels, copy-only
    teacher) and slower to train (8.4 words a label against 6.7); the preference is for serving."""
    teacher = teacher.decoding(fill_title_gaps=0, mbr_temperature=None, **({} if length_preference else NO_LENGTH_PREFERENCE))  # as the measured labels were written
    outs = teacher.predict(requests, progress=progress)
    if ground:
        outs = [grounded(r.query, r.titles, o) for r, o in zip(requests, outs)]
    return [Example(r.query, r.titles, o, "teacher") for r, o in zip(requests, outs) if o]


def write_labels(path: Path, examples: Sequence[Example]) -> None:
    """Teacher labels (or any examples) as a JSON list, for a later run to train on without relabelling."""
    path.write_text(json.dumps([{"query": e.query, "titles": list(e.titles), "refined": e.refined, "category": e.category} for e in examples]))


def read_labels(path: Path) -> list[Example]:
    """What ``write_labels`` wrote."""
    return [Example(e["query"], tuple(e["titles"]), e["refined"], e["category"]) for e in json.loads(path.read_text())]


def sample_requests(clicks: Iterable[Click], n: int, seed: int = 0) -> list[Request]:
    """Up to ``n`` distinct (Q, titles of the docs clicked for Q) from a click log, one per query,
    balanced by category: the queries, shuffled, are taken in turn from each category (a query's is its
    clicks' most common ``Click.category``) until ``n``, so a small category gives all it has before a
    large one gives more than its share. With one category (a log without them), the shuffled order."""
    by_query: dict[str, list[str]] = defaultdict(list)
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for c in clicks:
        if c.title not in by_query[c.query]:
            by_query[c.query].append(c.title)
        votes[c.query][c.category] += 1
    queries = sorted(by_query)
    random.Random(seed).shuffle(queries)
    per_category: dict[str, list[str]] = defaultdict(list)
    for q in queries:
        per_category[min(votes[q].items(), key=lambda kv: (-kv[1], kv[0]))[0]].append(q)
    turns = [per_category[c] for c in sorted(per_category)]
    order = [q for group in itertools.zip_longest(*turns) for q in group if q is not None]
    return [Request(q, tuple(by_query[q][:3])) for q in order[:n]]


def mixed_requests(clicks: Iterable[Click], n: int, seed: int = 0, news_clicks: Iterable[Click] = (), news_n: int = 0) -> list[Request]:
    """``news_n`` (at most ``n``) sampled searches of ``news_clicks``, then ``clicks``' up to ``n`` in
    all; each part balanced by category (``sample_requests``)."""
    requests = sample_requests(news_clicks, min(news_n, n), seed) if news_n else []
    return requests + sample_requests(clicks, max(n - len(requests), 0), seed)


def made_searches(clicks: Iterable[Click], n: int, seed: int = 0) -> list[Example]:
    """Searches made from a log's own clicks for the word tagger's search head (and with
    ``IntentSettings.searches_train_intent`` its intent head): for up to ``n``
    distinct (query, document) clicks whose query has two or more different words (a seeded sample),
    Q is the query with one of its words left out (chosen at random: a title word or not, as users add
    either) and the answer is the whole query (``Example.head`` ``"search"``): which title word, if
    any, the user typed with the others."""
    seen: set[tuple[str, str]] = set()
    made: list[tuple[list[str], Click]] = []
    for c in clicks:
        words = tokens(c.query)
        key = (" ".join(words), c.doc_id)
        if len(set(words)) < 2 or len(set(words)) < len(words) or key in seen or not tokens(c.title):
            continue
        seen.add(key)
        made.append((words, c))
    rng = random.Random(seed)
    rng.shuffle(made)
    out = []
    for words, c in made[:n]:
        left_out = rng.choice(words)
        out.append(Example(" ".join(w for w in words if w != left_out), (c.title,), " ".join(words), "search", head="search"))
    return out


def recipe_searches(params: IntentSettings, clicks: Iterable[Click]) -> list[Example]:
    """The made searches the default recipe adds to a student's examples: ``params.search_examples``
    of them (``made_searches``, seeded by ``params.seed``) for the word tagger, none for the causal
    student, which learns Q* only."""
    return made_searches(clicks, params.search_examples, params.seed) if params.student == "tagger" else []


def title_searches(examples: Sequence[Example], per_example: int) -> list[Request]:
    """Searches in the gold set's style for the teacher to label, made from gold examples: Q with each
    of its clicked titles alone (when two or more were clicked), then each name of its titles
    (``capitalized_runs``, not Q's) with all of them; at most ``per_example`` for each example, none
    twice. A shop's log has one kind of search; these have the gold set's 22 categories."""
    out: list[Request] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for e in examples:
        query = normalize(e.query)
        titles = tuple(e.titles)
        candidates = [(e.query, (t,)) for t in titles] if len(titles) > 1 else []
        candidates += [(name, titles) for t in titles for name in capitalized_runs(t) if name not in query]
        made = 0
        for q, ts in candidates:
            key = (normalize(q), ts)
            if made >= per_example or key in seen:
                continue
            seen.add(key)
            out.append(Request(q, ts))
            made += 1
    return out


def teacher_requests(settings: Settings, clicks: Sequence[Click], news: Path | None = None) -> list[Request]:
    """The searches the teacher labels for the default recipe: with ``news`` (a MIND-format news
    catalog), ``news_samples`` entity searches of it (``entity_searches``), then the lake's searches up
    to ``teacher_samples`` in all (``mixed_requests``); then ``title_searches`` of the gold set's
    training part."""
    p = settings.intent
    news_clicks = entity_searches(news)[0] if news is not None else []
    return mixed_requests(clicks, p.teacher_samples, p.seed, news_clicks, p.news_samples) + title_searches(gold_split()[0], p.title_searches)


def split_by_product(clicks: Iterable[Click], share: float) -> tuple[list[Click], list[Click]]:
    """A search log's clicks split by product: (those on the training products, those on the products
    ``held_out`` at ``share``). ``intent eval --search-log`` scores the second part, and ``intent
    train --search-log`` trains on the first with the same ``share``, so no held-out product is seen."""
    train: list[Click] = []
    test: list[Click] = []
    for c in clicks:
        (test if held_out(c.doc_id, share) else train).append(c)
    return train, test


def train_default(
    settings: Settings,
    out: Path,
    teacher: Path | None = None,
    news: Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    clicks: Sequence[Click] | None = None,
) -> Student:
    """The default student recipe: the gold set, the lake's mined pairs and (with ``teacher``) the
    teacher's labels of sampled searches (``teacher_requests``: the lake's, and with ``news`` entity
    searches of a news catalog), and for the word tagger searches made from the lake's clicks
    (``recipe_searches``: its search head's, and with ``searches_train_intent`` its intent head's), trained into the student ``settings.intent.student`` names (``new_student``). The gold set's
    held-out part (``gold_split``) is never trained on: evaluation reads it. ``clicks`` (a real
    search log's, ``read_search_log``): these instead of the lake's, for the pairs, the teacher's
    searches, the made searches and the suggester."""
    examples = gold_split()[0] * settings.intent.gold_repeats
    if clicks is None:
        try:
            clicks = lake_clicks(settings)
        except FileNotFoundError:
            clicks = []
    if clicks:
        examples += pairs_as_examples(mine(clicks), settings.intent.max_mined_pairs, settings.intent.seed)
    if teacher is not None:
        requests = teacher_requests(settings, clicks, news)
        if requests:
            examples += label_with(IntentRefiner.from_pretrained(teacher, device=settings.intent.device), requests)
    examples += recipe_searches(settings.intent, clicks)
    refiner = new_student(settings.intent).fit(examples, progress=progress)
    refiner.save_pretrained(out)
    save_suggester(settings, clicks, out)
    return refiner


def save_suggester(settings: Settings, clicks: Sequence[Click], out: Path) -> QuerySuggester | None:
    """The log's one-word suggester (``QuerySuggester``) fitted on ``clicks`` and saved in ``out``
    beside the refiner, where the feed service finds it; without clicks, none (and an older one in
    ``out`` is removed, so that it never outlives the lake it was counted on)."""
    if not clicks:
        (Path(out) / SUGGESTER_NAME).unlink(missing_ok=True)
        return None
    suggester = QuerySuggester.from_params(settings.intent).fit(clicks)
    suggester.save_pretrained(out)
    return suggester


@dataclass
class FileReport:
    refined: int
    rejected: list[tuple[int, str, str]]  # (line, field, message)


def _request(row: object) -> Request | tuple[str, str]:
    """A JSONL line's request (``{"query", "documents": [{"title", ...}]}``), or (field, message)."""
    if not isinstance(row, dict):
        return "<record>", "not an object"
    query = row.get("query")
    docs = row.get("documents", [])
    if not isinstance(query, str) or not query.strip() or not any(ch.isalnum() for ch in query):
        return "query", "missing, empty or without words"
    if len(query) > MAX_QUERY_CHARS:
        return "query", f"longer than {MAX_QUERY_CHARS} characters"
    if not isinstance(docs, list) or not all(isinstance(d, dict) and isinstance(d.get("title"), str) for d in docs):
        return "documents", "must be a list of objects with a string 'title'"
    return Request(query, tuple(d["title"] for d in docs[:MAX_DOCUMENTS]))


def _json_lines(text: str) -> Iterator[tuple[int, object | None, str]]:
    """(line number, the line's JSON value, "") per non-blank line of ``text``; (line number, None,
    message) where it is not JSON."""
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield n, json.loads(line), ""
            except json.JSONDecodeError as exc:
                yield n, None, f"not JSON: {exc.msg}"


def read_requests(path: Path) -> tuple[list[tuple[str, Request]], list[tuple[int, str, str]]]:
    """Requests of a JSONL file (``{"id", "query", "documents": [{"doc_id", "title", "body"?}]}``);
    invalid lines come back as (line, field, message) and are not refined."""
    good: list[tuple[str, Request]] = []
    bad: list[tuple[int, str, str]] = []
    for n, row, error in _json_lines(path.read_text(encoding="utf-8")):
        got = _request(row) if not error else ("<record>", error)
        if isinstance(got, Request):
            good.append((str(row.get("id", n)) if isinstance(row, dict) else str(n), got))
        else:
            bad.append((n, *got))
    return good, bad


def read_labelled(path: Path) -> tuple[list[Example], list[tuple[int, str, str]]]:
    """Searches with a good Q* to evaluate on (``intent eval --gold``): JSON lines as ``intent
    refine`` reads them plus ``"refined_query"`` (and ``"category"``, optional), or a TSV in the gold
    set's format (``intent.model.read_gold``). Lines that cannot be read come back as (line, field,
    message); the others go through."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if not text.lstrip().startswith("{"):
        return read_gold(path, text)
    good: list[Example] = []
    bad: list[tuple[int, str, str]] = []
    for n, row, error in _json_lines(text):
        got = _request(row) if not error else ("<record>", error)
        refined = row.get("refined_query") if isinstance(row, dict) else None
        if isinstance(got, Request) and not (isinstance(refined, str) and refined.strip()):
            got = ("refined_query", "missing, empty or not a string")
        if isinstance(got, Request):
            category = row.get("category") if isinstance(row, dict) else ""
            good.append(Example(got.query, got.titles, str(refined).strip(), str(category or "")))
        else:
            bad.append((n, *got))
    return good, bad


def refine_file(model: Path, input_path: Path, output: Path, progress: Callable[[int, int], None] | None = None, **serving: object) -> FileReport:
    """Refine every valid request of ``input_path`` into ``output`` (``{"id", "query", "refined_query"}``);
    ``serving``: how the model is loaded (``IntentSettings.serving()``; none: as saved, float32 on
    the CPU); ``progress``: called with (requests refined so far, valid requests) after each batch."""
    good, bad = read_requests(input_path)
    refiner = load_refiner(model, **serving)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, len(good))

    outs = refiner.predict([r for _, r in good], progress=step) if good else []
    _write_answers(output, good, "refined_query", outs)
    return FileReport(len(good), bad)


def _write_answers(output: Path, requests: Sequence[tuple[str, Request]], field: str, answers: Sequence[str]) -> None:
    """One JSONL line per request: ``{"id", "query", field}``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        for (i, r), answer in zip(requests, answers, strict=True):
            f.write(json.dumps({"id": i, "query": r.query, field: answer}, ensure_ascii=False) + "\n")


def suggest_file(settings: Settings, input_path: Path, output: Path, search_log: Path | None = None, model: Path | None = None) -> tuple[FileReport, list[tuple[int, str, str]]]:
    """A one-word search suggestion (``intent.suggest.QuerySuggester``) for every valid request of
    ``input_path`` into ``output`` (``{"id", "query", "suggested_query"}``), learned from the clicks of
    ``search_log`` (``read_search_log``), else of the lake's search sessions; with ``model``, the
    search head of that saved word tagger instead (``WordTagger.suggest``): (the requests' report,
    the log's unreadable rows)."""
    unreadable: list[tuple[int, str, str]] = []
    if model is not None:
        if search_log is not None:
            raise ValueError("give a search log or a model, not both: the model's search head learned from its own training log")
        tagger = load_refiner(model, **settings.intent.serving())
        if not getattr(tagger, "has_search_head", False):
            raise ValueError(f"{model} has no search head: a word tagger trained with made searches (IntentSettings.search_examples > 0) has one")
        suggest: Callable[[list[Request]], list[str]] = tagger.suggest
    else:
        clicks, unreadable = read_search_log(search_log, settings.intent.click_relevance) if search_log else (lake_clicks(settings), [])
        suggest = QuerySuggester.from_params(settings.intent).fit(clicks).predict
    good, bad = read_requests(input_path)
    _write_answers(output, good, "suggested_query", suggest([r for _, r in good]))
    return FileReport(len(good), bad), unreadable


REFINE_PART = 256  # searches refined per predict call (16 of the refiner's batches: the same batches as in one call)


def refine_window(
    settings: Settings,
    refiner: Refines,
    start: datetime,
    end: datetime,
    push: bool = True,
    suggester: QuerySuggester | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """The window's searches with clicks, grouped by (user, query), refined; each record is written
    to the offline intents history and (``push``) to the online store (``featurestore.intents.push_intents``).
    Records: user_id, query, refined_query, suggested_query (with ``suggester``, the re-search
    suggestion; else ''), ts (the last click), topics (of the clicked documents). ``progress``: called
    with (searches refined, searches) after each part of ``REFINE_PART``."""
    clicks = [c for c in lake_clicks(settings, start, end)]
    groups: dict[tuple[str, str], list[Click]] = defaultdict(list)
    for c in clicks:
        groups[(c.user_id, c.query)].append(c)
    if not groups:
        return []
    keys = sorted(groups)
    requests = [Request(q, tuple(dict.fromkeys(c.title for c in groups[(u, q)]))) for u, q in keys]
    refined: list[str] = []
    for at in range(0, len(requests), REFINE_PART):
        refined += refiner.predict(requests[at : at + REFINE_PART])
        if progress is not None:
            progress(len(refined), len(requests))
    suggested = suggester.predict(requests) if suggester is not None else [""] * len(requests)
    topics = _doc_topics(settings, {c.doc_id for c in clicks})
    records = []
    for (u, q), r, x in zip(keys, refined, suggested, strict=True):
        last = max(c.ts for c in groups[(u, q)])
        docs = dict.fromkeys(c.doc_id for c in groups[(u, q)])
        records.append({"user_id": u, "query": q, "refined_query": r, "suggested_query": x, "ts": _iso(last), "topics": sorted({t for d in docs for t in topics.get(d, [])})})
    path = _write_window(settings, start, end, records)
    if push:
        from featurestore.intents import push_intents

        push_intents(settings, records, history_name=path.stem)
    return records


def _write_window(settings: Settings, start: datetime, end: datetime, records: list[dict[str, Any]]) -> Path:
    """The window's refined searches, one Parquet file per window (a rerun replaces it)."""
    import pyarrow as pa

    out = settings.features_dir / "refined_searches"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}.parquet"
    fields = [("user_id", pa.string()), ("query", pa.string()), ("refined_query", pa.string()), ("suggested_query", pa.string()), ("ts", pa.string()), ("topics", pa.list_(pa.string()))]
    table = pa.Table.from_pylist(records, schema=pa.schema(fields))
    write_parquet_atomic(table, path)
    return path


def _iso(ts: Any) -> str:
    if isinstance(ts, datetime):
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).isoformat()
    return str(ts)


def _doc_topics(settings: Settings, doc_ids: set[str]) -> dict[str, list[str]]:
    lake = Lake(settings.lake_dir)
    docs = lake.read("documents", columns=["doc_id", "topics"])
    return {d: list(t or []) for d, t in zip(docs.column("doc_id").to_pylist(), docs.column("topics").to_pylist()) if d in doc_ids}
