"""The (Q, Q*) miner on hand-made logs: containment, bias suffixes found statistically, typos, ties."""

from __future__ import annotations

from pathlib import Path

import pytest

from intent.mining import Click, clicks_from_lake, clicks_from_search_log, mine
from intent.text import keeps_keys, key_tokens, normalize, stem

PRODUCTS = {
    "saw": "Ryobi 40V Cordless Pole Saw",
    "drill": "DeWalt 20V Max Hammer Drill Kit",
    "mower": "Honda 21 in. Self Propelled Lawn Mower",
    "fan": "Hampton Bay 52 in. Ceiling Fan with Light",
    "paint": "Behr Premium Exterior Satin Paint",
    "grill": "Weber Spirit Gas Grill Black",
}


def clicks(pairs: list[tuple[str, str]], times: int = 1) -> list[Click]:
    return [Click(q, doc, PRODUCTS[doc]) for q, doc in pairs for _ in range(times)]


def test_the_grounded_longer_query_wins_over_typos_and_bias_suffixes() -> None:
    log = clicks([("pole saw", "saw"), ("ryobi pole saw", "saw"), ("pol saw ryobi cordless", "saw")])
    for doc, q in [("drill", "hammer drill"), ("mower", "lawn mower"), ("fan", "ceiling fan"), ("paint", "exterior paint"), ("grill", "gas grill"), ("saw", "pole saw")]:
        log += clicks([(q, doc), (f"{q} near me", doc), (f"best {q}", doc)])  # users add these to anything
    report = mine(log, min_bias_documents=4)
    found = {b.token: b for b in report.bias}
    assert {"near", "me", "best"} <= set(found) and found["near"].position == "suffix" and found["best"].position == "prefix"
    assert found["me"].position == "suffix" and found["me"].documents == 6 and found["me"].absent_share == 1.0
    assert not {"ryobi", "cordless", "pole"} & set(found)  # words of the documents are not bias
    got = {(p.query, p.doc_id): p.refined_query for p in report.pairs}
    assert got[("pole saw", "saw")] == "ryobi pole saw"  # the typo'd candidate adds an ungrounded word
    assert ("hammer drill", "drill") not in got  # only bias words were added: no refinement
    assert "near me" not in " ".join(got.values()) and "best" not in " ".join(got.values())


def test_ties_go_to_the_more_clicked_then_the_shorter_then_the_first() -> None:
    log = clicks([("drill", "drill"), ("dewalt drill", "drill"), ("hammer drill", "drill")]) + clicks([("hammer drill", "drill")], times=2)
    report = mine(log)
    [pair] = [p for p in report.pairs if p.query == "drill"]
    # "dewalt" and "hammer" are equally rare in the catalog of one title: the more clicked wins
    assert pair.refined_query == "hammer drill" and pair.support == 3
    log = clicks([("drill", "drill"), ("dewalt drill", "drill"), ("hammer drill", "drill")])
    assert [p.refined_query for p in mine(log).pairs if p.query == "drill"] == ["dewalt drill"]  # full tie: the first seen


def test_normalisation_and_key_tokens() -> None:
    assert normalize("  Ryobi 40V   POLE-saw!! ") == "ryobi 40v pole saw"
    assert key_tokens("the best of aespa") == ["best", "aespa"] and key_tokens("the") == ["the"]
    assert keeps_keys("aespa album", "aespa japan album hot mess") and not keeps_keys("aespa album", "japan album")
    assert (stem("gates"), stem("lighting"), stem("batteries"), stem("glass")) == ("gate", "light", "battery", "glass")
    assert mine([Click("", "saw", "x"), Click("!!!", "saw", "x")]).pairs == []


def test_lake_clicks_take_their_query_or_the_last_search(tmp_path: Path) -> None:
    events = [
        {"user_id": "u", "domain": "search", "type": "search", "query": "pole saw", "ts": 1},
        {"user_id": "u", "domain": "search", "type": "click", "item_id": "saw", "query": None, "ts": 2},
        {"user_id": "u", "domain": "homefeed", "type": "click", "item_id": "saw", "query": None, "ts": 3},
        {"user_id": "v", "domain": "search", "type": "click", "item_id": "fan", "query": "fan", "ts": 4},
        {"user_id": "v", "domain": "search", "type": "click", "item_id": "unknown-doc", "query": "fan", "ts": 5},
    ]
    got = clicks_from_lake(events, PRODUCTS)
    assert [(c.query, c.doc_id, c.user_id) for c in got] == [("pole saw", "saw", "u"), ("fan", "fan", "v")]


def test_search_log_reader_counts_relevance_two_as_a_click_and_names_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text("id\tproduct_uid\tproduct_title\tsearch_term\trelevance\n1\t10\tA saw\tsaw\t2.33\n2\t10\tA saw\tdrill\t1.67\n")
    assert [(c.query, c.doc_id) for c in clicks_from_search_log(path)] == [("saw", "10")]
    path.write_text("id\tproduct_uid\tproduct_title\tsearch_term\trelevance\n7\t10\tA saw\tsaw\thigh\n")
    with pytest.raises(ValueError, match="id='7'.*relevance"):
        clicks_from_search_log(path)


def test_teacher_labels_keep_only_grounded_words() -> None:
    from intent.jobs import grounded

    titles = ("RYOBI 40-Volt Cordless Pole Saws with Batteries", "Ryobi pole saw replacement chain")
    assert grounded("pole saw", titles, "ryobi 40 volt pole saw cordless shiny saw") == "ryobi 40 volt pole saw cordless"
    assert grounded("pole saw", titles, "pole saws battery") == "pole saws battery"  # by stem
    assert grounded("aespa", ("aespa Japan debut album Hot Mess",), "aespa world tour") == "aespa"
