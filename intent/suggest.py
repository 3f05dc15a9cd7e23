"""A short search suggestion learned from a search log: Q with the one word of the clicked titles that
the log's users type most often, put where the titles have it among Q's words ("makita saw" + "Makita
6.5-Amp Top Handle Jig Saw" -> "makita jig saw").

The refiner's Q* names the product as the gold set does (brand, type, specs: up to 10 words); users
who search again add one or two words, most of them words of the clicked title (61 of 68 in Home
Depot's held-out references). Which word is a property of the log, not of one title: for each word,
of the clicks on titles that have it, the share whose query has it too; and that share among the
clicks whose query has one of Q's words ("saw" users type "jig" or "circular", "drill" users
"cordless"), shrunk toward the first. Measured on Home Depot's held-out products
(``benchmarks/intent_log_words.py``, docs/intent.md): over 5 folds by product, ROUGE-L against
users' longer queries 0.636 for Q, 0.672 with the first share alone, 0.695 with both.
"""

from __future__ import annotations

import json
import logging
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intent.mining import Click
from intent.model import Request
from intent.text import stem, tokens
from topicfeed.settings import IntentSettings, Settings

log = logging.getLogger(__name__)

SUGGESTER_NAME = "query_suggester.json"
STEM_CACHE = 500_000  # words whose stem fit keeps at hand


