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
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from intent.mining import Click
from intent.model import Request
from intent.text import stem, tokens
from topicfeed.settings import IntentSettings, Settings

log = logging.getLogger(__name__)

SUGGESTER_NAME = "query_suggester.json"


class QuerySuggester:
    """``fit`` on a log's clicks, ``predict`` a suggestion per request; ``save_pretrained`` /
    ``from_pretrained`` as the refiner's. ``prior``: clicks that do not type a word, added to every
    word's count, so a word seen on few titles does not win by chance. ``query_prior``: how many
    clicks the word's whole-log rate counts for against its rate among the clicks whose query has one
    of Q's words (``rate_given``); ``None``: the whole-log rate alone."""

    def __init__(self, prior: float = 5.0, query_prior: float | None = 3.0) -> None:
        if prior < 0:
            raise ValueError(f"prior must be >= 0, not {prior}")
        if query_prior is not None and query_prior <= 0:
            raise ValueError(f"query_prior must be > 0 (or None), not {query_prior}")
        self.prior = prior
        self.query_prior = query_prior
        self.seen: Counter[str] = Counter()
        self.typed: Counter[str] = Counter()
        self.pairs: dict[str, dict[str, list[int]]] = {}  # query word -> title word -> [typed, seen]
        self.fitted_ = False

    @classmethod
    def from_params(cls, params: IntentSettings) -> QuerySuggester:
        """An unfitted suggester with the settings' priors (``suggest_prior``, ``suggest_query_prior``)."""
        return cls(params.suggest_prior, params.suggest_query_prior)

    def fit(self, clicks: Iterable[Click]) -> QuerySuggester:
        """Count, per stemmed word, the clicks whose title has it and those whose query has it too;
        and (``query_prior``) the same per query word, for the title words someone typed."""
        rows = [({stem(t) for t in tokens(c.query)}, {stem(t) for t in tokens(c.title)}) for c in clicks]
        seen: Counter[str] = Counter()
        typed: Counter[str] = Counter()
        for query, title in rows:
            for word in title:
                seen[word] += 1
                typed[word] += word in query
        if not seen:
            raise ValueError("no clicks with a title to learn from")
        self.seen, self.typed = seen, +typed  # words nobody typed need no count: their rate is 0
        self.pairs = {}
        if self.query_prior is not None:  # a second pass: only the words someone typed
            for query, title in rows:
                for word in title:
                    if word in self.typed:
                        for q in query - {word}:
                            counts = self.pairs.setdefault(q, {}).setdefault(word, [0, 0])
                            counts[0] += word in query
                            counts[1] += 1
        self.fitted_ = True
        return self

    def rate(self, word: str) -> float:
        """Of the clicks on titles with ``word``, the share whose query has it (shrunk by ``prior``)."""
        w = stem(word.lower())
        return self.typed[w] / (self.seen[w] + self.prior) if self.typed[w] else 0.0

    def rate_given(self, word: str, query: Sequence[str]) -> float:
        """``rate`` among the clicks whose query has one of ``query``'s words: for each of them, of the
        clicks with it in the query and ``word`` in the title, (typed + query_prior x rate) / (clicks
        + query_prior); the highest. ``rate`` where no such click was seen (or without ``query_prior``)."""
        base = self.rate(word)
        if self.query_prior is None or base == 0:
            return base
        w = stem(word.lower())
        best = None
        for q in {stem(t.lower()) for t in query}:
            counts = self.pairs.get(q, {}).get(w)
            if counts is not None:
                r = (counts[0] + self.query_prior * base) / (counts[1] + self.query_prior)
                best = r if best is None else max(best, r)
        return base if best is None else best

    def suggest(self, query: str, titles: Sequence[str]) -> str:
        """Q (normalised) with the best title word put in; Q alone where no title word not in Q and
        not a number was ever typed."""
        words = tokens(query)
        keys = {stem(t) for t in words}
        best: tuple[float, int, int] | None = None  # (rate, -title, position)
        for n, title in enumerate(titles):
            for i, t in enumerate(tokens(title)):
                if stem(t) in keys or t.replace(".", "").isdigit():
                    continue
                r = self.rate_given(t, words)
                if r > 0 and (best is None or (r, -n, i) > best):
                    best = (r, -n, i)
        if best is None:
            return " ".join(words)
        title = tokens(titles[-best[1]])
        i = best[2]
        at = [next((j for j, t in enumerate(title) if stem(t) == stem(q)), -1) for q in words]
        k = next((n for n, j in enumerate(at) if j > i), len(words))  # before the first of Q's words after it
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
        data = {"prior": self.prior, "query_prior": self.query_prior, "typed": typed, "seen": {w: self.seen[w] for w in typed}, "pairs": self.pairs}
        (directory / SUGGESTER_NAME).write_text(json.dumps(data, separators=(",", ":")))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> QuerySuggester:
        path = Path(directory) / SUGGESTER_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no query suggester saved there")
        data = json.loads(path.read_text())
        query_prior = data.get("query_prior")  # a file from before query_prior: the whole-log rate alone
        out = cls(prior=float(data["prior"]), query_prior=None if query_prior is None else float(query_prior))
        out.typed, out.seen, out.pairs = Counter(data["typed"]), Counter(data["seen"]), data.get("pairs", {})
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
