"""The refiner on tiny models made here: GGUF and HF paths, fit/save/load, key tokens, copy-only
decoding, bad input, the refine CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from classifier.lm import resolve_base
from intent.jobs import read_requests, refine_file
from intent.model import GOLD_TEST, GOLD_TRAIN, PROMPT_CACHE_MIN_BATCH, IntentRefiner, Request, gold_split, load_gold
from intent.text import key_tokens, normalize, tokens

from tiny_lm import tiny_gguf, tiny_llama_dir

BIN = Path(sys.executable).parent / "topicfeed"
FAST = {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3, "num_beams": 2, "max_new_tokens": 8, "max_prompt_tokens": 64}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tiny-lm")
    return {"gguf": tiny_gguf(base / "tiny.gguf"), "hf": tiny_llama_dir(base / "hf")}


def test_the_gold_set_is_big_varied_and_split_stably() -> None:
    gold = load_gold()
    assert len(gold) >= 200 and len({e.category for e in gold}) >= 20
    assert all(e.query and e.titles and e.refined for e in gold)
    train, test = gold_split()
    assert len(test) > 20 and not {e.query for e in train} & {e.query for e in test}
    assert gold_split()[1] == test  # by hash: the same split every time
    extra = load_gold(GOLD_TEST)  # the test-only file: all of it held out, every category, never trained on
    assert len(extra) >= 100 and {e.category for e in extra} == {e.category for e in gold}
    assert test[-len(extra) :] == extra and not {e.query for e in extra} & {e.query for e in gold}
    assert gold_split(test_file=False)[1] == test[: -len(extra)] and gold_split(gold)[1] == test[: -len(extra)]
    more = load_gold(GOLD_TRAIN)  # the training-only file: all of it trains, every category, no query of the others
    assert len(more) >= 100 and {e.category for e in more} == {e.category for e in gold}
    assert train[-len(more) :] == more and gold_split(train_file=False)[0] == train[: -len(more)] == gold_split(gold)[0]
    assert not {e.query for e in more} & ({e.query for e in gold} | {e.query for e in extra})
    assert all(set(key_tokens(e.query)) <= set(tokens(e.refined)) for e in more)  # Q's key tokens kept, as the decoder keeps them


@pytest.mark.parametrize("kind", ["gguf", "hf"])
def test_fit_save_load_refine_is_deterministic_and_keeps_key_tokens(kind: str, tiny: dict[str, Path], tmp_path: Path) -> None:
    train, test = gold_split()
    refiner = IntentRefiner.from_base(tiny[kind], **FAST).fit(train[:40])
    report = refiner.fit_report_
    assert report["examples"] == 40 and report["last_loss"] < report["first_loss"]  # it learns
    requests = [Request(e.query, e.titles) for e in test[:8]]
    before = refiner.predict(requests)
    saved = refiner.save_pretrained(tmp_path / "model")
    again = IntentRefiner.from_pretrained(saved)
    assert again.predict(requests) == before == again.predict(requests)
    for r, out in zip(requests, before):
        assert set(key_tokens(r.query)) <= set(out.split()) and 0 < len(out.split()) <= again.params.max_refined_tokens


def test_bf16_autocast_training_follows_the_float32_loss_curve(tiny: dict[str, Path]) -> None:
    """Training under bfloat16 autocast (the default) learns as float32 does: same first loss, and a
    last loss within a quarter of float32's descent."""
    train = gold_split()[0][:32]
    reports = {amp: IntentRefiner.from_base(tiny["hf"], bf16_autocast=amp, **FAST).fit(train).fit_report_ for amp in (True, False)}
    f32, bf16 = reports[False], reports[True]
    assert f32["first_loss"] - f32["last_loss"] > 0.5
    assert abs(bf16["first_loss"] - f32["first_loss"]) < 0.05
    assert abs(bf16["last_loss"] - f32["last_loss"]) < 0.25 * (f32["first_loss"] - f32["last_loss"])


def test_the_default_recipe_repeats_the_gold_examples_and_never_trains_on_the_held_out(tiny: dict[str, Path], tmp_path: Path) -> None:
    from intent.jobs import train_default
    from topicfeed.settings import Settings

    train, test = gold_split()
    settings = Settings(data_dir=tmp_path / "no-lake", intent={"student": "lm", "base_model": str(tiny["hf"]), "gold_repeats": 2, **FAST, "epochs": 1})
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "query_suggester.json").write_text("{}")  # counted on a lake that is gone
    refiner = train_default(settings, tmp_path / "student")
    assert refiner.fit_report_["examples"] == 2 * len(train)  # no lake here: the gold-train part, twice
    assert (tmp_path / "student" / "intent_refiner.json").is_file() and len(test) >= 175
    assert not (tmp_path / "student" / "query_suggester.json").exists()  # no clicks, no suggester


