"""A local LLM as the data pipeline's teacher and judge (Gemma 3 270M base from PyPI by default; any
base ``classifier.lm`` loads works the same way).

* **Weak labels** (step 2): a ``TopicClassifier`` fine-tuned from the teacher's base labels the pool;
  ``teacher_labels`` keeps its best path (a hard label) and its top candidates with their renormalised
  probabilities (soft targets, ``Doc.weights``), which ``TopicClassifier.fit`` weights in the loss.
* **Judge**: ``pipeline.EmbeddingJudge`` over ``LMFeatureTopicClassifier`` fills the rubric in
  expectation, G-Eval style, from a logistic regression over the LM's frozen mean hidden states, fitted
  on the gold set (``pipeline.make_judge`` with ``teacher_base`` set). A prompted
  yes/no judge was measured first and rejected: the 270M *base* model answers at chance
  (``benchmarks/judge_prompted.py``; docs/experiments.md).
* **Synthetic documents** (step 3): ``LMTeacher`` writes a headline for the topic, then a body from the
  topic and the headline, by sampling the base LM after a few hand-written examples. The examples are
  not taken from any dataset, so the documents depend on the topic alone (and are the same in every
  cross-validation fold).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from classifier.baselines import _LogRegTopics
from classifier.data import Doc
from classifier.decoding import left_pad, lm_parts
from classifier.lm import load_causal_lm
from classifier.model import TopicClassifier, mean_pool
from classifier.trie import Verbalizer
from topicfeed.taxonomy import Taxonomy, split_path

# Hand-written (not from any dataset): they show the format, never a real article.
EXAMPLES = (
    ("sports > football", "Late field goal lifts Denver past Kansas City 23-20", "Denver's kicker made a 48-yard field goal with four seconds left as the home side ended a three-game losing run."),
    ("finance > markets", "Stocks slip as investors weigh another rate rise", "Major indexes closed lower on Tuesday after central bank officials signalled that borrowing costs could rise again this year."),
    ("food and drink > recipes", "Five quick weeknight soups that taste like they took all day", "From a lemony chicken orzo to a smoky black bean soup, these recipes need one pot and about thirty minutes."),
)


@lru_cache(maxsize=2)
def frozen_lm(base: str, device: str = "cpu") -> tuple[torch.nn.Module, object]:
    """A base LM loaded once per (base, device) in eval mode, shared by ``LMEncoder`` and ``LMTeacher``
    (neither trains it; a classifier fine-tuned from the same base loads its own copy)."""
    model, tokenizer, _ = load_causal_lm(base)
    return model.to(device).eval(), tokenizer


class LMEncoder:
    """Mean last hidden state over a document's first ``max_tokens`` tokens, from a frozen causal LM."""

    def __init__(self, base: str | Path, *, max_tokens: int = 64, batch_size: int = 16, device: str = "cpu") -> None:
        self.base = str(base)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.device = device

    def lm(self) -> tuple[torch.nn.Module, object]:
        return frozen_lm(self.base, self.device)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model, tokenizer = self.lm()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=self.max_tokens)["input_ids"]
        out = []
        for i in range(0, len(ids), self.batch_size):
            batch, valid = left_pad(ids[i : i + self.batch_size], pad, self.device)
            hidden = lm_parts(model)[0](input_ids=batch, attention_mask=valid.long(), use_cache=False).last_hidden_state  # no logits
            pooled = mean_pool(hidden.float(), valid)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


class LMFeatureTopicClassifier(_LogRegTopics):
    """Logistic regression over an LM's frozen mean hidden states (a probe; the judge's model)."""

    name = "lm+logreg"

    def __init__(self, taxonomy: Taxonomy, encoder: LMEncoder, C: float = 10.0) -> None:
        super().__init__(taxonomy, C=C)
        self.encoder = encoder

    def _features(self, texts: list[str], fit: bool) -> np.ndarray:
        return self.encoder.encode(texts)


def teacher_labels(teacher: TopicClassifier, pool: Sequence[Doc], *, k: int = 3, min_weight: float = 0.05, batch_size: int = 32) -> list[Doc]:
    """The pool labelled by ``teacher``: each document's topics are its ``k`` best paths, best first (the
    first is the hard label), with their probabilities renormalised over those kept (``>= min_weight``)
    as ``weights`` (soft targets). Documents the teacher gives no answer are left out."""
    out = []
    for d, answers in zip(pool, teacher.predict(pool, k=k, batch_size=batch_size)):
        kept = [a for a in answers if a is not None]
        if not kept:
            continue
        total = sum(a.score for a in kept) or 1.0
        kept = [a for i, a in enumerate(kept) if i == 0 or a.score / total >= min_weight]
        total = sum(a.score for a in kept) or 1.0
        out.append(Doc(d.doc_id, d.title, d.body, tuple(a.path for a in kept), tuple(round(a.score / total, 6) for a in kept)))
    return out


