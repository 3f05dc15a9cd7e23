"""The query suggester's memory and speed on a real search log: its pair counts as sorted arrays
(``intent.suggest.PairCounts``) against the dict of dicts it kept before, built in this process from
the same clicks (the baseline).

Fits ``QuerySuggester`` on every click of the log and prints: fit time, the memory the fitted
suggester holds (``tracemalloc``) and its peak while fitting, the saved file's size and load time,
the time of one suggestion (over the first ``--suggestions`` clicks); then the same counts as
``{query word: {title word: [typed, clicks]}}`` (what ``fit`` built before): their memory, checked
equal to the arrays, and the share of suggestions that both give alike.

``--max-pairs N ...`` fits again keeping at most N pairs (``IntentSettings.suggest_max_pairs``):
memory held and while fitting, and how many suggestions stay the same (their ROUGE-L:
``benchmarks/intent_log_words.py --max-pairs``). ``--max-words N ...`` the same keeping at most N typed
words (``IntentSettings.suggest_max_words``).

``--tail`` gives every click a word of its own, typed and in the title (a log's long tail of model
numbers and names): as many distinct typed words as clicks, and the pairs they make; the suggester is
then also fitted without caps, the baseline of what the caps hold.

``--repeat N`` fits on the log N times over: the same distinct pairs, N times the occurrences, which
``PairCounts.count`` reduces part by part, so the peak while fitting should not grow N times.

    .venv/bin/python benchmarks/bench_suggester.py [--log PATH] [--suggestions 5000] [--repeat N] [--tail] [--max-pairs N ...] [--max-words N ...]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from intent.mining import Click, read_search_log
from intent.suggest import SUGGESTER_NAME, PairCounts, QuerySuggester
from intent.text import stem, tokens
from topicfeed.settings import Settings

T = TypeVar("T")


def measured(make: Callable[[], T]) -> tuple[T, float, float, float]:
    """(what ``make`` returns, seconds, MB held after, MB at the peak): run twice, timed without
    ``tracemalloc`` (which slows every allocation), then traced."""
    gc.collect()
    t = time.perf_counter()
    make()
    seconds = time.perf_counter() - t
    gc.collect()
    tracemalloc.start()
    out = make()
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, held / 1e6, peak / 1e6


def nested_pairs(clicks: list[Click], typed: Counter[str]) -> dict[str, dict[str, list[int]]]:
    """The baseline: the pair counts as ``QuerySuggester.fit`` kept them before the arrays."""
    pairs: dict[str, dict[str, list[int]]] = {}
    for c in clicks:
        query, title = {stem(t) for t in tokens(c.query)}, {stem(t) for t in tokens(c.title)}
        for word in title:
            if word in typed:
                for q in query - {word}:
                    counts = pairs.setdefault(q, {}).setdefault(word, [0, 0])
                    counts[0] += word in query
                    counts[1] += 1
    return pairs


class NestedSuggester(QuerySuggester):
    """The baseline's lookups: the rates over the dict of dicts, one word at a time, as before."""

    nested: dict[str, dict[str, list[int]]]

    def _rates_given(self, stems_: Sequence[str], query: set[str]) -> np.ndarray:
        out = []
        for w in stems_:
            base, best = self._rate(w), None
            if self.query_prior is not None and base > 0:
                for q in query:
                    counts = self.nested.get(q, {}).get(w)
                    if counts is not None:
                        r = (counts[0] + self.query_prior * base) / (counts[1] + self.query_prior)
                        best = r if best is None else max(best, r)
            out.append(base if best is None else best)
        return np.array(out, dtype=np.float64)