def test_the_device_is_the_loader_s_choice_and_one_torch_cannot_reach_is_a_clear_error(tiny: dict[str, Path], tmp_path: Path) -> None:
    from topicfeed.settings import IntentSettings

    assert IntentSettings(device="cuda:1", serving_precision="int8").serving() == {"serving_precision": "int8", "device": "cuda:1"}
    refiner = IntentRefiner.from_base(tiny["hf"], **FAST, device="cpu")
    assert refiner.device.type == "cpu" and refiner.params.device == "cpu"
    saved = refiner.fit(gold_split()[0][:8]).save_pretrained(tmp_path / "model")
    assert json.loads((saved / "intent_refiner.json").read_text())["params"]["device"] == "cpu"  # a load option, as the precision
    for device, message in (("cuda:99", "torch sees [0-9]+ CUDA devices here"), ("warp-drive", "is not a torch device")):
        with pytest.raises(ValueError, match=message):
            IntentRefiner.from_base(tiny["hf"], **FAST, device=device)
        with pytest.raises(ValueError, match=message):
            IntentRefiner.from_pretrained(saved, device=device)
    with pytest.raises(ValueError, match="int8 serving is CPU only"):
        IntentRefiner.from_pretrained(saved, device="meta", serving_precision="int8")


@pytest.mark.parametrize("precision", ["int8", "bfloat16"])
def test_reduced_precision_serving_is_for_inference_only(precision: str, tiny: dict[str, Path], tmp_path: Path) -> None:
    import torch

    train, test = gold_split()
    saved = IntentRefiner.from_base(tiny["hf"], **FAST).fit(train[:24]).save_pretrained(tmp_path / "model")
    assert json.loads((saved / "intent_refiner.json").read_text())["params"]["serving_precision"] == "float32"  # a load option, not saved
    plain, served = IntentRefiner.from_pretrained(saved), IntentRefiner.from_pretrained(saved, serving_precision=precision)
    assert {p.dtype for p in plain.model.parameters()} == {torch.float32} and not plain.quantized_
    if precision == "int8":
        kinds = {type(m).__module__ for m in served.model.modules() if "Linear" in type(m).__name__}
        assert kinds and all("quantized" in k for k in kinds) and not any(isinstance(m, torch.nn.Linear) and "quantized" not in type(m).__module__ for m in served.model.modules())
    else:
        assert {p.dtype for p in served.model.parameters()} == {torch.bfloat16}
    assert served.quantized_ and served.params.serving_precision == precision
    requests = [Request(e.query, e.titles) for e in test[:6]]
    out = served.predict(requests)
    assert out == served.predict(requests)  # deterministic
    if precision == "bfloat16":  # no batch-wide activation scale: a request's Q* does not depend on its batch mates
        assert [served.predict([r])[0] for r in requests] == out
    for r, o in zip(requests, out):
        assert set(key_tokens(r.query)) <= set(o.split())  # key tokens still enforced
    with pytest.raises(ValueError, match="inference only"):
        served.save_pretrained(tmp_path / "again")
    with pytest.raises(ValueError, match="cannot be trained"):
        served.fit(train[:4])
    with pytest.raises(ValueError, match="serving_precision"):
        IntentRefiner.from_pretrained(saved).for_serving("fp8")


def test_copy_only_decoding_writes_only_whole_words_of_the_query_and_titles(tiny: dict[str, Path]) -> None:
    refiner = IntentRefiner.from_base(tiny["hf"], copy_only=True, enforce_keys=False, **FAST)
    requests = [Request("pole saw", ("Ryobi 40V cordless pole saw",)), Request("lasagna", ("Beef lasagna with bechamel",))]
    for r, out in zip(requests, refiner.predict(requests)):
        assert out and set(out.split()) <= set(tokens(" ".join([r.query, *r.titles])))  # whole given words, never glued pieces
    free = IntentRefiner.from_base(tiny["hf"], copy_only=False, enforce_keys=False, **FAST)  # the same untrained model, unconstrained
    assert any(not set(o.split()) <= set(tokens(" ".join([r.query, *r.titles]))) for r, o in zip(requests, free.predict(requests)))


