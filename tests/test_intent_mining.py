"""The (Q, Q*) miner on hand-made logs: containment, bias suffixes found statistically, typos, ties."""

from __future__ import annotations

from pathlib import Path

import pytest

from intent.mining import Click, clicks_from_lake, mine, read_search_log
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
    got = clicks_from_lake(events, PRODUCTS, {"saw": "tools"})
    assert [(c.query, c.doc_id, c.user_id, c.category) for c in got] == [("pole saw", "saw", "u", "tools"), ("fan", "fan", "v", "")]


def test_search_log_reader_counts_relevance_two_as_a_click_and_quarantines_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text(
        "id\tproduct_uid\tproduct_title\tsearch_term\trelevance\n"
        "1\t10\tA saw\tsaw\t2.33\n"
        "2\t10\tA saw\tdrill\t1.67\n"
        "7\t10\tA saw\tsaw blade\thigh\n"
        "8\t11\tA fan\t \t3\n"
        "9\t11\tA fan\tceiling fan\tnan\n"
        "10\t11\tA fan\n"
        "11\t11\tA fan\tfan\t3\n"
    )
    clicks, bad = read_search_log(path)
    assert [(c.query, c.doc_id, c.title) for c in clicks] == [("saw", "10", "A saw"), ("fan", "11", "A fan")]  # the rows after bad ones go through
    assert [(line, field) for line, field, _ in bad] == [(4, "relevance"), (5, "search_term"), (6, "relevance"), (7, "search_term")]
    assert "not a number: 'high'" in bad[0][2] and bad[3][2] == "missing"


def test_search_log_reader_takes_kaggle_s_latin_1_csv_and_names_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    rows = 'id,product_title,extra,product_uid,search_term,relevance\n3,"Angle bracket, 90\u00b0 steel",x,100001,angle bracket,3\n'
    path.write_bytes(rows.encode("cp1252"))  # not UTF-8: the degree sign is one byte
    clicks, bad = read_search_log(path)
    assert clicks == [Click("angle bracket", "100001", "Angle bracket, 90\u00b0 steel")] and bad == []
    path.write_text("id\tproduct_uid\tsearch_term\trating\n1\t10\tsaw\t3\n")
    with pytest.raises(ValueError, match="column\\(s\\) product_title missing"):
        read_search_log(path)


def test_a_search_log_without_ratings_is_a_click_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "clicks.tsv"
    path.write_text("search_term\tproduct_uid\tproduct_title\npole saw\t10\tRyobi Pole Saw\n\t11\tA fan\nfan\t11\tA fan\n")
    clicks, bad = read_search_log(path)
    assert clicks == [Click("pole saw", "10", "Ryobi Pole Saw"), Click("fan", "11", "A fan")]
    assert bad == [(3, "search_term", "empty")]
    assert "no 'relevance' column" in caplog.text and "every row is read as a click" in caplog.text


