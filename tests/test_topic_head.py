"""The topic head: a linear layer over the mean prompt state, trained with the LM, re-ranking its beams."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from test_classifier import SMALL, toy_docs

from classifier.model import HEAD_NAME, TopicClassifier
from classifier.rescore import rescore

from tiny_models import save_tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TopicClassifier]:
    root = tmp_path_factory.mktemp("tiny-head")
    out = {}
    for kind in ("bert", "gpt2"):
        clf = TopicClassifier.from_base(save_tiny(kind, root / kind), SMALL, max_prompt_tokens=16, topic_head=True, seed=1, epochs=40, batch_size=4, learning_rate=1e-2, label_smoothing=0.0)
        out[kind] = clf.fit(toy_docs(), progress=False)
    return out


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_the_head_learns_the_topics_with_the_lm(kind: str, trained: dict[str, TopicClassifier]) -> None:
    clf = trained[kind]
    docs = toy_docs()
    logp = clf.head_log_proba(docs)
    assert logp.shape == (len(docs), len(SMALL.nodes))
    assert torch.allclose(logp.exp().sum(1), torch.ones(len(docs)), atol=1e-5)
    head_top = [SMALL.nodes[int(i)].path for i in logp.argmax(1)]
    accuracy = sum(p == d.topic for p, d in zip(head_top, docs)) / len(docs)
    assert accuracy >= 0.9, head_top


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_predict_re_ranks_the_lm_beams_by_the_head(kind: str, trained: dict[str, TopicClassifier]) -> None:
    clf = copy.deepcopy(trained[kind])  # the shared fixture stays as trained
    docs = toy_docs()
    clf.set_params(rescore_beams=4)
    lm = clf.predict(docs, k=4, head_weight=0.0)  # the LM's own 4 best
    # the head's probabilities as predict pools them (left-padded prompt pass) and as head_log_proba does (right-padded)
    head = clf.head_log_proba(docs).exp().tolist()
    for weight in (0.5, 3.0):
        answers = clf.predict(docs, k=2, head_weight=weight, batch_size=3)
        for doc_answers, beams, p in zip(answers, lm, head):
            expected = rescore(beams, {n.path: p[n.id] for n in SMALL.nodes}, weight, 2)
            assert [a.path for a in doc_answers] == [a.path for a in expected]
            assert [a.score for a in doc_answers] == pytest.approx([a.score for a in expected], rel=1e-4)
            assert len({a.path for a in doc_answers}) == 2 and all(a.path in SMALL for a in doc_answers)
            assert doc_answers[0].score >= doc_answers[1].score
    # unconstrained answers stay the LM's own, whatever the weight
    assert clf.predict(docs, k=2, constrained=False, head_weight=3.0) == clf.predict(docs, k=2, constrained=False, head_weight=0.0)


def test_a_strong_head_overturns_the_lm_and_save_load_keeps_it(trained: dict[str, TopicClassifier], tmp_path: Path) -> None:
    clf = copy.deepcopy(trained["bert"])  # its head is overwritten below; the shared fixture stays as trained
    docs = toy_docs()
    with torch.no_grad():  # a head that is sure of one topic for every document
        clf.topic_head.weight.zero_()
        clf.topic_head.bias.fill_(-20.0)
        clf.topic_head.bias[SMALL.node("Food & Drink").id] = 20.0
    clf.set_params(rescore_beams=len(SMALL.nodes))
    answers = clf.predict(docs, k=1, head_weight=5.0)
    assert all(a[0].path == "Food & Drink" for a in answers)
    assert all(a[0].score == pytest.approx(1.0) for a in answers)
    assert any(a[0].path != "Food & Drink" for a in clf.predict(docs, k=1, head_weight=0.0))

    clf.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / HEAD_NAME).exists()
    loaded = TopicClassifier.from_pretrained(tmp_path / "model")
    loaded.set_params(rescore_beams=clf.head_beams)
    assert loaded.topic_head is not None
    assert loaded.predict(docs, k=3, head_weight=5.0) == clf.predict(docs, k=3, head_weight=5.0)
    assert math.isclose(float(loaded.topic_head.bias.detach()[SMALL.node("Food & Drink").id]), 20.0)


def test_a_head_for_another_taxonomy_is_refused(trained: dict[str, TopicClassifier], tmp_path: Path) -> None:
    clf = trained["bert"]
    with pytest.raises(ValueError, match="classes"):
        TopicClassifier(clf.model, clf.tokenizer, SMALL, prefix_lm=True, topic_head=torch.nn.Linear(32, 3))
    with pytest.raises(ValueError, match="no topic head"):
        TopicClassifier.from_base(save_tiny("bert", tmp_path / "tiny"), SMALL, topic_head=False).head_log_proba(toy_docs())