@dataclass(frozen=True)
class PairCounts:
    """Per (query word, title word): the clicks with the query word in the query and the title word
    in the clicked title, and how many of them typed the title word too. Stored as rows of sorted
    arrays (one row of title word ids per query word), not as a dict of dicts: Home Depot's 292,877
    pairs are 3.6 MB of arrays, and the fitted suggester holds 4.5 MB in place of 37.4 MB
    (``benchmarks/bench_suggester.py``)."""

    ids: dict[str, int]  # stemmed word -> id, for query words and typed title words
    start: np.ndarray  # int64, len(ids) + 1: query word i's pairs are [start[i], start[i + 1])
    title: np.ndarray  # int32 title word ids, sorted within each row
    typed: np.ndarray  # int32
    seen: np.ndarray  # int32

    @classmethod
    def count(cls, rows: Iterable[tuple[set[str], set[str]]], typed: Counter[str], chunk: int = 500_000, max_pairs: int | None = None) -> PairCounts:
        """From (query words, title words) per click, for the title words in ``typed``; counted in
        parts of ``chunk`` (query word, title word) occurrences, each part reduced to its distinct
        pairs before the next, so memory grows with the distinct pairs, not with the log.
        ``max_pairs``: at most this many pairs are kept, the most clicked (then the most typed), also
        between parts, so that memory stays bounded; exact where the log's pairs fit, else a pair
        cut early and seen again later counts only its later clicks."""
        ids: dict[str, int] = {}
        total = (np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))  # (keys, typed, seen) of the parts so far
        pair_keys, typed_flags = array("q"), array("b")  # query word id << 32 | title word id

        for query, title in rows:
            words = sorted(w for w in title if w in typed)  # sorted: word ids (and the saved file) not by the process's set order
            if not words:
                continue
            qs = [(q, ids.setdefault(q, len(ids)) << 32) for q in sorted(query)]
            for word in words:
                w, hit = ids.setdefault(word, len(ids)), word in query
                for q, qi in qs:
                    if q != word:
                        pair_keys.append(qi | w)
                        typed_flags.append(hit)
            if len(pair_keys) >= chunk:
                total = _capped(_merged(total, pair_keys, typed_flags), max_pairs)
                pair_keys, typed_flags = array("q"), array("b")
        keys, hits, seen = _capped(_merged(total, pair_keys, typed_flags), max_pairs)
        ids, keys = _used(ids, keys)
        start = np.searchsorted(keys >> 32, np.arange(len(ids) + 1)).astype(np.int64)
        return cls(ids, start, (keys & 0xFFFFFFFF).astype(np.int32), hits.astype(np.int32), seen.astype(np.int32))

    @classmethod
    def from_nested(cls, pairs: dict[str, dict[str, list[int]]]) -> PairCounts:
        """From ``{query word: {title word: [typed, seen]}}`` (files saved before the arrays)."""
        ids: dict[str, int] = {}
        for q, row in pairs.items():
            ids.setdefault(q, len(ids))
            for w in row:
                ids.setdefault(w, len(ids))
        rows = sorted((ids[q], ids[w], c[0], c[1]) for q, row in pairs.items() for w, c in row.items())
        table = np.array(rows, dtype=np.int64).reshape(-1, 4)
        start = np.searchsorted(table[:, 0], np.arange(len(ids) + 1)).astype(np.int64)
        return cls(ids, start, table[:, 1].astype(np.int32), table[:, 2].astype(np.int32), table[:, 3].astype(np.int32))

    @classmethod
    def from_json(cls, data: dict) -> PairCounts:
        return cls(
            {w: i for i, w in enumerate(data["words"])},
            np.asarray(data["start"], dtype=np.int64),
            np.asarray(data["title"], dtype=np.int32),
            np.asarray(data["typed"], dtype=np.int32),
            np.asarray(data["seen"], dtype=np.int32),
        )

    def to_json(self) -> dict:
        return {"words": list(self.ids), "start": self.start.tolist(), "title": self.title.tolist(), "typed": self.typed.tolist(), "seen": self.seen.tolist()}

    def __len__(self) -> int:
        return len(self.title)

    def nbytes(self) -> int:
        """The arrays' bytes (the word ids' dict aside)."""
        return self.start.nbytes + self.title.nbytes + self.typed.nbytes + self.seen.nbytes

    def word_ids(self, words: Sequence[str]) -> np.ndarray:
        """The ids of stemmed words, -1 for a word without pairs."""
        return np.array([self.ids.get(w, -1) for w in words], dtype=np.int64)

    def lookup(self, query_word: str, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(found, typed, seen) for each title word id in ``wanted`` (``word_ids``) with ``query_word``
        (stemmed); ``None`` where the query word has no pairs."""
        q = self.ids.get(query_word)
        if q is None or len(wanted) == 0:
            return None
        lo, hi = int(self.start[q]), int(self.start[q + 1])
        row = self.title[lo:hi]
        if len(row) == 0:
            return None
        at = np.minimum(np.searchsorted(row, wanted), len(row) - 1)
        found = (row[at] == wanted) & (wanted >= 0)
        return found, np.where(found, self.typed[lo + at], 0), np.where(found, self.seen[lo + at], 0)


def _merged(total: tuple[np.ndarray, np.ndarray, np.ndarray], keys: array, flags: array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct pair keys, typed, seen) of ``total`` and a part's pair occurrences together."""
    merged, inverse = np.unique(np.concatenate([total[0], np.frombuffer(keys, dtype=np.int64)]), return_inverse=True)
    typed = np.concatenate([total[1], np.frombuffer(flags, dtype=np.int8)])
    seen = np.concatenate([total[2], np.ones(len(keys))])
    return merged, np.bincount(inverse, weights=typed, minlength=len(merged)), np.bincount(inverse, weights=seen, minlength=len(merged))


def _capped(total: tuple[np.ndarray, np.ndarray, np.ndarray], max_pairs: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``max_pairs`` most clicked pairs of (distinct pair keys, typed, seen), then the most typed;
    in key order."""
    keys, typed, seen = total
    if max_pairs is None or len(keys) <= max_pairs:
        return total
    keep = np.sort(np.lexsort((-typed, -seen))[:max_pairs])
    return keys[keep], typed[keep], seen[keep]


def _used(ids: dict[str, int], keys: np.ndarray) -> tuple[dict[str, int], np.ndarray]:
    """Only the words of the pairs kept, numbered anew in the same order (so the keys stay sorted):
    the query words whose pairs were all cut hold no memory."""
    used = np.unique(np.concatenate([keys >> 32, keys & 0xFFFFFFFF]))
    if len(used) == len(ids):
        return ids, keys
    words = list(ids)
    new = np.full(len(ids), -1, dtype=np.int64)
    new[used] = np.arange(len(used))
    return {words[i]: n for n, i in enumerate(used.tolist())}, (new[keys >> 32] << 32) | new[keys & 0xFFFFFFFF]


class QuerySuggester:
    """``fit`` on a log's clicks, ``predict`` a suggestion per request; ``save_pretrained`` /
    ``from_pretrained`` as the refiner's. ``prior``: clicks that do not type a word, added to every
    word's count, so a word seen on few titles does not win by chance. ``query_prior``: how many
    clicks the word's whole-log rate counts for against its rate among the clicks whose query has one
    of Q's words (``rate_given``); ``None``: the whole-log rate alone. ``max_pairs``: at most this
    many (query word, title word) pairs kept (``PairCounts.count``); ``max_words``: at most this many
    typed words counted, the most typed (the others are never suggested); ``None``: all."""

    def __init__(self, prior: float = 5.0, query_prior: float | None = 3.0, max_pairs: int | None = None, max_words: int | None = None) -> None:
        if prior < 0:
            raise ValueError(f"prior must be >= 0, not {prior}")
        if query_prior is not None and query_prior <= 0:
            raise ValueError(f"query_prior must be > 0 (or None), not {query_prior}")
        if max_pairs is not None and max_pairs < 1:
            raise ValueError(f"max_pairs must be >= 1 (or None), not {max_pairs}")
        if max_words is not None and max_words < 1:
            raise ValueError(f"max_words must be >= 1 (or None), not {max_words}")
        self.prior = prior
        self.query_prior = query_prior
        self.max_pairs = max_pairs
        self.max_words = max_words
        self.seen: Counter[str] = Counter()
        self.typed: Counter[str] = Counter()
        self.pairs: PairCounts | None = None
        self.fitted_ = False

    @classmethod
    def from_params(cls, params: IntentSettings) -> QuerySuggester:
        """An unfitted suggester with the settings' priors and caps (``suggest_prior``, ``suggest_query_prior``, ``suggest_max_pairs``, ``suggest_max_words``)."""
        return cls(params.suggest_prior, params.suggest_query_prior, params.suggest_max_pairs, params.suggest_max_words)

    def fit(self, clicks: Iterable[Click]) -> QuerySuggester:
        """Count, per stemmed word, the clicks whose title has it and those whose query has it too;
        and (``query_prior``) the same per query word, for the title words someone typed. Two passes
        over the clicks: the typed words first (at most ``max_words``), then their clicks and pairs,
        so that the counts held, also while fitting, grow with the words users type, not with every
        word of the titles."""
        clicks = clicks if isinstance(clicks, Sequence) else list(clicks)
        stems_of: dict[str, str] = {}  # each word stemmed once: the clicks are read twice

        def stemmed(text: str) -> set[str]:
            if len(stems_of) > STEM_CACHE:  # a log of endless distinct words: memory stays bounded
                stems_of.clear()
            return {stems_of[t] if t in stems_of else stems_of.setdefault(t, stem(t)) for t in tokens(text)}

        def rows() -> Iterator[tuple[set[str], set[str]]]:
            for c in clicks:
                yield stemmed(c.query), stemmed(c.title)

        typed: Counter[str] = Counter()  # words nobody typed need no count: their rate is 0
        titled = False
        for query, title in rows():
            titled = titled or bool(title)
            typed.update(query & title)
        if not titled:
            raise ValueError("no clicks with a title to learn from")
        if self.max_words is not None and len(typed) > self.max_words:
            typed = Counter(dict(sorted(typed.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_words]))
        seen: Counter[str] = Counter()

        def counted() -> Iterator[tuple[set[str], set[str]]]:
            for query, title in rows():
                seen.update(w for w in title if w in typed)
                yield query, title

        if self.query_prior is not None:
            self.pairs = PairCounts.count(counted(), typed, max_pairs=self.max_pairs)
        else:
            self.pairs = None
            for _ in counted():
                pass
        self.typed, self.seen = typed, seen
        self.fitted_ = True
        return self

    def rate(self, word: str) -> float:
        """Of the clicks on titles with ``word``, the share whose query has it (shrunk by ``prior``)."""
        return self._rate(stem(word.lower()))

    def _rate(self, w: str) -> float:
        return self.typed[w] / (self.seen[w] + self.prior) if self.typed[w] else 0.0

    def rates_given(self, words: Sequence[str], query: Sequence[str]) -> np.ndarray:
        """``rate`` of each of ``words`` among the clicks whose query has one of ``query``'s words:
        for each of them, of the clicks with it in the query and the word in the title, (typed +
        query_prior x rate) / (clicks + query_prior); the highest. ``rate`` where no such click was
        seen (or without ``query_prior``)."""
        return self._rates_given([stem(w.lower()) for w in words], {stem(t.lower()) for t in query})

    def _rates_given(self, stems_: Sequence[str], query: set[str]) -> np.ndarray:
        """``rates_given`` of stemmed words given Q's stemmed words."""
        base = np.array([self._rate(w) for w in stems_], dtype=np.float64)
        if self.query_prior is None or self.pairs is None or not base.any():
            return base
        best = np.full(len(stems_), -np.inf)
        wanted = self.pairs.word_ids(stems_)
        for q in query:
            if (got := self.pairs.lookup(q, wanted)) is not None:
                found, typed, seen = got
                best = np.where(found, np.maximum(best, (typed + self.query_prior * base) / (seen + self.query_prior)), best)
        return np.where((base > 0) & np.isfinite(best), best, base)

    def rate_given(self, word: str, query: Sequence[str]) -> float:
        """``rates_given`` of one word."""
        return float(self.rates_given([word], query)[0])

    def suggest(self, query: str, titles: Sequence[str], among: Iterable[str] | None = None) -> str:
        """Q (normalised) with the best title word put in; Q alone where no title word not in Q and
        not a number was ever typed. ``among``: only title words among these (compared by stem)."""
        words = tokens(query)
        keys = {stem(t) for t in words}
        allowed = None if among is None else {stem(t.lower()) for t in among}
        places: list[tuple[int, int, str]] = []  # (-title, position, stemmed word)
        for n, title in enumerate(titles):
            for i, t in enumerate(tokens(title)):
                st = stem(t)
                if st in keys or t.replace(".", "").isdigit() or (allowed is not None and st not in allowed):
                    continue
                places.append((-n, i, st))
        rates = self._rates_given([st for _, _, st in places], keys) if places else np.zeros(0)
        scored = [(r, n, i) for r, (n, i, _) in zip(rates.tolist(), places) if r > 0]
        if not scored:
            return " ".join(words)
        _, n, i = max(scored)
        title = tokens(titles[-n])
        at = [next((j for j, t in enumerate(title) if stem(t) == stem(q)), -1) for q in words]
        k = next((m for m, j in enumerate(at) if j > i), len(words))  # before the first of Q's words after it
        return " ".join([*words[:k], title[i], *words[k:]])

    def predict(self, requests: Sequence[Request]) -> list[str]:
        if not self.fitted_:
            raise ValueError("the suggester is not fitted: call fit(clicks) first")
        out = []
        for n, r in enumerate(requests):
            if not tokens(r.query):
                raise ValueError(f"request {n}: field query is empty")
            out.append(self.suggest(r.query, r.titles))
        return out

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        typed = dict(sorted(self.typed.items()))
        data = {"prior": self.prior, "query_prior": self.query_prior, "max_pairs": self.max_pairs, "max_words": self.max_words, "typed": typed, "seen": {w: self.seen[w] for w in typed}}
        if self.pairs is not None:
            data["pair_counts"] = self.pairs.to_json()
        (directory / SUGGESTER_NAME).write_text(json.dumps(data, separators=(",", ":")))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> QuerySuggester:
        path = Path(directory) / SUGGESTER_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no query suggester saved there")
        data = json.loads(path.read_text())
        query_prior = data.get("query_prior")  # a file from before query_prior: the whole-log rate alone
        out = cls(prior=float(data["prior"]), query_prior=None if query_prior is None else float(query_prior), max_pairs=data.get("max_pairs"), max_words=data.get("max_words"))
        out.typed, out.seen = Counter(data["typed"]), Counter(data["seen"])
        if "pair_counts" in data:
            out.pairs = PairCounts.from_json(data["pair_counts"])
        elif data.get("pairs"):  # a file from before the arrays: a dict of dicts
            out.pairs = PairCounts.from_nested(data["pairs"])
        out.fitted_ = True
        return out


def suggester_for(settings: Settings, directory: str | Path) -> QuerySuggester | None:
    """The suggester saved in ``directory`` (``intent train`` saves it beside the refiner) where the
    settings want suggestions (``feed.search_suggestions``); ``None`` where there is none, and for one
    that cannot be read (logged: the searches are still refined, without suggestions)."""
    path = Path(directory) / SUGGESTER_NAME
    if not settings.feed.search_suggestions or not path.is_file():
        return None
    try:
        return QuerySuggester.from_pretrained(directory)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the query suggester %s cannot be read (%s): searches go on without suggestions", path, exc)
        return None
