"""The one-word search suggestion learned from a log (intent.suggest) on hand-made clicks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from intent.mining import Click
from intent.model import Request
from intent.suggest import PairCounts, QuerySuggester
from topicfeed.settings import IntentSettings

SAW = "Makita 6.5-Amp Top Handle Jig Saw"


def clicks() -> list[Click]:
    log = [
        ("jig saw", "1", SAW), ("makita jig saw", "1", SAW), ("saw", "1", SAW),
        ("jig saw blades", "2", "Bosch Jig Saw Blade Set (10-Piece)"), ("jigsaw", "2", "Bosch Jig Saw Blade Set (10-Piece)"),
        ("cordless drill", "3", "DEWALT 20-Volt Max Cordless Drill"), ("dewalt drill", "3", "DEWALT 20-Volt Max Cordless Drill"),
        ("drill", "4", "Ryobi 18-Volt Cordless Drill Kit"), ("ryobi", "4", "Ryobi 18-Volt Cordless Drill Kit"),
    ]
    return [Click(q, doc, title) for q, doc, title in log]


def test_it_puts_in_the_title_word_users_type_most_where_the_title_has_it() -> None:
    s = QuerySuggester(prior=1.0).fit(clicks())
    assert s.rate("jig") == pytest.approx(3 / (5 + 1))  # 3 of the 5 clicks on titles with "jig" typed it
    assert s.rate("amp") == 0.0 and s.rate("never-seen") == 0.0
    assert s.predict([Request("makita saw", (SAW,))]) == ["makita jig saw"]  # before "saw", as in the title
    assert s.predict([Request("drill", ("Hitachi 12-Volt Cordless Drill",))]) == ["cordless drill"]
    assert s.rate("saw") == pytest.approx(4 / (5 + 1)) and s.rate("saw") > s.rate("jig")
    assert s.predict([Request("Handle", (SAW,))]) == ["handle saw"]  # after Q's words when the title has it after them
    # no title word anyone typed, numbers never: Q alone, normalised
    assert s.predict([Request("Top  Handle", ("Top Handle 6.5",)), Request("saw", ())]) == ["top handle", "saw"]
    two = s.predict([Request("makita", ("Makita Top Handle", SAW))])  # the best word of any clicked title
    assert two == ["makita saw"]
    assert s.suggest("makita", (SAW,), among=["Jigs", "handle"]) == "makita jig"  # only among these words (by stem)
    assert s.suggest("makita", (SAW,), among=["amp"]) == "makita"  # none of them typed: Q alone


def test_the_word_is_the_one_users_type_with_q_s_words_not_the_whole_log_s(tmp_path: Path) -> None:
    """Drill searchers type "cordless" (the whole log's favourite), saw searchers type "jig": for
    "makita saw" the rate among clicks whose query has "saw" or "makita" decides."""
    cordless_saw, drill = "Makita Cordless Jig Saw", "DEWALT Cordless Drill"
    log = [Click("cordless drill", "d", drill)] * 6 + [Click(q, "s", cordless_saw) for q in ("jig saw", "makita jig saw", "saw")]
    whole = QuerySuggester(prior=1.0, query_prior=None).fit(log)
    given = QuerySuggester(prior=1.0, query_prior=3.0).fit(log)
    assert whole.rate("cordless") == pytest.approx(6 / 10) and whole.rate("jig") == pytest.approx(2 / 4)
    assert given.rate_given("jig", ["saw"]) == pytest.approx((2 + 3 * 0.5) / (3 + 3))  # 2 of the 3 saw clicks typed it
    assert given.rate_given("cordless", ["saw"]) == pytest.approx((0 + 3 * 0.6) / (3 + 3))
    assert given.rate_given("cordless", ["never-seen"]) == given.rate("cordless")  # no click with Q's words: the whole-log rate
    request = [Request("makita saw", (cordless_saw,))]
    assert whole.predict(request) == ["makita cordless saw"] and given.predict(request) == ["makita jig saw"]
    assert given.predict([Request("drill", ("Ryobi Cordless Drill",))]) == ["cordless drill"]
    again = QuerySuggester.from_pretrained(given.save_pretrained(tmp_path / "given"))
    assert again.query_prior == 3.0 and again.predict(request) == ["makita jig saw"]
    with pytest.raises(ValueError, match="query_prior"):
        QuerySuggester(query_prior=0)
    # a file from before the arrays kept the pairs as {query word: {title word: [typed, clicks]}}
    nested = tmp_path / "nested"
    nested.mkdir()
    data = json.loads((tmp_path / "given" / "query_suggester.json").read_text())
    assert given.pairs is not None and len(data["pair_counts"]["title"]) == len(given.pairs) == 11  # typed title words with each other query word
    found, typed, seen = given.pairs.lookup("saw", given.pairs.word_ids(["jig", "cordless", "drill", "amp"]))
    assert found.tolist() == [True, True, False, False] and typed[:2].tolist() == [2, 0] and seen[:2].tolist() == [3, 3]
    rows = [({"saw"}, {"jig", "saw", "cordless"}), ({"jig", "saw"}, {"jig", "saw"})] * 3
    whole, parts = PairCounts.count(rows, Counter(jig=1, saw=1)), PairCounts.count(rows, Counter(jig=1, saw=1), chunk=2)  # counted in parts, then merged
    assert parts.ids == whole.ids and all(np.array_equal(getattr(parts, f), getattr(whole, f)) for f in ("start", "title", "typed", "seen"))
    found, typed, seen = whole.lookup("saw", whole.word_ids(["jig"]))  # in 3 of the 6 clicks with "saw" and a "jig" title, typed
    assert (found.tolist(), typed.tolist(), seen.tolist()) == ([True], [3], [6])
    del data["pair_counts"]
    data["pairs"] = {"saw": {"jig": [2, 3], "cordless": [0, 3]}}
    (nested / "query_suggester.json").write_text(json.dumps(data))
    old = QuerySuggester.from_pretrained(nested)
    assert old.rate_given("jig", ["saw"]) == given.rate_given("jig", ["saw"]) and old.predict(request) == ["makita jig saw"]
    assert old.rate_given("jig", ["makita"]) == old.rate("jig")  # a pair the old file lacks: the whole-log rate


def test_at_most_max_pairs_are_kept_the_most_clicked_also_between_parts(tmp_path: Path) -> None:
    def table(p: PairCounts) -> dict[tuple[str, str], tuple[int, int]]:
        words = list(p.ids)
        return {(words[q], words[int(p.title[k])]): (int(p.typed[k]), int(p.seen[k])) for q in range(len(p.start) - 1) for k in range(p.start[q], p.start[q + 1])}

    typed = Counter(jig=1, blade=1, cordless=1)
    rows = [({"saw"}, {"jig", "saw"})] * 5 + [({"jig", "saw"}, {"jig", "saw", "blade"})] * 3 + [({"drill"}, {"cordless", "drill"})] * 2 + [({"bosch"}, {"blade"})]
    whole = table(PairCounts.count(rows, typed))
    assert whole == {("saw", "jig"): (3, 8), ("jig", "blade"): (0, 3), ("saw", "blade"): (0, 3), ("drill", "cordless"): (0, 2), ("bosch", "blade"): (0, 1)}
    assert table(PairCounts.count(rows, typed, max_pairs=5)) == whole  # the log's pairs fit: exact
    three = PairCounts.count(rows, typed, max_pairs=3)
    assert table(three) == {k: whole[k] for k in [("saw", "jig"), ("jig", "blade"), ("saw", "blade")]}
    assert set(three.ids) == {"saw", "jig", "blade"} and len(three.start) == 4  # the words of the pairs cut hold no row
    assert three.lookup("drill", three.word_ids(["cordless"])) is None and three.word_ids(["cordless"]).tolist() == [-1]
    parts = table(PairCounts.count(rows, typed, chunk=2, max_pairs=2))  # cut between parts too: never more than 2 pairs
    assert len(parts) == 2 and parts[("saw", "jig")] == (3, 8)  # the most clicked pair stays, exactly counted
    capped = QuerySuggester(prior=1.0, max_pairs=1).fit(clicks())
    assert capped.pairs is not None and len(capped.pairs) == 1
    again = QuerySuggester.from_pretrained(capped.save_pretrained(tmp_path / "capped"))
    assert again.max_pairs == 1 and len(again.pairs) == 1
    assert QuerySuggester.from_params(IntentSettings(suggest_max_pairs=7)).max_pairs == 7
    with pytest.raises(ValueError, match="max_pairs"):
        QuerySuggester(max_pairs=0)


def test_at_most_max_words_typed_words_are_counted_the_most_typed(tmp_path: Path) -> None:
    whole = QuerySuggester(prior=1.0).fit(clicks())
    assert set(whole.typed) == {"jig", "saw", "makita", "blade", "cordless", "drill", "dewalt", "ryobi"}  # stemmed
    one = QuerySuggester(prior=1.0, max_words=2).fit(clicks())
    assert set(one.typed) == set(one.seen) == {"saw", "drill"}  # typed 4 and 3 times; "jig" 3 times, but "drill" < "jig" by name
    assert one.rate("saw") == whole.rate("saw") and one.rate("jig") == 0.0  # the words kept are counted exactly
    assert one.pairs is not None and len(one.pairs) == 7 and "saw" in one.pairs.ids  # pairs of the words kept only
    words = list(one.pairs.ids)
    assert {words[i] for i in one.pairs.title.tolist()} == {"saw", "drill"}
    assert one.predict([Request("makita", (SAW,))]) == ["makita saw"]  # "jig" is never suggested now
    again = QuerySuggester.from_pretrained(one.save_pretrained(tmp_path / "words"))
    assert again.max_words == 2 and again.predict([Request("makita", (SAW,))]) == ["makita saw"]
    assert QuerySuggester.from_params(IntentSettings(suggest_max_words=9)).max_words == 9
    assert QuerySuggester.from_params(IntentSettings()).max_words == IntentSettings().suggest_max_words
    with pytest.raises(ValueError, match="max_words"):
        QuerySuggester(max_words=0)


def test_it_saves_loads_and_rejects_bad_input(tmp_path: Path) -> None:
    s = QuerySuggester().fit(clicks())
    requests = [Request("makita saw", (SAW,)), Request("cordless", ("DEWALT 20-Volt Max Cordless Drill",))]
    again = QuerySuggester.from_pretrained(s.save_pretrained(tmp_path / "sug"))
    assert again.predict(requests) == s.predict(requests) and again.prior == s.prior
    with pytest.raises(ValueError, match="request 1: field query is empty"):
        s.predict([requests[0], Request(" - ", (SAW,))])
    with pytest.raises(ValueError, match="not fitted"):
        QuerySuggester().predict(requests)
    with pytest.raises(ValueError, match="no clicks"):
        QuerySuggester().fit([])
    old = tmp_path / "old"  # a file saved before query_prior: the whole-log rate alone
    old.mkdir()
    (old / "query_suggester.json").write_text('{"prior": 1.0, "typed": {"jig": 3}, "seen": {"jig": 5}}')
    assert QuerySuggester.from_pretrained(old).query_prior is None and QuerySuggester.from_pretrained(old).predict(requests[:1]) == ["makita jig saw"]
    with pytest.raises(FileNotFoundError, match="no query suggester"):
        QuerySuggester.from_pretrained(tmp_path / "nothing")
    with pytest.raises(ValueError, match="prior"):
        QuerySuggester(prior=-1)


def test_the_saved_counts_are_the_same_in_every_process(tmp_path: Path) -> None:
    """Word ids follow the clicks, not the interpreter's set order (string hashing is seeded per
    process): two processes with other hash seeds save the same file."""
    import os
    import subprocess
    import sys

    code = "import sys; sys.path.insert(0, sys.argv[2]); from test_intent_suggest import clicks; from intent.suggest import QuerySuggester; QuerySuggester().fit(clicks()).save_pretrained(sys.argv[1])"
    for seed in ("1", "2"):
        got = subprocess.run([sys.executable, "-c", code, str(tmp_path / seed), str(Path(__file__).parent)], capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONHASHSEED": seed})
        assert got.returncode == 0, got.stderr
    assert (tmp_path / "1" / "query_suggester.json").read_text() == (tmp_path / "2" / "query_suggester.json").read_text()


def test_the_suggest_cli_learns_from_a_search_log_and_reports_bad_lines(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    log = tmp_path / "log.tsv"
    rows = ["id\tproduct_uid\tproduct_title\tsearch_term\trelevance"]
    rows += [f"{n}\t1\t{SAW}\t{q}\t3" for n, q in enumerate(["jig saw", "makita jig saw", "saw", "jig saw"])]
    rows += ["9\t2\tDEWALT 20-Volt Max Cordless Drill\tcordless drill\t3", "10\t2\tDEWALT 20-Volt Max Cordless Drill\tdrill\tnot a number"]
    log.write_text("\n".join(rows) + "\n")
    requests = [
        {"id": "a", "query": "makita saw", "documents": [{"doc_id": "1", "title": SAW}]},
        {"id": "b", "query": "", "documents": []},
        {"id": "c", "query": "drill", "documents": [{"doc_id": "9", "title": "Ryobi 18-Volt Cordless Drill"}]},
    ]
    src, out = tmp_path / "req.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in requests) + "\n")
    cmd = [str(Path(sys.executable).parent / "topicfeed"), "intent", "suggest", "--search-log", str(log), "--input", str(src), "--output", str(out)]
    got = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "TOPICFEED_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"})
    assert got.returncode == 0, got.stderr
    assert "rejected line 2: field 'query'" in got.stderr and "1 unreadable rows" in got.stderr and "suggested for 2 requests" in got.stdout
    assert [json.loads(x) for x in out.read_text().splitlines()] == [
        {"id": "a", "query": "makita saw", "suggested_query": "makita jig saw"},
        {"id": "c", "query": "drill", "suggested_query": "cordless drill"},
    ]
