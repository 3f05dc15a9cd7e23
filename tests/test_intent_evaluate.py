"""The refiner's measures on hand-made cases: ROUGE, BERTScore (the PyPI MiniLM), key tokens, bias,
BM25 MRR, and the paired bootstrap interval of a gap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from intent.evaluate import TitleIndex, bert_f1, bert_f1_each, bias_share, key_retention, paired_bootstrap, report, rouge
from intent.model import gold_split


def test_rouge_key_tokens_and_bias_on_hand_made_outputs() -> None:
    assert rouge(["ryobi pole saw"], ["ryobi pole saw"])["rougeL"] == pytest.approx(1.0)
    assert rouge(["pole saw"], ["ryobi pole saw"])["rougeL"] == pytest.approx(0.8)  # P 1, R 2/3
    assert key_retention(["ryobi saw", "ryobi saw"], ["ryobi pole saw", "pole saw"]) == 0.5
    assert bias_share(["pole saw", "near me saw"], ["pole saw near me", "near me saw"], {"near"}) == 0.5  # Q's own bias words do not count
    row = report("m", ["pole saw"], ["ryobi pole saw"], ["ryobi pole saw"], with_bert=False)
    assert row["rougeL"] == pytest.approx(1.0) and row["mean_tokens"] == 3


def test_bertscore_each_matches_the_mean_and_ranks_meaning() -> None:
    preds, refs = ["taylor swift eras tour london", "banana bread recipe"], ["taylor swift eras tour london dates", "taylor swift eras tour london dates"]
    each = bert_f1_each(preds, refs)
    assert each.shape == (2,) and each[0] > each[1] + 0.2
    assert bert_f1(preds, refs) == pytest.approx(float(each.mean()))
    assert bert_f1([], []) == 0.0


def test_bm25_mrr_rewards_the_refinement_that_names_the_clicked_title() -> None:
    index = TitleIndex(["a", "b", "c"], ["Ryobi 40V Cordless Pole Saw", "Greenworks Electric Pole Saw", "Ryobi Hedge Trimmer"])
    assert index.rank("pole saw", "a") == 2  # a tie with b counts against a
    assert index.mrr(["ryobi pole saw"], ["a"]) == 1.0 > index.mrr(["pole saw"], ["a"])


def test_paired_bootstrap_interval_holds_the_gap_and_narrows_with_examples() -> None:
    assert paired_bootstrap([0.9, 0.8, 0.7], [0.8, 0.7, 0.6]) == pytest.approx((0.1, 0.1, 0.1))
    rng = np.random.default_rng(1)
    small = rng.normal(-0.03, 0.08, 43)
    mean, low, high = paired_bootstrap(small, np.zeros(43))
    assert low < mean < high and mean == pytest.approx(small.mean())
    big = rng.normal(-0.03, 0.08, 4300)
    _, low2, high2 = paired_bootstrap(big, np.zeros(4300))
    assert high2 - low2 < (high - low) / 5 and low2 < -0.03 < high2
    with pytest.raises(ValueError, match="no examples"):
        paired_bootstrap([], [])


def test_intent_eval_compares_models_with_the_interval_of_their_gap(tmp_path: Path) -> None:
    from intent.benchmark import evaluate_models
    from intent.model import IntentRefiner
    from topicfeed.settings import Settings

    from tiny_lm import tiny_llama_dir

    fast = {"epochs": 1, "batch_size": 8, "num_beams": 2, "max_new_tokens": 6, "max_prompt_tokens": 64}
    base = tiny_llama_dir(tmp_path / "hf")
    a = IntentRefiner.from_base(base, **fast).save_pretrained(tmp_path / "a")
    b = IntentRefiner.from_base(base, **fast, copy_only=False).save_pretrained(tmp_path / "b")
    log = tmp_path / "log.tsv"
    rows = ["id\tproduct_uid\tproduct_title\tsearch_term\trelevance"]
    for i in range(30):
        rows += [f"{2 * i}\t{100 + i}\tBlue widget{i} deluxe kit\twidget{i}\t3", f"{2 * i + 1}\t{100 + i}\tBlue widget{i} deluxe kit\twidget{i} blue\t2.67"]
    log.write_text("\n".join(rows) + "\n")
    lines = evaluate_models(Settings(data_dir=tmp_path / "data"), [a, b], log, samples=10)
    assert lines[0].startswith(f"held-out gold ({len(gold_split()[1])} examples") and "served in bfloat16" in lines[0]
    assert sum(line.startswith("  model=") for line in lines) == 3 + 4  # raw query + two models, twice; the log's word suggestion
    suggestion = next(line for line in lines if line.startswith("  model=log word suggestion"))
    assert "mean_tokens=2.000" in suggestion  # users of this log type "blue": it is put in every query
    gap = next(line for line in lines if "BERTScore F1 b - a" in line)
    low, high = (float(x) for x in gap.split("interval ")[1].rstrip(")").split(" .. "))
    assert low <= float(gap.split(": ")[1].split(" ")[0]) <= high
    assert any(line.startswith("real search log log.tsv") for line in lines)