def test_copy_words_walks_a_word_trie_per_request() -> None:
    import torch

    from intent.model import CopyWords

    proc = CopyWords([[[1, 2], [3]], [[4]]], eos=9, repeat=2, start=1)  # request 0: words (1 2) and (3); request 1: (4)
    assert sorted(proc.allowed(0, ())) == [1, 3]  # a word first, never the end
    assert proc.allowed(0, (1,)) == [2]  # inside a word: its continuation only
    assert sorted(proc.allowed(0, (1, 2))) == [1, 3, 9] and sorted(proc.allowed(0, (3,))) == [1, 3, 9]  # a word done: another, or the end
    assert sorted(proc.allowed(1, (4,))) == [4, 9]
    ids = torch.tensor([[5, 1], [5, 3], [5, 4], [5, 4]])  # prompt token 5, then one written token per row
    out = proc(ids, torch.zeros(4, 10))
    allowed = [torch.isfinite(row).nonzero().flatten().tolist() for row in out]
    assert allowed == [[2], [1, 3, 9], [4, 9], [4, 9]]  # rows 0-1 are request 0's beams, rows 2-3 request 1's


def test_copy_words_keeps_the_query_words_in_order_each_once_within_the_budget() -> None:
    from intent.model import CopyWords

    # words a=(1), b=(2 3), c=(4), d=(5); Q is "b a": Q's words in Q's order, others around them
    proc = CopyWords([[[1], [2, 3], [4], [5]]], eos=9, repeat=1, start=0, labels=[["a", "b", "c", "d"]], order=[["b", "a"]], budget=10)
    assert sorted(proc.allowed(0, ())) == [2, 4, 5]  # not a before b, not the end
    assert sorted(proc.allowed(0, (4,))) == [2, 5]  # c once
    assert sorted(proc.allowed(0, (2, 3))) == [1, 4, 5]  # b done: a is next; no end before it
    assert sorted(proc.allowed(0, (2, 3, 1))) == [4, 5, 9]  # both done: more words or the end
    assert sorted(proc.allowed(0, (2, 3, 4, 1))) == [5, 9]
    tight = CopyWords([[[1], [2, 3], [4], [5]]], eos=9, repeat=1, start=0, labels=[["a", "b", "c", "d"]], order=[["b", "a"]], budget=4)
    assert tight.allowed(0, ()) == [2]  # b (2 tokens) + a (1) + the longest other word (2) > 4 left: b now
    capped = CopyWords([[[1], [2, 3], [4], [5]]], eos=9, repeat=1, start=0, labels=[["a", "b", "c", "d"]], order=[["b", "a"]], budget=10, max_inserted=1)
    assert capped.allowed(0, (4,)) == [2] and capped.allowed(0, (4, 2, 3, 1)) == [9]  # one other word at most
    spellings = CopyWords([[[1], [6]]], eos=9, repeat=1, start=0, labels=[["x", "x"]])  # "Ryobi" and "ryobi": one word
    assert spellings.allowed(0, (1,)) == [9]


def test_copy_only_copies_two_token_words_and_phrases_of_the_titles(tiny: dict[str, Path]) -> None:
    """transformers' no_repeat_ngram_size counts the prompt: it forbade the second piece of any word or
    phrase the titles hold (their bigrams are in the prompt). Neither decoding may forbid them now."""
    import torch

    from intent.model import NoRepeatWritten

    out = NoRepeatWritten(start=2)(torch.tensor([[5, 5, 7, 8, 7], [7, 8, 4, 6, 7]]), torch.zeros(2, 10))
    assert torch.isinf(out[0, 8]) and torch.isfinite(out[0, 7])  # (7 8) was written: not twice; (7 7) may
    assert torch.isfinite(out[1]).all()  # the prompt's bigram (7 8) is not counted
    # no title words: Q itself, in order, is the one thing copy-only decoding may write; with the
    # prompt's bigrams banned ("query: hot mess ...") every step of it was forbidden
    refiner = IntentRefiner.from_base(tiny["hf"], copy_only=True, keep_query_order=True, enforce_keys=False, **{**FAST, "max_new_tokens": 32})
    beams: list[list[str]] = []
    choose = refiner._choose
    refiner._choose = lambda query, candidates, *rest: beams.append(list(candidates)) or choose(query, candidates, *rest)  # type: ignore[method-assign]
    assert refiner.predict([Request("hot mess tickets", ())]) == ["hot mess tickets"]
    assert [normalize(b) for b in beams[0]] == ["hot mess tickets"] * len(beams[0])  # written so, not put back from Q afterwards


def test_lora_trains_adapters_only_and_saves_a_plain_model(tiny: dict[str, Path], tmp_path: Path) -> None:
    refiner = IntentRefiner.from_base(tiny["hf"], lora=True, lora_r=4, **FAST)
    trainable = sum(p.numel() for p in refiner.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in refiner.model.parameters())
    assert 0 < trainable < total / 2
    refiner.fit(gold_split()[0][:16])
    requests = [Request(e.query, e.titles) for e in gold_split()[1][:PROMPT_CACHE_MIN_BATCH]]
    adapters = refiner.predict(requests)  # the prompts' cache is made through the adapters
    loaded = IntentRefiner.from_pretrained(refiner.save_pretrained(tmp_path / "lora"), serving_precision="float32")
    assert not hasattr(loaded.model, "peft_config") and loaded.predict(requests) == adapters


