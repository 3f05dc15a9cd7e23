"""What users add to their queries in a real search log, and what that leaves for a refiner.

The Home Depot bar "ROUGE-L above the raw query's" is read against mined references: for a held-out
product, another user's longer query that contains Q (``intent.mining.mine``). The raw query's
precision against such a reference is 1, so a Q* gains only by adding the words users add. This
script counts them (how many, how many are words of the clicked title, how many stand next to one of
Q's words there) and scores simple Q* against the references, on the held-out products and on the
training products: the raw query; Q with the single title word that scores best (an oracle: the
ceiling of a one-word refinement); Q with the title word just before or just after Q's words; Q with
the title word that users of the training products type most often, over the whole log and (the
default suggester) among the clicks whose query has one of Q's words (whose rates count the training
products' own references, so only its held-out column is fair); and,
with ``--model DIR``, saved refiners decoding by default, with plain beam search, with at most one
inserted word, and both. ``--folds`` scores the rules that learn from the log once more with every
product held out once (folds by product: many more pairs than one split has), the suggester under
several ``query_prior`` and paired against the whole-log rate. ROUGE-L F1
(``rouge-score``, stemmed), as ``topicfeed intent eval``.

    .venv/bin/python benchmarks/intent_log_words.py [--log PATH] [--model DIR ...] [--folds 5] [--max-pairs N ...] [--max-words N ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from intent.benchmark import split_log
from intent.evaluate import mean_tokens, paired_bootstrap, rouge
from intent.mining import Click, MinedPair, mine
from intent.model import NO_LENGTH_PREFERENCE, IntentRefiner, Request, held_out
from intent.suggest import QuerySuggester
from intent.text import stem, tokens
from topicfeed.settings import Settings


def added_words(pairs: Sequence[MinedPair]) -> tuple[int, int, int]:
    """(words the references add to Q, of them words of the clicked title, of them next to one of Q's
    words in the title), compared by ``intent.text.stem``."""
    added = in_title = beside = 0
    for p in pairs:
        query = {stem(t) for t in tokens(p.query)}
        title = [stem(t) for t in tokens(p.title)]
        at_query = [i for i, t in enumerate(title) if t in query]
        for word in (stem(t) for t in tokens(p.refined_query)):
            if word in query:
                continue
            added += 1
            if word in title:
                in_title += 1
                beside += any(abs(i - j) == 1 for i, t in enumerate(title) if t == word for j in at_query)
    return added, in_title, beside


def neighbour(side: int) -> Callable[[MinedPair], str]:
    """Q with the title word just before (side -1) or after (+1) Q's words in the title, where there
    is one that is not Q's and not a number."""

    def refine(p: MinedPair) -> str:
        query, title = tokens(p.query), tokens(p.title)
        keys = {stem(t) for t in query}
        at = [i for i, t in enumerate(title) if stem(t) in keys]
        if not at:
            return " ".join(query)
        i = min(at) - 1 if side < 0 else max(at) + 1
        if 0 <= i < len(title) and stem(title[i]) not in keys and not title[i].replace(".", "").isdigit():
            return " ".join([title[i], *query] if side < 0 else [*query, title[i]])
        return " ".join(query)

    return refine


def typed_word(clicks: Sequence[Click], prior: float, query_prior: float | None, max_pairs: int | None = None, max_words: int | None = None) -> Callable[[MinedPair], str]:
    """Q with the title word that users type most often (``intent.suggest.QuerySuggester``)."""
    suggester = QuerySuggester(prior, query_prior, max_pairs, max_words).fit(clicks)
    return lambda p: suggester.suggest(p.query, (p.title,))


def best_one_word(p: MinedPair) -> str:
    """The oracle: Q, or Q with the one title word (before or after it) that scores best."""
    query = " ".join(tokens(p.query))
    candidates = [query] + [c for w in dict.fromkeys(tokens(p.title)) for c in (f"{w} {query}", f"{query} {w}")]
    return max(candidates, key=lambda c: rouge([c], [p.refined_query])["rougeL"])


def rouge_each(preds: Sequence[str], pairs: Sequence[MinedPair]) -> np.ndarray:
    """ROUGE-L F1 of each Q* against its pair's reference."""
    return np.array([rouge([q], [p.refined_query])["rougeL"] for q, p in zip(preds, pairs, strict=True)])


def against_raw(each: np.ndarray, raw: np.ndarray) -> str:
    """Mean ROUGE-L with its paired gap to the raw query's and how many pairs it wins and loses."""
    gap, low, high = paired_bootstrap(each, raw)
    return f"{each.mean():.3f} ({gap:+.3f} [{low:+.3f}, {high:+.3f}] vs raw; {int((each > raw).sum())} better, {int((each < raw).sum())} worse)"


WHOLE_LOG = "Q + the title word users type most (whole-log rate)"
ALL_PAIRS = "  ... the same, no cap"