def hard(labels: Sequence[Doc]) -> list[Doc]:
    """Only the best topic of each teacher-labelled document, unweighted (a hard label)."""
    return [Doc(d.doc_id, d.title, d.body, d.topics[:1]) for d in labels]


class LMTeacher:
    """Synthetic documents for a topic from a base causal LM: a headline, then a body from the topic and
    the headline, each sampled after the hand-written ``EXAMPLES`` and cut at the first line break."""

    def __init__(
        self,
        base: str | Path,
        taxonomy: Taxonomy,
        *,
        title_tokens: int = 24,
        body_tokens: int = 64,
        temperature: float = 0.8,
        top_p: float = 0.95,
        batch_size: int = 16,
        device: str = "cpu",
        progress: bool = False,
    ) -> None:
        self.base, self.taxonomy = str(base), taxonomy
        self.title_tokens, self.body_tokens = title_tokens, body_tokens
        self.temperature, self.top_p = temperature, top_p
        self.batch_size, self.device, self.progress = batch_size, device, progress
        self._verbalizer: Verbalizer | None = None

    def lm(self) -> tuple[torch.nn.Module, object, Verbalizer]:
        model, tokenizer = frozen_lm(self.base, self.device)
        if self._verbalizer is None:
            self._verbalizer = Verbalizer(tokenizer)
        return model, tokenizer, self._verbalizer

    def topic_words(self, topic: str) -> str:
        *_, spell = self.lm()
        return " > ".join(" ".join(spell.segment(p.replace("_", " ").strip())) if " " not in p else p for p in split_path(self.taxonomy.node(topic).path)).lower()

    @staticmethod
    def _prompt(topic_words: str, title: str | None = None) -> str:
        shots = "".join(f"Topic: {t}\nHeadline: {h}\nArticle: {b}\n\n" for t, h, b in EXAMPLES)
        head = f"{shots}Topic: {topic_words}\nHeadline:"
        return head if title is None else f"{head} {title}\nArticle:"

    @torch.inference_mode()
    def _complete(self, prompts: Sequence[str], max_new: int, seed: int) -> list[str]:
        model, tokenizer, _ = self.lm()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
        stop = [t for t in [*newline[-1:], tokenizer.eos_token_id] if t is not None]
        out: list[str] = []
        for i in range(0, len(prompts), self.batch_size):
            ids = tokenizer(list(prompts[i : i + self.batch_size]), add_special_tokens=True)["input_ids"]
            batch, valid = left_pad(ids, pad, self.device)
            torch.manual_seed(zlib.crc32(f"{seed}:{i}:{prompts[i]}".encode()))
            gen = model.generate(
                input_ids=batch,
                attention_mask=valid.long(),
                max_new_tokens=max_new,
                do_sample=True,
                temperature=self.temperature,
                top_p=self.top_p,
                eos_token_id=stop,
                pad_token_id=pad,
            )
            for row in gen[:, batch.shape[1] :].tolist():
                out.append(tokenizer.decode(row, skip_special_tokens=True).split("\n")[0].strip())
        return out

    def write_many(self, topics: Sequence[str], n: int, seed: int) -> list[Doc]:
        """``n`` documents for each topic (seeded: the same call writes the same documents)."""
        jobs = [(t, i) for t in topics for i in range(n)]
        words = {t: self.topic_words(t) for t in topics}
        bar = tqdm(total=2, desc="teacher writes", unit="pass", disable=not self.progress)
        titles = self._complete([self._prompt(words[t]) for t, _ in jobs], self.title_tokens, seed)
        bar.update(1)
        titles = [title.strip('" ') or words[t] for title, (t, _) in zip(titles, jobs)]
        bodies = self._complete([self._prompt(words[t], title) for title, (t, _) in zip(titles, jobs)], self.body_tokens, seed)
        bar.update(1)
        bar.close()
        return [Doc(f"synthetic-{seed}-{zlib.crc32(t.encode())}-{i}", title, body, (t,)) for title, body, (t, i) in zip(titles, bodies, jobs)]

    def write(self, topic: str, n: int, seed: int) -> list[Doc]:
        return self.write_many([topic], n, seed)
