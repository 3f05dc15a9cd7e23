"""Quality mode: the LM's answers re-ranked by the MiniLM + LR expert (formula, save/load, errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.baselines import EmbeddingTopicClassifier
from classifier.data import Doc
from classifier.model import TopicClassifier, TopicScore
from classifier.rescore import EXPERT_DIR, FLOOR, RescoredClassifier, rescore
from topicfeed.taxonomy import Taxonomy

from tiny_models import save_tiny

SMALL = Taxonomy.from_paths(["News > Politics", "News > Crime", "Sports > Football", "Sports > Tennis"])
CANDIDATES = [TopicScore("News > Politics", 2, 0.6), TopicScore("News > Crime", 2, 0.3), None, TopicScore("Sports > Football", 2, 0.1)]


def test_rescore_ranks_by_the_weighted_sum_of_log_probabilities() -> None:
    expert = {"News > Politics": 0.05, "News > Crime": 0.9}  # Football unseen by the expert: the floor
    out = rescore(CANDIDATES, expert, weight=1.0, k=3)
    assert [a.path for a in out] == ["News > Crime", "News > Politics", "Sports > Football"]
    raw = [0.3 * 0.9, 0.6 * 0.05, 0.1 * FLOOR]
    assert [a.score for a in out] == pytest.approx([r / sum(raw) for r in raw])
    assert [a.level for a in out] == [2, 2, 2]


def test_rescore_with_weight_zero_keeps_the_lm_order_and_k_cuts() -> None:
    out = rescore(CANDIDATES, {"Sports > Football": 1.0}, weight=0.0, k=2)
    assert [a.path for a in out] == ["News > Politics", "News > Crime"]
    assert [a.score for a in out] == pytest.approx([0.6, 0.3])  # renormalised over 0.6 + 0.3 + 0.1
    assert rescore([None, None], {}, weight=1.0, k=3) == []


def test_a_stronger_expert_weight_can_overturn_the_lm() -> None:
    expert = {"News > Politics": 0.01, "Sports > Football": 0.99}
    # Politics stays first while log .6 + w log .01 > log .1 + w log .99, i.e. w < 0.39
    orders = [rescore(CANDIDATES, expert, weight=w, k=1)[0].path for w in (0.0, 0.25, 0.5, 2.0)]
    assert orders == ["News > Politics", "News > Politics", "Sports > Football", "Sports > Football"]


DOCS = [
    Doc("1", "Senate passes the budget", "Lawmakers voted late on Tuesday.", ("News > Politics",)),
    Doc("2", "Police arrest a suspect", "The robbery happened downtown.", ("News > Crime",)),
    Doc("3", "Quarterback throws three touchdowns", "The team won the game.", ("Sports > Football",)),
    Doc("4", "Serena wins at Wimbledon", "A straight-sets final on grass.", ("Sports > Tennis",)),
    Doc("5", "Election results are in", "The governor conceded.", ("News > Politics",)),
    Doc("6", "Court jails burglar", "Five years for the break-ins.", ("News > Crime",)),
]


def test_expert_save_load_gives_the_same_probabilities(tmp_path: Path) -> None:
    expert = EmbeddingTopicClassifier(SMALL).fit(DOCS)
    expert.save(tmp_path / "expert")
    loaded = EmbeddingTopicClassifier.load(tmp_path / "expert", SMALL)
    before, after = expert.path_proba(DOCS), loaded.path_proba(DOCS)
    assert set(after[0]) == set(SMALL.paths()) - {"News", "Sports"}
    for b, a in zip(before, after):
        assert a == pytest.approx(b)
        assert sum(a.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not paths of the taxonomy"):
        EmbeddingTopicClassifier.load(tmp_path / "expert", Taxonomy.from_paths(["News > Politics"]))


def test_quality_mode_needs_the_saved_expert_and_answers_valid_nodes(tmp_path: Path) -> None:
    lm = TopicClassifier.from_base(save_tiny("bert", tmp_path / "tiny"), SMALL, max_prompt_tokens=16, seed=1)
    lm.save_pretrained(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match="expert"):
        RescoredClassifier.from_pretrained(tmp_path / "model")
    EmbeddingTopicClassifier(SMALL).fit(DOCS).save(tmp_path / "model" / EXPERT_DIR)
    quality = RescoredClassifier.from_pretrained(tmp_path / "model", weight=1.5, beams=5)
    answers = quality.predict(DOCS, k=3)
    candidates = lm.predict(DOCS, k=5)
    for doc_answers, doc_candidates, expert in zip(answers, candidates, quality.expert.path_proba(DOCS)):
        paths = [a.path for a in doc_answers]
        assert len(paths) == len(set(paths)) == 3 and all(p in SMALL for p in paths)
        assert set(paths) <= {c.path for c in doc_candidates}  # re-ranked LM beams, never anything else
        assert doc_answers == rescore(doc_candidates, expert, 1.5, 3)