def cross_validate(
    clicks: Sequence[Click], folds: int, prior: float, query_priors: Sequence[float], query_prior: float | None = None, caps: Sequence[int] = (), word_caps: Sequence[int] = ()
) -> None:
    """The rules that learn from the log (and the raw query) over ``folds`` folds by product: each
    fold's mined pairs scored by rates of the other folds' clicks, all folds' pairs pooled; the
    suggester under each of ``query_priors``, also paired against the whole-log rate; with ``caps``
    (``word_caps``), the suggester of ``query_prior`` keeping at most each many pairs (typed words),
    paired against it keeping all."""
    pairs: list[MinedPair] = []
    rows: dict[str, list[str]] = {"raw query": [], "Q + the title word before Q": [], WHOLE_LOG: []}
    given = {f"  ... among the clicks with Q's words, query_prior {a:g}": a for a in query_priors}
    rows |= {label: [] for label in given}
    capped = {f"  ... query_prior {query_prior:g}, at most {cap:,} pairs": (cap, None) for cap in caps}
    capped |= {f"  ... query_prior {query_prior:g}, at most {cap:,} typed words": (None, cap) for cap in word_caps}
    rows |= {label: [] for label in capped} | ({ALL_PAIRS: []} if capped else {})
    for k in range(folds):
        in_fold = [held_out(c.doc_id, (k + 1) / folds) and not held_out(c.doc_id, k / folds) for c in clicks]
        test = [c for c, inside in zip(clicks, in_fold, strict=True) if inside]
        train = [c for c, inside in zip(clicks, in_fold, strict=True) if not inside]
        fold = mine(test).pairs
        pairs += fold
        rules = {"raw query": lambda p: p.query, "Q + the title word before Q": neighbour(-1), WHOLE_LOG: typed_word(train, prior, None)}
        rules |= {label: typed_word(train, prior, a) for label, a in given.items()}
        rules |= {label: typed_word(train, prior, query_prior, *cap) for label, cap in capped.items()} | ({ALL_PAIRS: typed_word(train, prior, query_prior)} if capped else {})
        for label, rule in rules.items():
            rows[label] += [rule(p) for p in fold]
    raw = rouge_each(rows["raw query"], pairs)
    whole = rouge_each(rows[WHOLE_LOG], pairs)
    all_pairs = rouge_each(rows[ALL_PAIRS], pairs) if capped else None
    print(f"{folds} folds by product: {len(pairs)} held-out mined pairs in all")
    for label, preds in rows.items():
        each = rouge_each(preds, pairs)
        extra = ""
        if label in given:
            gap, low, high = paired_bootstrap(each, whole)
            extra = f"; vs the whole-log rate {gap:+.3f} [{low:+.3f}, {high:+.3f}]"
        if label in capped and all_pairs is not None:
            gap, low, high = paired_bootstrap(each, all_pairs)
            extra = f"; vs keeping all {gap:+.3f} [{low:+.3f}, {high:+.3f}]"
        print(f"  {label:58s} {against_raw(each, raw)}{extra}")


def main() -> None:
    s = Settings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, default=s.shared_data_dir / "homedepot" / "search_log.tsv", help="a search log (read_search_log's columns)")
    ap.add_argument("--model", type=Path, action="append", default=[], help="a saved refiner to score as well (repeatable)")
    ap.add_argument("--folds", type=int, default=5, help="the rules are also scored with every product held out once: the log split into this many folds by product (the first is the held-out split)")
    ap.add_argument("--query-prior", type=float, nargs="+", default=[1, 3, 10, 30], help="the suggester's query_prior values the folds score")
    ap.add_argument("--max-pairs", type=int, nargs="*", default=[], help="the folds also score the suggester keeping at most this many pairs (IntentSettings.suggest_max_pairs)")
    ap.add_argument("--max-words", type=int, nargs="*", default=[], help="the folds also score the suggester keeping at most this many typed words (IntentSettings.suggest_max_words)")
    args = ap.parse_args()
    split = split_log(args.log)
    sides = {"held-out products": split.mined_test.pairs, "training products": mine(split.train).pairs}
    for name, pairs in sides.items():
        added, in_title, beside = added_words(pairs)
        print(f"{name}: {len(pairs)} mined pairs; the references add {added} words, {in_title} of them title words, {beside} next to one of Q's words in the title")
    rules: dict[str, Callable[[MinedPair], str]] = {
        "raw query": lambda p: p.query,
        "Q + the best single title word (oracle)": best_one_word,
        "Q + the title word before Q": neighbour(-1),
        "Q + the title word after Q": neighbour(+1),
        "Q + the title word users type most (whole-log rate)": typed_word(split.train, s.intent.suggest_prior, None),
        f"  ... among the clicks with Q's words (query_prior {s.intent.suggest_query_prior:g})": typed_word(split.train, s.intent.suggest_prior, s.intent.suggest_query_prior),
    }
    print("ROUGE-L against the mined references: " + " | ".join(sides))
    raw = {name: rouge_each([p.query for p in pairs], pairs) for name, pairs in sides.items()}
    for label, rule in rules.items():
        cells = [against_raw(rouge_each([rule(p) for p in pairs], pairs), raw[name]) for name, pairs in sides.items()]
        print(f"  {label:58s} " + " | ".join(cells))
    if args.folds > 1:
        cross_validate(split.train + split.test, args.folds, s.intent.suggest_prior, args.query_prior, s.intent.suggest_query_prior, args.max_pairs, args.max_words)
    decodings = {"default": {}, "plain beam search": NO_LENGTH_PREFERENCE, "at most 1 inserted word": {"max_inserted_words": 1}, "both": {**NO_LENGTH_PREFERENCE, "max_inserted_words": 1}}
    for directory in args.model:
        refiner = IntentRefiner.from_pretrained(directory)
        for how, overrides in decodings.items():
            cells = []
            for pairs in sides.values():
                out = refiner.decoding(**overrides).predict([Request(p.query, (p.title,)) for p in pairs])
                cells.append(f"{rouge(out, [p.refined_query for p in pairs])['rougeL']:.3f} ({mean_tokens(out):.1f} words)")
            print(f"  {directory.name}, {how:40s} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