def timed_suggestions(suggester: QuerySuggester, sample: Sequence[Click]) -> tuple[list[str], float]:
    t = time.perf_counter()
    got = [suggester.suggest(c.query, (c.title,)) for c in sample]
    return got, (time.perf_counter() - t) / max(len(sample), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, help="a search log (Home Depot's columns); default: the shared Home Depot log")
    ap.add_argument("--repeat", type=int, default=1, help="the log's clicks this many times over: as many distinct pairs, N times the occurrences (how fitting scales)")
    ap.add_argument("--tail", action="store_true", help="every click gets a word of its own in its query and title: distinct typed words grow with the log; also fits without caps")
    ap.add_argument("--suggestions", type=int, default=5000, help="clicks suggested for, timing one suggestion")
    ap.add_argument("--max-pairs", type=int, nargs="*", default=[], help="also fit keeping at most this many pairs (IntentSettings.suggest_max_pairs): memory, and how many suggestions stay the same")
    ap.add_argument("--max-words", type=int, nargs="*", default=[], help="also fit keeping at most this many typed words (IntentSettings.suggest_max_words): memory, and how many suggestions stay the same")
    args = ap.parse_args()
    s = Settings()
    clicks, rejected = read_search_log(args.log or s.shared_data_dir / "homedepot" / "search_log.tsv")
    clicks *= args.repeat
    if args.tail:
        clicks = [Click(f"{c.query} zq{n}", c.doc_id, f"{c.title} zq{n}") for n, c in enumerate(clicks)]
    print(f"{len(clicks):,} clicks ({len(rejected)} unreadable rows){f', the log {args.repeat} times over' if args.repeat > 1 else ''}")

    if args.tail:
        free, free_s, free_held, free_peak = measured(lambda: QuerySuggester(s.intent.suggest_prior, s.intent.suggest_query_prior).fit(clicks))
        assert free.pairs is not None
        print(f"without caps: fit {free_s:.2f} s, holds {free_held:.1f} MB (peak {free_peak:.1f} MB while fitting), {len(free.pairs):,} pairs, {len(free.typed):,} typed words")
    suggester, fit_s, held, peak = measured(lambda: QuerySuggester.from_params(s.intent).fit(clicks))
    pairs = suggester.pairs
    assert pairs is not None
    print(
        f"suggester (arrays, caps {s.intent.suggest_max_pairs} pairs and {s.intent.suggest_max_words} typed words): fit {fit_s:.2f} s, holds {held:.1f} MB "
        f"(peak {peak:.1f} MB while fitting), {len(pairs):,} pairs in {pairs.nbytes() / 1e6:.1f} MB of arrays, {len(suggester.typed):,} typed words"
    )
    if args.tail:
        print(f"  memory held: {held / free_held:.2f}x the uncapped suggester's {free_held:.1f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        suggester.save_pretrained(tmp)
        size = (Path(tmp) / SUGGESTER_NAME).stat().st_size
        loaded, load_s, load_held, _ = measured(lambda: QuerySuggester.from_pretrained(tmp))
    print(f"  file {size / 1e6:.1f} MB, loads in {load_s:.2f} s and holds {load_held:.1f} MB")

    exact = free if args.tail else suggester  # with --tail, the baseline counts all, as the uncapped suggester
    nested, nested_s, nested_held, nested_peak = measured(lambda: nested_pairs(clicks, exact.typed))
    print(f"baseline (dict of dicts, as fit kept it before): its pass over the clicks {nested_s:.2f} s, holds {nested_held:.1f} MB (peak {nested_peak:.1f} MB)")
    assert exact.pairs is not None
    same = table(PairCounts.from_nested(nested)) == table(exact.pairs)
    old = NestedSuggester.from_params(s.intent)
    old.typed, old.seen, old.nested, old.fitted_ = exact.typed, exact.seen, nested, True

    sample = clicks[: args.suggestions]
    rounds = [(timed_suggestions(loaded, sample), timed_suggestions(old, sample)) for _ in range(3)]  # alternated: a slow spell hits both
    got, baseline = rounds[0][0][0], rounds[0][1][0]
    per, per_old = statistics.median(r[0][1] for r in rounds), statistics.median(r[1][1] for r in rounds)
    alike = sum(a == b for a, b in zip(got, baseline))
    print(f"  the same counts{' as the uncapped suggester' if args.tail else ''}: {'yes' if same else 'NO'}; the same suggestions: {alike:,} of {len(sample):,}")
    print(f"memory held: arrays {held:.1f} MB, {held / nested_held:.2f}x the dict of dicts' {nested_held:.1f} MB")
    print(f"one suggestion (median of 3 rounds over {len(sample):,}): arrays {per * 1e3:.3f} ms, {per / per_old:.2f}x the dict of dicts' {per_old * 1e3:.3f} ms")
    caps = [(f"{cap:,} pairs", cap, None) for cap in args.max_pairs] + [(f"{cap:,} typed words", None, cap) for cap in args.max_words]
    for label, max_pairs, max_words in caps:
        capped, cap_s, cap_held, cap_peak = measured(lambda p=max_pairs, w=max_words: QuerySuggester(s.intent.suggest_prior, s.intent.suggest_query_prior, p, w).fit(clicks))
        alike = sum(a == b for a, b in zip(timed_suggestions(capped, sample)[0], got))
        kept = len(capped.pairs) if capped.pairs is not None else 0
        print(
            f"at most {label}: fit {cap_s:.2f} s, holds {cap_held:.1f} MB (peak {cap_peak:.1f} MB while fitting), {kept:,} pairs, {len(capped.typed):,} typed words; "
            f"the same suggestions as with all: {alike:,} of {len(sample):,}"
        )


def table(p: PairCounts) -> set[tuple[str, str, int, int]]:
    """Every pair by its words (ids differ between two ``PairCounts`` of the same counts)."""
    words = list(p.ids)
    out = set()
    for q, qi in p.ids.items():
        lo, hi = int(p.start[qi]), int(p.start[qi + 1])
        out |= {(q, words[w], int(ty), int(se)) for w, ty, se in zip(p.title[lo:hi], p.typed[lo:hi], p.seen[lo:hi])}
    return out


if __name__ == "__main__":
    main()
