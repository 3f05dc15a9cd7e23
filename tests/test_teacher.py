"""The local LLM teacher and judge (classifier/teacher.py) and soft targets, on a tiny GGUF Llama the
test writes itself: the code path Gemma 3 270M takes, at a size that trains in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.data import Doc
from classifier.model import TopicClassifier
from classifier.pipeline import EmbeddingJudge, make_judge, make_teacher
from classifier.teacher import LMEncoder, LMFeatureTopicClassifier, LMTeacher, hard, teacher_labels
from topicfeed.settings import ClassifierSettings
from topicfeed.taxonomy import Taxonomy

from tiny_lm import tiny_gguf

TAX = Taxonomy.from_paths(["News > Politics", "News > Crime", "Sports > Football", "Food & Drink"])
TEXTS = {
    "News > Politics": ["election vote senate", "senate vote bill", "vote election campaign"],
    "News > Crime": ["police arrest robbery", "robbery police court", "court arrest police"],
    "Sports > Football": ["goal match striker", "striker goal league", "league match goal"],
    "Food & Drink": ["recipe soup bread", "bread recipe oven", "soup oven recipe"],
}
DOCS = [Doc(f"{t}-{i}", text, "", (t,)) for t, texts in TEXTS.items() for i, text in enumerate(texts)]


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_gguf(tmp_path_factory.mktemp("teacher") / "tiny.gguf")


def test_doc_weights_are_checked_per_topic() -> None:
    assert Doc("a", "t", "", ("News", "Food & Drink"), (0.7, 0.3)).weights == (0.7, 0.3)
    with pytest.raises(ValueError, match=r"document 'b'.*'weights'"):
        Doc("b", "t", "", ("News",), (0.5, 0.5))
    with pytest.raises(ValueError, match="'weights'"):
        Doc("c", "t", "", ("News",), (-1.0,))


def test_soft_targets_weight_the_loss(gguf: Path) -> None:
    """The same document, both paths as targets: the weights decide which one the model learns."""
    params = {"max_prompt_tokens": 16, "seed": 1, "epochs": 30, "batch_size": 4, "learning_rate": 1e-2, "label_smoothing": 0.0, "topic_head": True}
    doc = "the match and the vote"
    lean = {}
    for weights in ((0.9, 0.1), (0.1, 0.9)):
        clf = TopicClassifier.from_base(gguf, TAX, **params)
        clf.fit([Doc("x", doc, "", ("Sports > Football", "News > Politics"), weights)], progress=False)
        football, politics = clf.log_prob([doc, doc], ["Sports > Football", "News > Politics"])
        lean[weights] = football - politics
    assert lean[(0.9, 0.1)] > 0 > lean[(0.1, 0.9)]


def test_teacher_labels_hard_and_soft(gguf: Path) -> None:
    teacher = TopicClassifier.from_base(gguf, TAX, max_prompt_tokens=16, seed=1, epochs=25, batch_size=4, learning_rate=1e-2, label_smoothing=0.0, topic_head=False)
    teacher.fit(DOCS, progress=False)
    pool = [Doc(d.doc_id + "-pool", d.title, "", ()) for d in DOCS]
    labels = teacher_labels(teacher, pool, k=3, min_weight=0.05)
    assert [d.doc_id for d in labels] == [d.doc_id for d in pool]
    for d in labels:
        assert d.topics and all(t in TAX for t in d.topics) and len(d.weights) == len(d.topics)
        assert abs(sum(d.weights) - 1) < 1e-4 and list(d.weights) == sorted(d.weights, reverse=True)
        assert all(w >= 0.05 for w in d.weights[1:])
    assert sum(lab.topic == gold.topic for lab, gold in zip(labels, DOCS)) / len(DOCS) >= 0.75  # it learnt the toy set
    assert all(len(d.topics) == 1 and not d.weights for d in hard(labels))
    student = TopicClassifier.from_base(gguf, TAX, max_prompt_tokens=16, seed=2, epochs=25, batch_size=4, learning_rate=1e-2, label_smoothing=0.0, topic_head=False)
    student.fit(labels, progress=False)  # soft targets train like gold
    assert sum(a[0].path == d.topic for d, a in zip(labels, student.predict(labels, k=1))) / len(labels) >= 0.75


def test_lm_judge_scores_the_gold_topic_above_a_wrong_one(gguf: Path) -> None:
    encoder = LMEncoder(gguf, max_tokens=16)
    x = encoder.encode([d.text for d in DOCS])
    assert x.shape[0] == len(DOCS) and abs(float((x**2).sum(1).mean()) - 1) < 1e-4  # normalised mean states
    judge = EmbeddingJudge(TAX, LMFeatureTopicClassifier(TAX, encoder)).fit(DOCS)
    right = judge.score(DOCS, [d.topic for d in DOCS])
    wrong = judge.score(DOCS, ["Food & Drink" if d.topic != "Food & Drink" else "News > Crime" for d in DOCS])
    assert all(0 <= s <= 100 for s in right + wrong)
    assert sum(r > w for r, w in zip(right, wrong)) >= 0.9 * len(DOCS)
    assert isinstance(make_judge(ClassifierSettings(teacher_base=str(gguf)), TAX, DOCS).model, LMFeatureTopicClassifier)


def test_lm_teacher_writes_a_headline_then_a_body_per_topic(gguf: Path) -> None:
    teacher = make_teacher(ClassifierSettings(teacher_base=str(gguf)), TAX, DOCS)
    assert isinstance(teacher, LMTeacher)
    teacher.title_tokens, teacher.body_tokens = 6, 8
    docs = teacher.write_many(["News > Crime", "Food & Drink"], 2, seed=7)
    assert [d.topic for d in docs] == ["News > Crime"] * 2 + ["Food & Drink"] * 2
    assert len({d.doc_id for d in docs}) == 4 and all(d.title and "\n" not in d.title + d.body for d in docs)
    assert teacher.write_many(["News > Crime", "Food & Drink"], 2, seed=7) == docs  # seeded: the same documents
    assert teacher.lm()[0] is LMEncoder(gguf).lm()[0]  # the writer and the judge's encoder share one loaded base
    assert "news > crime" == teacher.topic_words("News > Crime")