def test_mine_cli_reports_rejected_rows_and_mines_the_rest(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "log.tsv"
    path.write_text(
        "id\tproduct_uid\tproduct_title\tsearch_term\trelevance\n"
        "1\t10\tRyobi 40V Cordless Pole Saw\tpole saw\t3\n"
        "2\t10\tRyobi 40V Cordless Pole Saw\tryobi pole saw\t3\n"
        "3\t10\tRyobi 40V Cordless Pole Saw\tpole saw ryobi\tthree\n"
    )
    got = subprocess.run([str(Path(sys.executable).parent / "topicfeed"), "intent", "mine", "--search-log", str(path)], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert "rejected line 4: field 'relevance': not a number: 'three'" in got.stderr and "1 unreadable rows" in got.stderr
    assert "'pole saw' -> 'ryobi pole saw'" in got.stdout


def test_teacher_labels_keep_only_grounded_words() -> None:
    from intent.jobs import grounded

    titles = ("RYOBI 40-Volt Cordless Pole Saws with Batteries", "Ryobi pole saw replacement chain")
    assert grounded("pole saw", titles, "ryobi 40 volt pole saw cordless shiny saw") == "ryobi 40 volt pole saw cordless"
    assert grounded("pole saw", titles, "pole saws battery") == "pole saws battery"  # by stem
    assert grounded("aespa", ("aespa Japan debut album Hot Mess",), "aespa world tour") == "aespa"


def news_row(doc: str, category: str, title: str, entities: str) -> str:
    return "\t".join([doc, category, "sub", title, "abstract", "http://x", entities, "[]"])


def test_entity_searches_of_a_news_catalog_carry_the_category_and_name_bad_rows(tmp_path: Path) -> None:
    from intent.mining import entity_searches

    row = news_row
    ents = '[{"Label": "Taylor Swift", "Type": "P", "SurfaceForms": ["Taylor Swift"]}, {"Label": "UK", "Type": "G", "SurfaceForms": ["UK"]}]'
    path = tmp_path / "news.tsv"
    path.write_text(
        "\n".join(
            [
                row("N1", "music", 'Taylor Swift adds "London" dates', ents),
                row("N2", "music", "Eras Tour: Taylor  Swift in Wembley", '[{"SurfaceForms": ["Taylor  Swift", "Wembley"]}]'),
                row("N3", "sports", "No entities here", "[]"),
                row("N4", "sports", "Broken entities", "[{not json"),
                "N5\tsports\tonly three columns",
            ]
        )
        + "\n"
    )
    clicks, bad = entity_searches(path)
    # surface forms lowercased with spaces collapsed; "uk" (under 3 characters) left out; quotes kept
    assert [(c.query, c.doc_id, c.category) for c in clicks] == [("taylor swift", "N1", "music"), ("taylor swift", "N2", "music"), ("wembley", "N2", "music")]
    assert clicks[0].title == 'Taylor Swift adds "London" dates'
    assert [(line, field) for line, field, _ in bad] == [(4, "title_entities"), (5, "<record>")]


def test_teacher_samples_are_balanced_by_category() -> None:
    from intent.jobs import sample_requests

    log = [Click(f"big {i}", f"d{i}", f"Big title {i}", category="sports") for i in range(30)]
    log += [Click(f"small {i}", f"s{i}", f"Small title {i}", category="music") for i in range(3)]
    log += [Click("small 0", "s9", "Another small title", category="music"), Click("small 0", "x", "Odd one", category="sports")]
    got = sample_requests(log, 8, seed=3)
    assert len(got) == 8 and len({r.query for r in got}) == 8
    assert sum(r.query.startswith("small") for r in got) == 3  # the small category gives all it has
    assert [r.query.split()[0] for r in got[:6]] == ["small", "big"] * 3 or [r.query.split()[0] for r in got[:6]] == ["big", "small"] * 3
    small0 = next(r for r in got if r.query == "small 0")
    assert small0.titles == ("Small title 0", "Another small title", "Odd one")  # a query's category: its clicks' most common
    # without categories: one group, the seeded shuffle of the queries (a prefix for any n)
    plain = [Click(c.query, c.doc_id, c.title) for c in log]
    assert [r.query for r in sample_requests(plain, 5, seed=3)] == [r.query for r in sample_requests(plain, 30, seed=3)][:5]


def test_the_teacher_labels_news_entity_searches_then_the_lake_s_up_to_the_budget(tmp_path: Path) -> None:
    from intent.jobs import teacher_requests
    from topicfeed.settings import IntentSettings, Settings

    path = tmp_path / "news.tsv"
    names = ["Taylor Swift", "Greg Allen", "Jorge Masvidal", "Gerrit Cole"]
    path.write_text("\n".join(news_row(f"N{i}", "sports" if i else "music", f"{n} news", f'[{{"SurfaceForms": ["{n}"]}}]') for i, n in enumerate(names)) + "\n")
    lake = clicks([("pole saw", "saw"), ("hammer drill", "drill"), ("lawn mower", "mower"), ("ceiling fan", "fan"), ("gas grill", "grill")])
    s = Settings(data_dir=tmp_path, intent=IntentSettings(teacher_samples=5, news_samples=2, title_searches=0))
    got = teacher_requests(s, lake, path)
    assert len(got) == 5
    assert {r.query for r in got[:2]} <= {n.lower() for n in names} and "taylor swift" in {r.query for r in got[:2]}  # balanced: music's one name
    assert {r.query for r in got[2:]} <= {c.query for c in lake}
    assert sorted(r.query for r in teacher_requests(s, lake)) == sorted(c.query for c in lake)  # no news: the lake's alone, 5
    s = Settings(data_dir=tmp_path, intent=IntentSettings(teacher_samples=1, news_samples=2, title_searches=0))
    assert len(teacher_requests(s, lake, path)) == 1
    # then the searches made from the gold examples (title_searches), after the budget
    s = Settings(data_dir=tmp_path, intent=IntentSettings(teacher_samples=5, news_samples=2, title_searches=1))
    from intent.jobs import title_searches
    from intent.model import gold_split

    made = title_searches(gold_split()[0], 1)
    assert teacher_requests(s, lake, path) == got + made and len(made) > 100


def test_searches_made_from_gold_examples_are_its_titles_alone_then_their_names() -> None:
    from intent.jobs import title_searches
    from intent.model import Example, Request
    from intent.text import capitalized_runs

    assert capitalized_runs("aespa announce Japanese debut album Hot Mess") == ["japanese", "hot mess"]
    assert capitalized_runs("Inside the making of Cowboy Carter") == ["cowboy carter"]  # a lone first word is the sentence's
    assert capitalized_runs("Zelda Echoes of Wisdom review") == ["zelda echoes of wisdom"]  # a function word between names kept
    assert capitalized_runs("The Of") == [] and capitalized_runs("all lower case") == []
    assert capitalized_runs("Post Malone goes country on new album F-1 Trillion") == ["post malone", "trillion"]  # no name "f"
    two = Example("aespa", ("aespa announce Japanese debut album Hot Mess", "aespa Hot Mess tops Oricon daily chart"), "aespa japan album hot mess")
    one = Example("Taylor Swift", ("Taylor Swift adds London dates to the Eras Tour",), "taylor swift eras tour london")
    got = title_searches([two, one, one], 4)
    assert got == [
        Request("aespa", (two.titles[0],)), Request("aespa", (two.titles[1],)), Request("japanese", two.titles), Request("hot mess", two.titles),
        Request("london", one.titles), Request("eras tour", one.titles),  # not Q's own name; the repeated example adds nothing
    ]
    assert len(title_searches([two], 2)) == 2 and title_searches([two], 0) == []


def test_searches_made_from_clicks_leave_one_typed_word_out_for_the_search_head() -> None:
    from intent.jobs import made_searches

    log = clicks([("ryobi pole saw", "saw"), ("ryobi pole saw", "saw"), ("pole saw", "saw"), ("drill", "drill"), ("gas gas grill", "grill"), ("hammer drill kit", "drill")])
    log.append(Click("lawn mower", "blank", ""))  # a title without words: nothing to choose from
    made = made_searches(log, 10, seed=3)
    # one per distinct (query, document) with two or more different words: the repeated click, the
    # one-word query, the query with a word twice and the wordless title give none
    assert sorted(e.refined for e in made) == ["hammer drill kit", "pole saw", "ryobi pole saw"]
    for e in made:
        assert e.head == "search" and e.category == "search" and len(e.titles) == 1
        left = set(e.refined.split()) - set(e.query.split())
        assert len(left) == 1 and e.query.split() == [w for w in e.refined.split() if w not in left]  # Q: the query without one of its words, in order
    assert made == made_searches(log, 10, seed=3)  # seeded
    assert len(made_searches(log, 2, seed=3)) == 2 and made_searches(log, 0) == []
    queries = {e.query for s in range(20) for e in made_searches(log, 10, seed=s) if e.refined == "ryobi pole saw"}
    assert queries == {"pole saw", "ryobi saw", "ryobi pole"}  # any of its words, title word or not


def test_search_logs_of_other_shapes_are_read_by_their_own_column_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    crowdflower = tmp_path / "train.csv"  # Kaggle's CrowdFlower search relevance: no product id, ratings 1-4
    crowdflower.write_text(
        'id,query,product_title,product_description,median_relevance,relevance_variance\n'
        '1,bridal shower decorations,"Accent Pillow with Heart Design - Red/Black",Red satin,1,0\n'
        '2,led christmas lights,"Set of 10 Battery Operated LED Lights",x,4,0\n'
        '3,led christmas lights,"Set of 10 Battery Operated LED Lights",x,4,0.5\n'
        '4,,"Blank",x,3,0\n'
    )
    clicks, bad = read_search_log(crowdflower, min_relevance=3)
    assert clicks == [Click("led christmas lights", "Set of 10 Battery Operated LED Lights", "Set of 10 Battery Operated LED Lights")] * 2
    assert bad == [(5, "query", "empty")]  # the field named as the log names it
    assert "each distinct title is a product" in caplog.text
    flags = tmp_path / "clicks.tsv"  # a click log with a 0/1 flag, its own names and case
    flags.write_text("Keyword\tItem_ID\tTitle\tClicked\npole saw\t7\tRyobi Pole Saw\t1\npole saw\t8\tA fan\t0\nfan\t8\tA fan\ttrue\nfan\t8\tA fan\tmaybe\n")
    clicks, bad = read_search_log(flags)
    assert clicks == [Click("pole saw", "7", "Ryobi Pole Saw"), Click("fan", "8", "A fan")]
    assert bad == [(5, "Clicked", "not a number: 'maybe'")]
    (tmp_path / "bad.tsv").write_text("id\tq\tdocument\n1\tsaw\tA saw\n")
    with pytest.raises(ValueError, match="product_title, search_term missing.*search_term \\(or query"):
        read_search_log(tmp_path / "bad.tsv")
