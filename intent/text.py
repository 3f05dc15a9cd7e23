"""Query text helpers shared by the miner, the refiner and the evaluation: one tokenization for all."""

from __future__ import annotations

import re
from collections.abc import Sequence

_TOKEN = re.compile(r"[a-z0-9]+(?:['.][a-z0-9]+)*")
STOPWORDS = frozenset(
    "a an and the of for to in on at by with from or as is are be it its this that these those de la le "
    "how what why when where who which vs x".split()
)


_WORD = re.compile(_TOKEN.pattern, re.IGNORECASE)


def words(text: str) -> list[str]:
    """The words of ``tokens`` with their case kept (for tokenizers that tell "Ryobi" from "ryobi")."""
    return _WORD.findall(text)


def capitalized_runs(title: str, longest: int = 4) -> list[str]:
    """The names of a sentence-case title, lowercased as users type them: runs of capitalized words
    (a function word between two of them kept: "Echoes of Wisdom"), up to ``longest`` words, with a
    content word of two or more characters (not the "F" of "F-1"); a lone capitalized first word is
    the sentence's, not a name. "aespa announce Japanese debut album Hot Mess" -> ["japanese", "hot
    mess"]."""
    found = words(title)
    caps = [w[0].isupper() for w in found]
    runs: list[tuple[int, list[str]]] = []
    for i, (w, cap) in enumerate(zip(found, caps)):
        inside = runs and runs[-1][0] + len(runs[-1][1]) == i
        if cap or (inside and w.lower() in STOPWORDS and i + 1 < len(found) and caps[i + 1]):
            if inside:
                runs[-1][1].append(w.lower())
            else:  # not inside a run: a capitalized word starts one
                runs.append((i, [w.lower()]))
    return [" ".join(r) for start, r in runs if (start > 0 or len(r) > 1) and len(r) <= longest and any(x not in STOPWORDS and len(x) > 1 for x in r)]


def tokens(text: str) -> list[str]:
    """Lower-case word tokens ("Ryobi 40V pole-saw" -> ["ryobi", "40v", "pole", "saw"])."""
    return _TOKEN.findall(text.lower())


def normalize(text: str) -> str:
    """The query as its tokens joined by single spaces: what queries are compared by."""
    return " ".join(tokens(text))


def key_tokens(query: str) -> list[str]:
    """The query's tokens that a refinement must keep: every non-stopword token (names, titles,
    product words); the whole query when it is only stopwords."""
    toks = tokens(query)
    keys = [t for t in toks if t not in STOPWORDS]
    return keys or toks


def keeps_keys(query: str, refined: str) -> bool:
    """Whether every key token of ``query`` occurs in ``refined``."""
    have = set(tokens(refined))
    return all(t in have for t in key_tokens(query))


def lcs_f1(a: Sequence[str], b: Sequence[str]) -> float:
    """F1 of two word sequences' longest common subsequence (ROUGE-L's F on words): 1 for the same
    words in the same order, 0 when they share none."""
    if not a or not b:
        return 0.0
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0  # the cell up-left
        for j, y in enumerate(b):
            prev, row[j + 1] = row[j + 1], prev + 1 if x == y else max(row[j + 1], row[j])
    return 2 * row[-1] / (len(a) + len(b))


def stem(token: str) -> str:
    """A light English stem for matching words against document text ("gates" ~ "gate", "lighting" ~
    "light"): plural and -ing endings only, never below three letters."""
    t = token
    if len(t) > 4 and t.endswith("ies"):
        return t[:-3] + "y"
    if len(t) > 5 and t.endswith("ing"):
        return t[:-3]
    if len(t) > 4 and t.endswith(("ches", "shes", "xes", "sses")):
        return t[:-2]
    if len(t) > 3 and t.endswith("s") and not t.endswith(("ss", "us", "is")):
        return t[:-1]
    return t


def stems(text: str) -> set[str]:
    return {stem(t) for t in tokens(text)}
