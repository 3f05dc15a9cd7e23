"""The word tagger (``intent.tagger.WordTagger``): an encoder that chooses Q*'s title words, on a tiny
BERT made here (nothing downloaded)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from intent.model import Example, IntentRefiner, Request
from intent.students import is_saved_refiner, load_refiner, new_student
from intent.tagger import TAGGER_CONFIG, WordTagger, insert_in_title_order
from intent.text import tokens
from topicfeed.settings import IntentSettings

from tiny_lm import tiny_llama_dir
from tiny_models import save_tiny

BIN = Path(sys.executable).parent / "topicfeed"
FAST = {"tagger_epochs": 12, "tagger_learning_rate": 3e-3, "batch_size": 8, "tagger_threshold": 0.5}
NAMES = ["aespa", "ryobi", "nike", "lego", "bts", "dyson", "rome", "oslo"]
FILLERS = ["new", "daily", "chart", "sale", "report", "week", "best", "guide"]


def examples() -> list[Example]:
    """Q is a name; the titles have the word "album" or "tour" among fillers, and Q* is Q + that word:
    a rule a tiny encoder learns (the chosen word is the one of these two that the titles hold)."""
    out = []
    for n, name in enumerate(NAMES):
        for k, word in enumerate(("album", "tour")):
            a, b = FILLERS[(n + k) % 8], FILLERS[(n + 3 * k + 1) % 8]
            out.append(Example(name, (f"{name} {a} {word} {b}", f"{b} {name} {a}"), f"{name} {word}"))
    return out


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("bert", tmp_path_factory.mktemp("tiny-bert") / "bert")


@pytest.fixture(scope="module")
def trained(bert: Path) -> WordTagger:
    return WordTagger.from_base(bert, **FAST).fit(examples() * 4)


def test_title_words_go_where_their_title_has_them_among_q_s_words() -> None:
    assert insert_in_title_order("pole saw", ["Ryobi 40V Pole Saw"], ["ryobi"]) == ["ryobi", "pole", "saw"]
    assert insert_in_title_order("pole saw", ["Ryobi 40V Pole Saw Kit"], ["kit", "40v", "ryobi"]) == ["ryobi", "40v", "pole", "saw", "kit"]
    # each word placed by the first title that has it; Q's words stay in Q's order; a word of Q is not added twice
    assert insert_in_title_order("taylor swift", ["London dates for Taylor Swift", "Eras Tour"], ["london", "eras", "tour", "swift"]) == ["london", "taylor", "swift", "eras", "tour"]
    assert insert_in_title_order("rome", [], ["colosseum"]) == ["rome"]


def test_the_tagger_learns_which_title_words_q_star_has_and_keeps_q(trained: WordTagger) -> None:
    assert trained.fit_report_["examples"] == 64 and trained.fit_report_["last_loss"] < trained.fit_report_["first_loss"]
    fresh = [Request("zurich", ("zurich daily album chart", "best zurich week")), Request("kyoto tram", ("new kyoto tram tour report",))]
    got = trained.predict(fresh)
    assert got == ["zurich album", "kyoto tram tour"]
    probs = trained.word_probs(fresh)
    assert probs[0]["album"] > 0.5 > max(probs[0][w] for w in ("daily", "chart", "best", "week"))
    assert set(probs[1]) == {"new", "kyoto", "tram", "tour", "report"}  # every title word, Q's too


def test_the_threshold_and_the_length_cap_decide_how_many_words(trained: WordTagger) -> None:
    r = [Request("zurich", ("zurich daily album chart sale report week",))]
    assert trained.decoding(tagger_threshold=0.999999).predict(r) == ["zurich"]  # nothing is that sure
    every = trained.decoding(tagger_threshold=1e-9).predict(r)[0].split()
    assert every == ["zurich", "daily", "album", "chart", "sale", "report", "week"]  # title order
    capped = trained.decoding(tagger_threshold=1e-9, max_refined_tokens=3).predict(r)[0].split()
    probs = trained.word_probs(r)[0]
    best_two = sorted((w for w in probs if w != "zurich"), key=lambda w: -probs[w])[:2]
    assert len(capped) == 3 and capped[0] == "zurich" and set(capped[1:]) == set(best_two)


def test_save_load_refine_is_deterministic_and_either_kind_loads_through_one_door(trained: WordTagger, tmp_path: Path) -> None:
    saved = trained.save_pretrained(tmp_path / "tagger")
    meta = json.loads((saved / TAGGER_CONFIG).read_text())
    assert meta["params"]["tagger_threshold"] == 0.5 and meta["fit"]["examples"] == 64
    requests = [Request(e.query, e.titles) for e in examples()]
    again = load_refiner(saved, serving_precision="float32")
    assert isinstance(again, WordTagger) and is_saved_refiner(saved)
    assert again.predict(requests) == trained.predict(requests) == again.predict(requests)
    assert isinstance(load_refiner(saved, serving_precision="int8"), WordTagger)
    served = load_refiner(saved)  # as saved: float32
    with pytest.raises(ValueError, match="inference only"):
        load_refiner(saved, serving_precision="bfloat16").save_pretrained(tmp_path / "again")
    assert served.params.serving_precision == "float32"
    lm = IntentRefiner.from_base(tiny_llama_dir(tmp_path / "llama"), epochs=1, num_beams=2, max_new_tokens=4).fit(examples()[:4]).save_pretrained(tmp_path / "lm")
    assert isinstance(load_refiner(lm), IntentRefiner) and is_saved_refiner(lm)
    with pytest.raises(FileNotFoundError, match="is not a saved intent refiner"):
        load_refiner(tmp_path)
    assert not is_saved_refiner(tmp_path)


def test_bad_requests_and_examples_are_clear_errors_and_huge_inputs_are_cut(trained: WordTagger, bert: Path) -> None:
    with pytest.raises(ValueError, match="request 1: field 'query' has no words"):
        trained.predict([Request("rome", ("rome tour",)), Request("  ?! ", ("a title",))])
    with pytest.raises(ValueError, match="training example 0: field refined has no words"):
        WordTagger.from_base(bert, **FAST).fit([Example("rome", ("rome tour",), " ")])
    with pytest.raises(ValueError, match="no training examples"):
        WordTagger.from_base(bert, **FAST).fit([])
    assert trained.predict([Request("rome", ())]) == ["rome"]  # no clicks: Q
    huge = Request("rome " * 40, tuple("rome album tour " * 300 for _ in range(5)))
    out = trained.predict([huge])[0].split()
    assert out == tokens(huge.query)[: trained.params.max_refined_tokens]  # Q over the cap: Q cut
    long_titles = Request("rome", tuple("rome daily album chart " * 200 for _ in range(5)))
    ids, firsts = trained.encode(long_titles)
    assert len(ids) <= trained.params.tagger_max_tokens and trained.predict([long_titles])[0].startswith("rome")


def test_the_default_student_is_the_tagger_and_the_cli_trains_and_serves_it(bert: Path, tmp_path: Path) -> None:
    assert IntentSettings().student == "tagger" and isinstance(new_student(IntentSettings(tagger_base=str(bert))), WordTagger)
    assert isinstance(new_student(IntentSettings(student="lm", base_model=str(tiny_llama_dir(tmp_path / "llama")))), IntentRefiner)
    env = {"TOPICFEED_DATA_DIR": str(tmp_path / "data"), "TOPICFEED_INTENT__TAGGER_BASE": str(bert), "TOPICFEED_INTENT__TAGGER_EPOCHS": "1", "COLUMNS": "200", "PATH": str(BIN.parent)}
    got = subprocess.run([str(BIN), "intent", "train", "--out", str(tmp_path / "m"), "--gold-only"], capture_output=True, text=True, timeout=300, env=env)
    assert got.returncode == 0, got.stderr
    assert "(word tagger)" in got.stdout and (tmp_path / "m" / TAGGER_CONFIG).is_file()
    src = tmp_path / "requests.jsonl"
    src.write_text(json.dumps({"id": "a", "query": "pole saw", "documents": [{"doc_id": "d1", "title": "Ryobi 40V Pole Saw"}]}) + "\n" + '{"id": "b", "query": ""}\n')
    out = tmp_path / "out.jsonl"
    got = subprocess.run([str(BIN), "intent", "refine", "--model", str(tmp_path / "m"), "--input", str(src), "--output", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert got.returncode == 0, got.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a"] and set(tokens("pole saw")) <= set(rows[0]["refined_query"].split())
    assert "line 2" in got.stdout + got.stderr
    bad = subprocess.run([str(BIN), "intent", "train", "--out", str(tmp_path / "x"), "--student", "forest"], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "tagger or lm" in bad.stderr


def test_the_cli_trains_on_a_real_search_log_s_training_products_only(bert: Path, tmp_path: Path) -> None:
    """``intent train --search-log F --holdout H``: the log's mined pairs, made searches and suggester
    come from the products ``intent eval --search-log F --holdout H`` does not score, none from the others."""
    from intent.jobs import made_searches, split_by_product
    from intent.mining import mine, read_search_log
    from intent.model import gold_split, held_out
    from intent.suggest import SUGGESTER_NAME, QuerySuggester

    ids = [f"p{i}" for i in range(40)]
    test_ids = [i for i in ids if held_out(i, 0.5)][:4]
    train_ids = [i for i in ids if not held_out(i, 0.5)][:4]
    assert len(test_ids) == len(train_ids) == 4
    rows = ["id\tproduct_uid\tproduct_title\tsearch_term\trelevance"]
    for k, pid in enumerate(train_ids + test_ids):
        brand, thing = ["ryobi", "makita", "husky", "kraus", "dewalt", "behr", "glacier", "veranda"][k], ["saw", "drill", "bag", "sink", "nailer", "paint", "vanity", "fence"][k]
        title = f"{brand.title()} 18 in. Cordless {thing.title()} Kit"
        for q, rel in ((thing, 3.0), (f"cordless {thing}", 2.67), (f"{brand} cordless {thing}", 2.33), (f"{thing} kit", 1.0)):
            rows.append(f"{len(rows)}\t{pid}\t{title}\t{q}\t{rel}")
    log_file = tmp_path / "search_log.tsv"
    log_file.write_text("\n".join(rows) + "\n")
    clicks, _ = read_search_log(log_file)
    train, test = split_by_product(clicks, 0.5)
    assert {c.doc_id for c in train} == set(train_ids) and {c.doc_id for c in test} == set(test_ids)
    settings = IntentSettings()

    def recipe_size(on: list) -> int:  # the default recipe's examples with these clicks: gold, mined pairs, made searches
        return len(gold_split()[0]) * settings.gold_repeats + len(mine(on).pairs) + len(made_searches(on, settings.search_examples, settings.seed))

    expected = recipe_size(train)
    assert mine(test).pairs and expected < recipe_size(clicks)

    env = {"TOPICFEED_DATA_DIR": str(tmp_path / "data"), "TOPICFEED_INTENT__TAGGER_BASE": str(bert), "TOPICFEED_INTENT__TAGGER_EPOCHS": "1", "COLUMNS": "200", "PATH": str(BIN.parent)}
    got = subprocess.run([str(BIN), "intent", "train", "--out", str(tmp_path / "m"), "--search-log", str(log_file), "--holdout", "0.5"], capture_output=True, text=True, timeout=300, env=env)
    assert got.returncode == 0, got.stderr
    assert f"{len(train)} clicks on 4 training products; {len(test)} clicks on 4 products held out (--holdout 0.5)" in got.stdout
    assert f"on {expected} examples" in got.stdout  # the gold set + the training products' pairs and made searches
    fitted = QuerySuggester.from_params(settings).fit(train).save_pretrained(tmp_path / "expected")
    assert (tmp_path / "m" / SUGGESTER_NAME).read_text() == (fitted / SUGGESTER_NAME).read_text()
    # no lake is read: the data dir has none, and an unreadable log or a contradiction is a clear error
    missing = subprocess.run([str(BIN), "intent", "train", "--out", str(tmp_path / "x"), "--search-log", str(tmp_path / "nope.tsv")], capture_output=True, text=True, timeout=120, env=env)
    assert missing.returncode == 2 and "nope.tsv" in missing.stderr
    both = subprocess.run([str(BIN), "intent", "train", "--out", str(tmp_path / "x"), "--search-log", str(log_file), "--gold-only"], capture_output=True, text=True, timeout=120, env=env)
    assert both.returncode == 2 and "--gold-only" in both.stderr
    assert not (tmp_path / "x").exists()


def two_heads() -> list[Example]:
    """Q is a name; each title has "album" or "tour" (Q* adds it) and "sale" or "guide" (what the users
    typed with the name: the search head's answer), among fillers, in either order."""
    out = []
    others = ["new", "daily", "chart", "report", "week", "best"]
    for n, name in enumerate(NAMES):
        for k, word in enumerate(("album", "tour")):
            for j, typed in enumerate(("sale", "guide")):
                filler = others[(n + k + 2 * j) % 6]
                title = f"{name} {filler} {word} {typed}" if (n + j) % 2 else f"{typed} {name} {word} {filler}"
                out.append(Example(name, (title,), f"{name} {word}"))
                out.append(Example(name, (title,), " ".join(insert_in_title_order(name, [title], [typed])), head="search"))
    return out


def test_the_search_head_learns_what_users_type_beside_q_star_and_is_saved_with_it(bert: Path, tmp_path: Path) -> None:
    tagger = WordTagger.from_base(bert, **FAST, searches_train_intent=False).fit(two_heads() * 2)  # each example trains its own head only
    assert tagger.has_search_head and tagger.fit_report_["search_examples"] == 64
    fresh = [Request("zurich", ("zurich daily album sale",)), Request("kyoto", ("guide kyoto tour best",))]
    assert tagger.predict(fresh) == ["zurich album", "kyoto tour"]
    assert tagger.suggest(fresh) == ["zurich sale", "guide kyoto"]
    assert tagger.decoding(search_threshold=0.999999).suggest(fresh) == ["zurich", "kyoto"]  # none that sure: Q alone
    assert len(tagger.decoding(search_threshold=1e-9).suggest(fresh)[0].split()) == 2  # search_words 1: one word at most
    saved = load_refiner(tagger.save_pretrained(tmp_path / "both"), serving_precision="float32")
    assert saved.has_search_head and saved.suggest(fresh) == tagger.suggest(fresh) and saved.predict(fresh) == tagger.predict(fresh)
    # the CLI suggests with it: intent suggest --model
    src, out = tmp_path / "requests.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(json.dumps({"id": f"r{i}", "query": r.query, "documents": [{"doc_id": f"d{i}", "title": r.titles[0]}]}) for i, r in enumerate(fresh)) + "\n{\"id\": \"bad\"}\n")
    env = {"TOPICFEED_DATA_DIR": str(tmp_path / "data"), "TOPICFEED_INTENT__SERVING_PRECISION": "float32", "COLUMNS": "200", "PATH": str(BIN.parent)}
    got = subprocess.run([str(BIN), "intent", "suggest", "--model", str(tmp_path / "both"), "--input", str(src), "--output", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert got.returncode == 0, got.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == [{"id": "r0", "query": "zurich", "suggested_query": "zurich sale"}, {"id": "r1", "query": "kyoto", "suggested_query": "guide kyoto"}]
    assert "rejected 1" in got.stdout and "line 3" in got.stderr
    with pytest.raises(ValueError, match="request 0: field 'query' has no words"):
        tagger.suggest([Request(" ", ("a title",))])
    with pytest.raises(ValueError, match="head 'next'"):
        tagger.word_probs(fresh, head="next")


def test_made_searches_train_the_intent_head_too_unless_told_not_to(bert: Path) -> None:
    """``searches_train_intent`` (default on): a made search is a (Q, longer query) pair of the log, so
    it scores the intent logit too, and Q* learns what the log's users add; off, the intent logit's
    weights are never trained by it (AdamW's decay only shrinks them)."""
    import torch

    searches = [e for e in two_heads() if e.head == "search"] * 2
    fresh = [Request("zurich", ("zurich daily album sale",)), Request("kyoto", ("guide kyoto tour best",))]
    on = WordTagger.from_base(bert, **FAST).fit(searches)
    assert on.params.searches_train_intent and on.fit_report_["search_examples"] == 64
    assert on.suggest(fresh) == ["zurich sale", "guide kyoto"] and on.predict(fresh) == on.suggest(fresh)
    off = WordTagger.from_base(bert, **FAST, searches_train_intent=False).fit(searches)
    assert off.suggest(fresh) == ["zurich sale", "guide kyoto"]
    start = WordTagger.from_base(bert, **FAST).model.classifier.weight.detach()  # the same seeded initialisation

    def cosine(model: WordTagger, row: int) -> float:
        return float(torch.nn.functional.cosine_similarity(model.model.classifier.weight.detach()[row], start[row], dim=0))

    assert cosine(off, 0) > 0.9999 and cosine(on, 0) < 0.99  # the intent row: untouched but for decay / trained
    assert cosine(off, 1) < 0.99 and cosine(on, 1) < 0.99  # the search row is trained either way


def test_a_tagger_without_a_search_head_says_so(trained: WordTagger, bert: Path, tmp_path: Path) -> None:
    assert not trained.has_search_head  # trained on Q* only: its search logit learned nothing
    with pytest.raises(ValueError, match="no search head"):
        trained.suggest([Request("rome", ("rome tour",))])
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    one = WordTagger(AutoModelForTokenClassification.from_pretrained(bert, num_labels=1), AutoTokenizer.from_pretrained(bert), IntentSettings(**FAST))  # as saved before the search head
    assert one.heads == 1
    with pytest.raises(ValueError, match="training example 1: field head is 'search'; this tagger learns \\['intent'\\]"):
        one.fit([Example("rome", ("rome tour",), "rome tour"), Example("rome", ("rome tour",), "rome tour", head="search")])
    one.fit(examples())
    again = load_refiner(one.save_pretrained(tmp_path / "one"), serving_precision="float32")
    assert again.heads == 1 and not again.has_search_head and again.predict([Request("rome", ("rome tour",))])[0].startswith("rome")
    src = tmp_path / "requests.jsonl"
    src.write_text(json.dumps({"id": "r0", "query": "rome", "documents": [{"doc_id": "d0", "title": "rome tour"}]}) + "\n")
    env = {"TOPICFEED_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200", "PATH": str(BIN.parent)}
    got = subprocess.run([str(BIN), "intent", "suggest", "--model", str(tmp_path / "one"), "--input", str(src), "--output", str(tmp_path / "o.jsonl")], capture_output=True, text=True, timeout=300, env=env)
    assert got.returncode == 2 and "has no search head" in got.stderr
    with pytest.raises(ValueError, match="training example 0: field head is 'search'; the causal refiner learns Q\\* only"):
        IntentRefiner.from_base(tiny_llama_dir(tmp_path / "llama"), epochs=1).fit([Example("rome", ("rome tour",), "rome tour", head="search")])