def test_bad_input_and_huge_input(tiny: dict[str, Path], tmp_path: Path) -> None:
    refiner = IntentRefiner.from_base(tiny["hf"], **FAST)
    with pytest.raises(ValueError, match="request 1: field 'query'"):
        refiner.predict([Request("ok", ()), Request("  !! ", ())])
    with pytest.raises(ValueError, match="training example 0: field refined"):
        refiner.fit([type(load_gold()[0])("q", ("t",), " ")])
    assert len(refiner.prompt_ids(Request("drill", ("word " * 5000,) * 10))) == FAST["max_prompt_tokens"]  # cut, not an error
    assert refiner.predict([Request("drill", ())])[0].split()[0] == "drill"  # no clicked documents: still an answer
    with pytest.raises(TypeError, match="unknown intent refiner parameters"):
        IntentRefiner.from_base(tiny["hf"], beams=3)
    with pytest.raises(FileNotFoundError, match="not a saved intent refiner"):
        IntentRefiner.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        resolve_base(tmp_path)


def test_refine_cli_reports_bad_lines_and_refines_the_rest(tiny: dict[str, Path], tmp_path: Path) -> None:
    model = IntentRefiner.from_base(tiny["hf"], **FAST).save_pretrained(tmp_path / "m")
    lines = [
        {"id": "a", "query": "pole saw", "documents": [{"doc_id": "1", "title": "Ryobi cordless pole saw"}]},
        "not json",
        {"id": "c", "documents": []},
        {"id": "d", "query": "fan", "documents": "nope"},
        {"id": "e", "query": "lasagna", "documents": [{"doc_id": "2", "title": "Beef lasagna", "body": "..."}]},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    good, bad = read_requests(src)
    assert [i for i, _ in good] == ["a", "e"] and [(n, f) for n, f, _ in bad] == [(2, "<record>"), (3, "query"), (4, "documents")]
    out = tmp_path / "out.jsonl"
    got = subprocess.run([str(BIN), "intent", "refine", "--model", str(model), "--input", str(src), "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    assert "rejected line 3: field 'query'" in got.stderr and "refined 2 requests" in got.stdout
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "e"] and all(r["refined_query"].startswith(r["query"].split()[0]) or r["query"].split()[0] in r["refined_query"] for r in rows)
    calls: list[tuple[int, int]] = []  # the CLI's progress bar: (refined so far, valid requests) after each batch
    again = tmp_path / "again.jsonl"
    refine_file(model, src, again, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (2, 2) and [d for d, _ in calls] == sorted(d for d, _ in calls) and again.read_text() == out.read_text()


def test_refinements_do_not_end_on_a_function_word_that_is_not_the_query_s(tiny: dict[str, Path]) -> None:
    r = IntentRefiner.from_base(tiny["hf"], **FAST)
    assert r._choose("nvidia", ["nvidia earnings beat on", "nvidia"]) == "nvidia earnings beat"
    assert r._choose("flights", ["flights japan spring in to"]) == "flights japan spring"
    assert r._choose("made in", ["made in"]) == "made in"  # Q's own words stay
    assert r._choose("of", ["of for"]) == "of"
    assert r.decoding(end_on_content_word=False)._choose("nvidia", ["nvidia earnings beat on"]) == "nvidia earnings beat on"


def test_skipped_stretches_of_a_title_are_put_back_within_the_word_limit(tiny: dict[str, Path]) -> None:
    from intent.model import fill_title_gaps

    titles = ["Beyonce's Cowboy Carter wins album of the year", "Zelda: Echoes of Wisdom review - a new hero"]
    assert fill_title_gaps("beyonce's carter album".split(), titles, 2, 10) == "beyonce's cowboy carter wins album".split()
    assert fill_title_gaps("zelda wisdom review".split(), titles, 2, 10) == "zelda echoes of wisdom review".split()
    assert fill_title_gaps("zelda wisdom review".split(), titles, 1, 10) == "zelda wisdom review".split()  # "echoes of" is 2 words
    assert fill_title_gaps("album year".split(), titles, 2, 10) == "album year".split()  # "of the": no content word
    assert fill_title_gaps("zelda wisdom review".split(), titles, 2, 4) == "zelda wisdom review".split()  # 5 words > the limit
    assert fill_title_gaps("zelda review echoes".split(), titles, 2, 10) == "zelda review echoes".split()  # out of the title's order
    assert fill_title_gaps("cowboy album wins".split(), titles, 2, 10) == "cowboy album wins".split()  # the gap's word is written already
    assert fill_title_gaps("ohtani home".split(), ["Ohtani 50 50 home run"], 3, 10) == "ohtani home".split()  # "50 50": a word twice
    assert fill_title_gaps("50 run".split(), ["Ohtani 50 50 home run"], 3, 10) == "50 home run".split()  # from the second 50
    assert fill_title_gaps(["zelda"], titles, 2, 10) == ["zelda"]
    # through decoding: what the chosen Q* skipped is put back, and 0 turns it off
    r = IntentRefiner.from_base(tiny["hf"], **FAST)
    assert r.params.fill_title_gaps == 2
    assert r._choose("zelda", ["zelda wisdom review"], None, titles[1:]) == "zelda echoes of wisdom review"
    assert r.decoding(fill_title_gaps=0)._choose("zelda", ["zelda wisdom review"], None, titles[1:]) == "zelda wisdom review"
    assert r._choose("zelda wisdom", ["review"], None, titles[1:]) == "zelda echoes of wisdom review"  # keys put back first, then the rule


def test_q_star_is_the_beam_the_others_agree_with_by_minimum_bayes_risk(tiny: dict[str, Path]) -> None:
    from intent.model import BeamScores, mbr_choice
    from intent.text import lcs_f1

    assert lcs_f1("a b c".split(), "a c".split()) == pytest.approx(0.8) and lcs_f1("a b".split(), "b a".split()) == 0.5 and lcs_f1([], ["a"]) == 0.0
    beams = ["ryobi pole saw cordless 40v battery", "ryobi pole saw", "ryobi pole saw 10 inch"]
    scores = [-0.030, -0.031, -0.032]  # beam scores, best first: close, so the two that agree outweigh the top
    words = [b.split() for b in beams]
    assert mbr_choice(words, scores, 0.01) == 1
    assert mbr_choice(words, scores, 1e-6) == 0  # a cold softmax: the top beam alone counts
    assert mbr_choice([["a"], ["a"]], [-0.1, -0.1], 0.01) == 0  # a tie: the better beam
    r = IntentRefiner.from_base(tiny["hf"], **FAST)
    assert r.params.mbr_temperature == 0.01
    assert r._choose("ryobi pole saw", beams, None, (), scores) == "ryobi pole saw"
    assert r._choose("ryobi pole saw", beams) == beams[0]  # no scores: the best beam that keeps Q's keys
    assert r.decoding(mbr_temperature=None)._choose("ryobi pole saw", beams, None, (), scores) == beams[0]
    r.last_repairs_ = 0  # each beam keeps Q's keys before the choice; a repair counts when the chosen one needed it
    assert r._choose("ryobi saw", ["pole saw", "ryobi saw"], None, (), [-0.01, -0.5]) == "ryobi saw pole" and r.last_repairs_ == 1
    assert r._choose("ryobi saw", ["", "ryobi saw"], None, (), [-0.01, -0.5]) == "ryobi saw" and r.last_repairs_ == 1  # an empty beam reads as Q
    # through beam search: the beams' scores reach the choice; a cold softmax gives the top beam, as without it
    r = IntentRefiner.from_base(tiny["hf"], copy_only=True, enforce_keys=False, fill_title_gaps=0, **{**FAST, "num_beams": 3})
    requests = [Request(e.query, e.titles) for e in gold_split()[1][:6]]
    seen: list[tuple[list[str], list[float]]] = []
    warm = r.decoding(mbr_temperature=1e3)  # about uniform weights
    choose = warm._choose

    def spy(query: str, candidates: list[str], vocab: set[str] | None = None, titles: tuple = (), scores: list[float] | None = None) -> str:
        assert scores is not None and len(scores) == len(candidates) == 3 and list(scores) == sorted(scores, reverse=True)
        seen.append(([" ".join(warm._words(query, c, vocab)) or normalize(query) for c in candidates], list(scores)))
        return choose(query, candidates, vocab, titles, scores)

    warm._choose = spy  # type: ignore[method-assign]
    out = warm.predict(requests)
    assert len(seen) == 6 and all(o in {c for cands, _ in seen for c in cands} for o in out)  # one of the beams
    assert r.decoding(mbr_temperature=1e-9).predict(requests) == r.decoding(mbr_temperature=None).predict(requests)
    # the scores read from the kept log-probabilities are transformers' own (its output_scores copies every step's)
    generate, gaps = r.model.generate, []

    def both(*args: object, **kwargs: object) -> object:
        out = generate(*args, **{**kwargs, "output_scores": True})
        kept = next(x for x in kwargs["logits_processor"] if isinstance(x, BeamScores))  # type: ignore[attr-defined]
        read = kept.scores(out.sequences, out.beam_indices, kwargs["input_ids"].shape[1], r.params.length_penalty)  # type: ignore[attr-defined]
        gaps.append(max(abs(a - b) for a, b in zip(read, out.sequences_scores.tolist())))
        return out

    r.model.generate = both  # type: ignore[method-assign]
    try:
        r.predict(requests)
    finally:
        del r.model.generate
    assert len(gaps) == 1 and gaps[0] < 1e-5


def test_train_cli_refuses_news_without_a_teacher(tmp_path: Path) -> None:
    news = tmp_path / "news.tsv"
    news.write_text("N1\tmusic\tsub\tTaylor Swift adds London dates\t\t\t[]\t[]\n")
    got = subprocess.run([str(BIN), "intent", "train", "--out", str(tmp_path / "m"), "--news", str(news)], capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert got.returncode == 2 and "--news needs --teacher" in got.stderr and not (tmp_path / "m").exists()


def test_train_teacher_cli_fine_tunes_the_teacher_base_by_the_teacher_recipe(tiny: dict[str, Path], tmp_path: Path) -> None:
    """``intent train-teacher`` trains ``teacher_base`` (here a tiny GGUF file, as Gemma is one) on
    gold-train with the settings' teacher recipe: LoRA adapters, merged into the saved weights."""
    env = {**os.environ, "COLUMNS": "200", "TOPICFEED_INTENT__TEACHER_BASE": str(tiny["gguf"]), "TOPICFEED_INTENT__TEACHER_EPOCHS": "1", "TOPICFEED_INTENT__MAX_PROMPT_TOKENS": "64"}
    out = tmp_path / "teacher"
    got = subprocess.run([str(BIN), "intent", "train-teacher", "--out", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert got.returncode == 0, got.stderr
    assert f"trained the teacher {tiny['gguf']} (LoRA r 16) on {len(gold_split()[0])} gold examples" in got.stdout
    meta = json.loads((out / "intent_refiner.json").read_text())
    assert meta["params"]["base_model"] == str(tiny["gguf"]) and meta["params"]["lora"] and meta["params"]["epochs"] == 1
    assert meta["fit"]["steps"] == -(-len(gold_split()[0]) // 8) and meta["fit"]["last_loss"] < meta["fit"]["first_loss"]
    teacher = IntentRefiner.from_pretrained(out)
    assert not hasattr(teacher.model, "peft_config") and not teacher.params.copy_only and teacher.params.num_beams == 2
    assert set(key_tokens("pole saw")) <= set(teacher.predict([Request("pole saw", ("Ryobi cordless pole saw",))])[0].split())


def test_end_penalty_lowers_the_end_token_only_and_lengthens_what_is_written(tiny: dict[str, Path]) -> None:
    import torch

    from intent.model import EndPenalty

    scores = torch.tensor([[-1.0, -2.0, float("-inf")], [-0.5, -3.0, -0.1]])
    out = EndPenalty(eos=2, penalty=1.5)(torch.zeros(2, 1, dtype=torch.long), scores.clone())
    assert out[0, 2] == float("-inf") and out[1, 2] == pytest.approx(-1.6)  # a forbidden end stays forbidden
    assert torch.equal(out[:, :2], scores[:, :2])
    requests = [Request("pole saw", ("Ryobi 40V cordless pole saw with extension",)), Request("lasagna", ("Beef lasagna with bechamel and spinach",))]
    room = {**FAST, "max_new_tokens": 32}  # room to write every word: only the end token stops a Q*
    plain = IntentRefiner.from_base(tiny["hf"], copy_only=True, enforce_keys=False, end_penalty=0.0, length_penalty=1.0, **room)
    longer = IntentRefiner.from_base(tiny["hf"], copy_only=True, enforce_keys=False, end_penalty=50.0, **room)
    short_words = [len(o.split()) for o in plain.predict(requests)]
    long_words = [len(o.split()) for o in longer.predict(requests)]
    assert all(b >= a for a, b in zip(short_words, long_words)) and sum(long_words) > sum(short_words)


def test_the_teacher_labels_without_the_length_preference_unless_asked(tiny: dict[str, Path]) -> None:
    from intent.jobs import grounded, label_with

    room = {**FAST, "max_new_tokens": 32}
    requests = [Request("lasagna", ("Beef lasagna with bechamel and spinach",)), Request("pole saw", ("Ryobi 40V cordless pole saw with extension",))]
    longer = IntentRefiner.from_base(tiny["hf"], copy_only=True, enforce_keys=False, end_penalty=50.0, **room)
    plain = longer.decoding(end_penalty=0.0, length_penalty=1.0)
    assert plain.model is longer.model and (plain.params.end_penalty, longer.params.end_penalty) == (0.0, 50.0)
    expect_plain = [grounded(r.query, r.titles, o) for r, o in zip(requests, plain.predict(requests))]
    expect_long = [grounded(r.query, r.titles, o) for r, o in zip(requests, longer.predict(requests))]
    assert expect_plain != expect_long  # the preference changes what is written here
    assert [e.refined for e in label_with(longer, requests)] == expect_plain
    assert [e.refined for e in label_with(longer, requests, length_preference=True)] == expect_long


def test_labels_written_are_read_back_whole(tmp_path: Path) -> None:
    from intent.jobs import read_labels, write_labels

    examples = gold_split()[0][:5]
    write_labels(tmp_path / "labels.json", examples)
    assert read_labels(tmp_path / "labels.json") == examples


@pytest.mark.parametrize("kind", ["hf", "bert"])
def test_a_batch_s_local_vocabulary_decodes_as_the_whole_vocabulary_and_is_put_back(kind: str, tiny: dict[str, Path], tmp_path: Path) -> None:
    """With ``local_vocab`` the LM head computes only the batch's own tokens. One beam picks the
    best allowed token whatever the scores are normalized over, so greedy copy-only decoding must
    write exactly what the whole vocabulary writes; the model's embeddings come back unchanged (a
    tied Llama-like head, and BERT's head with its bias, as MiniLM has)."""
    import torch

    from tiny_models import save_tiny

    base = tiny["hf"] if kind == "hf" else save_tiny("bert", tmp_path / "bert")
    train, test = gold_split()
    trained = IntentRefiner.from_base(base, **FAST).fit(train[:24])
    requests = [Request(e.query, e.titles) for e in test[:10]]
    emb_in, emb_out = trained.model.get_input_embeddings(), trained.model.get_output_embeddings()
    weights = (emb_in.weight.clone(), emb_out.weight.clone())
    for beams in (1, 2):
        whole = trained.decoding(local_vocab=False, num_beams=beams).predict(requests, batch_size=4)
        local = trained.decoding(local_vocab=True, num_beams=beams).predict(requests, batch_size=4)
        if beams == 1:
            assert local == whole
        for r, out in zip(requests, local):  # copy-only and key tokens either way
            assert set(out.split()) <= set(tokens(" ".join([r.query, *r.titles]))) and set(key_tokens(r.query)) <= set(out.split())
    assert trained.model.get_input_embeddings() is emb_in and trained.model.get_output_embeddings() is emb_out
    assert torch.equal(emb_in.weight, weights[0]) and torch.equal(emb_out.weight, weights[1])
    assert len(trained.decoding(local_vocab=True)._local_vocab([[5, 6, 7]], [([[7, 8]], ["x"], {"x"})]).ids) == len({5, 6, 7, 8, trained.eos, trained.pad})


def test_prefix_lm_lets_the_prompt_see_itself_both_ways_in_training_and_decoding(tiny: dict[str, Path], tmp_path: Path) -> None:
    """``prefix_lm``: the prompt but its last token sees itself both ways, Q* is causal, in ``fit``
    and in ``predict`` (the prompt's cache is made once with that mask, then ``generate`` goes on from
    it). ``None`` resolves to the base's own way and is saved resolved."""
    import torch

    from tiny_models import save_tiny

    bert = save_tiny("bert", tmp_path / "bert")
    assert IntentRefiner.from_base(bert, prefix_lm=None).params.prefix_lm is True  # an encoder checkpoint
    assert IntentRefiner.from_base(tiny["hf"], prefix_lm=None).params.prefix_lm is False  # a decoder LM
    refiner = IntentRefiner.from_base(bert, prefix_lm=None, **FAST)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    allowed = refiner._attention(mask, [3, 5])  # prompts of 3 and 5 tokens, then Q* tokens
    seen = allowed if allowed.dtype == torch.bool else allowed == 0
    row0 = seen[0, 0].int().tolist()
    assert row0[2][:4] == [0, 0, 1, 1] and row0[3][:5] == [0, 0, 1, 1, 0]  # the prompt's first two tokens see each other
    assert row0[4][:6] == [0, 0, 1, 1, 1, 0] and row0[6] == [0, 0, 1, 1, 1, 1, 1]  # the last prompt token and Q* are causal
    assert seen[1, 0, 0, :5].int().tolist() == [1, 1, 1, 1, 0] and not seen[1, 0, 4, 5]
    train, test = gold_split()
    requests = [Request(e.query, e.titles) for e in test[:10]]
    trained = refiner.fit(train[:24])
    out = trained.predict(requests, batch_size=4)
    ids = torch.tensor([trained.prompt_ids(requests[0])])
    body = trained.model.base_model
    both = body(input_ids=ids, attention_mask=trained._attention(torch.ones_like(ids), [ids.shape[1]])).last_hidden_state
    one_way = body(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    assert not torch.allclose(both[0, 0], one_way[0, 0], atol=1e-4)  # the mask is in effect: the first token sees the rest
    assert [trained.predict([r])[0] for r in requests] == out  # a request's Q* does not depend on its batch
    again = IntentRefiner.from_pretrained(trained.save_pretrained(tmp_path / "model"), serving_precision="float32")
    assert again.params.prefix_lm is True and again.predict(requests, batch_size=4) == out
    for r, o in zip(requests, out):
        assert set(key_tokens(r.query)) <= set(o.split())


@pytest.mark.parametrize("kind", ["gguf", "hf", "bert"])
def test_the_prompt_runs_once_per_request_and_decodes_as_generate_alone_does(kind: str, tiny: dict[str, Path], tmp_path: Path) -> None:
    """``predict`` runs each prompt once and repeats its cache for the beams (``_prompt_cache``);
    ``generate`` on its own runs it once per beam. Same Q*, whatever the model."""
    from tiny_models import save_tiny

    base = tiny[kind] if kind in tiny else save_tiny("bert", tmp_path / "bert")
    train, test = gold_split()
    refiner = IntentRefiner.from_base(base, prefix_lm=False, **{**FAST, "num_beams": 3}).fit(train[:16])
    requests = [Request(e.query, e.titles) for e in test[:10]]
    for copy_only in (True, False):
        alone = refiner.decoding(copy_only=copy_only)
        alone._prompt_cache = lambda *args: {}  # type: ignore[method-assign]
        assert refiner.decoding(copy_only=copy_only).predict(requests, batch_size=5) == alone.predict(requests, batch_size=5)  # batches of 5 >= PROMPT_CACHE_MIN_BATCH


def test_a_base_grown_by_block_expansion_starts_as_the_base_and_trains_saves_and_loads(tiny: dict[str, Path], tmp_path: Path) -> None:
    import torch

    from classifier.lm import load_causal_lm

    base, _, _ = load_causal_lm(tiny["hf"])
    grown, _, _ = load_causal_lm(f"{tiny['hf']}@4")
    assert base.config.num_hidden_layers == 2 and grown.config.num_hidden_layers == 4
    b, g = base.state_dict(), grown.state_dict()
    for j in range(4):
        for name in ("self_attn.q_proj.weight", "mlp.up_proj.weight", "input_layernorm.weight"):
            assert torch.equal(g[f"model.layers.{j}.{name}"], b[f"model.layers.{j // 2}.{name}"])  # each block copies the base's
        for name in ("self_attn.o_proj.weight", "mlp.down_proj.weight"):  # the copies write nothing at first
            assert torch.equal(g[f"model.layers.{j}.{name}"], b[f"model.layers.{j // 2}.{name}"]) if j % 2 == 0 else not g[f"model.layers.{j}.{name}"].any()
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():  # a pre-norm block whose output projections are zero adds nothing: the same function
        assert torch.allclose(base(input_ids=ids).logits, grown(input_ids=ids).logits, atol=1e-5)
    with pytest.raises(ValueError, match="cannot grow"):
        load_causal_lm(f"{tiny['hf']}@1")
    train, test = gold_split()
    refiner = IntentRefiner.from_base(f"{tiny['hf']}@4", **FAST).fit(train[:24])
    assert refiner.model.config.num_hidden_layers == 4 and refiner.fit_report_["last_loss"] < refiner.fit_report_["first_loss"]
    requests = [Request(e.query, e.titles) for e in test[:4]]
    again = IntentRefiner.from_pretrained(refiner.save_pretrained(tmp_path / "grown"), serving_precision="float32")
    assert again.model.config.num_hidden_layers == 4 and again.predict(requests) == refiner.predict(requests)


def test_int8_serving_prints_no_torch_deprecation_notice() -> None:
    """torch deprecates its eager quantization (torch.ao); the int8 option quantizes without printing
    its two notices, and the linear layers are still quantized."""
    import warnings

    import torch

    from intent.model import serving_model

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        served = serving_model(model, "int8")
        out = served(torch.randn(3, 8))
    assert out.shape == (3, 2)
    assert all("quantized" in type(m).__module__ for m in served.modules() if "Linear" in type(m).__name__)
    assert [str(w.message)[:60] for w in caught] == []
