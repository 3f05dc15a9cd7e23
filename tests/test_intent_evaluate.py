"""The refiner's measures on hand-made cases: ROUGE, BERTScore (the PyPI MiniLM), key tokens, bias,
BM25 MRR, and the paired bootstrap interval of a gap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    result = evaluate_models(Settings(data_dir=tmp_path / "data"), [a, b], log, samples=10)
    lines = result.lines()
    assert result.examples == len(gold_split()[1]) and [g["model"] for g in result.gaps] == ["b"]
    assert 0 < result.log_pairs <= 30 and result.log_samples == min(10, result.log_clicks) and len(result.log) == 4
    assert lines[0].startswith(f"held-out gold ({len(gold_split()[1])} examples") and "served in bfloat16" in lines[0]
    assert sum(line.startswith("  model=") for line in lines) == 3 + 4  # raw query + two models, twice; the log's word suggestion
    suggestion = next(line for line in lines if line.startswith("  model=log word suggestion"))
    assert "mean_tokens=2.000" in suggestion  # users of this log type "blue": it is put in every query
    gap = next(line for line in lines if "BERTScore F1 b - a" in line)
    low, high = (float(x) for x in gap.split("interval ")[1].rstrip(")").split(" .. "))
    assert low <= float(gap.split(": ")[1].split(" ")[0]) <= high
    assert any(line.startswith("real search log log.tsv") for line in lines)


LABELLED = [
    {"id": "a", "query": "pole saw", "documents": [{"doc_id": "d1", "title": "Ryobi 40V Cordless Pole Saw"}], "refined_query": "ryobi pole saw", "category": "products"},
    {"id": "b", "query": "aespa", "documents": [{"title": "aespa announce Japanese debut album Hot Mess"}], "refined_query": "aespa japan album hot mess"},
    {"id": "c", "query": "", "documents": [], "refined_query": "x"},  # empty query
    {"id": "d", "query": "makita saw", "documents": [{"title": "Makita Jig Saw"}]},  # no refined_query
]


def test_labelled_searches_are_read_from_json_lines_or_the_gold_format_and_bad_lines_named(tmp_path: Path) -> None:
    from intent.jobs import read_labelled
    from intent.model import load_gold, read_gold

    jsonl = tmp_path / "labelled.jsonl"
    jsonl.write_text("\n".join([*map(json.dumps, LABELLED), "{not json", json.dumps({"query": "drill", "documents": "Makita drill", "refined_query": "makita drill"})]) + "\n")
    got, bad = read_labelled(jsonl)
    assert [(e.query, e.titles, e.refined, e.category) for e in got] == [
        ("pole saw", ("Ryobi 40V Cordless Pole Saw",), "ryobi pole saw", "products"),
        ("aespa", ("aespa announce Japanese debut album Hot Mess",), "aespa japan album hot mess", ""),
    ]
    assert [(n, f) for n, f, _ in bad] == [(3, "query"), (4, "refined_query"), (5, "<record>"), (6, "documents")]

    tsv = tmp_path / "gold.tsv"
    tsv.write_text("category\tquery\ttitles\trefined\nmusic\taespa\tA || B\taespa japan album\nmusic\tbroken line\nfood\t\tTitle\tq\n")
    got, bad = read_labelled(tsv)
    assert [(e.query, e.titles, e.refined) for e in got] == [("aespa", ("A", "B"), "aespa japan album")]
    assert [(n, f) for n, f, _ in bad] == [(3, "<record>"), (4, "query")]
    assert read_gold(tsv) == (got, bad)
    with pytest.raises(ValueError, match=r"gold.tsv:3: <record>: expected 4 tab-separated fields"):
        load_gold(tsv)


def test_intent_eval_cli_scores_your_labelled_searches_without_a_log_and_writes_json(tmp_path: Path) -> None:
    from intent.model import IntentRefiner

    from tiny_lm import tiny_llama_dir

    fast = {"epochs": 1, "batch_size": 8, "num_beams": 2, "max_new_tokens": 6, "max_prompt_tokens": 64}
    model = IntentRefiner.from_base(tiny_llama_dir(tmp_path / "hf"), **fast).save_pretrained(tmp_path / "m")
    src = tmp_path / "labelled.jsonl"
    src.write_text("\n".join(map(json.dumps, LABELLED)) + "\n")
    out = tmp_path / "eval.json"
    bin_ = Path(sys.executable).parent / "topicfeed"
    env = {**os.environ, "TOPICFEED_DATA_DIR": str(tmp_path / "data")}
    got = subprocess.run([str(bin_), "intent", "eval", "--model", str(model), "--gold", str(src), "--no-log", "--json", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert got.returncode == 0, got.stderr
    assert "rejected line 3: field 'query'" in got.stderr and "rejected line 4: field 'refined_query'" in got.stderr
    assert got.stdout.startswith("labelled searches labelled.jsonl (2 examples;") and "real search log" not in got.stdout
    result = json.loads(out.read_text())
    assert result["examples"] == 2 and result["log_name"] is None and result["log"] == [] and result["gaps"] == []
    raw, refiner = result["gold"]
    assert raw["model"] == "raw query" and refiner["model"] == "m"
    assert raw["key_retention"] == 1.0 and 0 < raw["rougeL"] < 1 and 0 < raw["bertscore_f1"] < 1  # Q is inside each Q*: recall < 1
    assert [r[:2] for r in result["rejected"]["labelled.jsonl"]] == [[3, "query"], [4, "refined_query"]]
    assert list(result["by_category"]) == ["products"] and set(result["by_category"]["products"]) == {"raw query", "m"}  # the aespa line has no category

    twin = IntentRefiner.from_base(tiny_llama_dir(tmp_path / "hf"), **fast).save_pretrained(tmp_path / "other" / "m")  # the same name in another place
    got = subprocess.run([str(bin_), "intent", "eval", "--model", str(model), "--model", str(twin), "--gold", str(src), "--no-log", "--json", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert got.returncode == 0, got.stderr
    assert [r["model"] for r in json.loads(out.read_text())["gold"]] == ["raw query", str(model), str(twin)]
    got = subprocess.run([str(bin_), "intent", "eval", "--model", str(model), "--model", str(model), "--gold", str(src), "--no-log"], capture_output=True, text=True, timeout=300, env=env)
    assert got.returncode == 2 and "the same model directory is given twice" in got.stderr

    nothing = tmp_path / "none.jsonl"
    nothing.write_text(json.dumps(LABELLED[2]) + "\n")
    got = subprocess.run([str(bin_), "intent", "eval", "--model", str(model), "--gold", str(nothing), "--no-log"], capture_output=True, text=True, timeout=300, env=env)
    assert got.returncode == 2 and "no labelled search could be read (1 lines rejected)" in got.stderr
