"""How training data grows beyond the gold set, as in the original system:

1. SFT on the gold set;
2. weak labels: the trained model labels an unlabelled pool, a judge scores each (document, topic)
   0-100 (G-Eval style form: 100 = right and specific, 30 = right but only the top level, 0 = wrong),
   labels scoring at least the threshold are kept, and the model is trained again;
3. synthetic documents for under-covered topics from a teacher (a title first, then a body from the
   topic and the title), and the model is trained again.

Judge and teacher are pluggable: local ones that run here (``EmbeddingJudge``, ``MarkovTeacher``) and
an OpenAI-compatible HTTP endpoint for a large LLM in production (``LLMJudge``, ``LLMTeacher``).
``run_ablation`` trains after every step and reports on a dev split whether the step helps.
"""

from __future__ import annotations

import itertools
import random
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import numpy as np

from classifier.baselines import EmbeddingTopicClassifier, _LogRegTopics
from classifier.data import Doc
from classifier.evaluate import EvalResult, evaluate
from classifier.model import TopicClassifier, train_recipe
from classifier.teacher import LMEncoder, LMFeatureTopicClassifier, LMTeacher
from topicfeed.settings import ClassifierSettings
from topicfeed.taxonomy import Taxonomy, split_path

RUBRIC = (
    "You grade the topic label of a document against a topic taxonomy.\n"
    "Score 100 if the topic is right and as specific as the document allows, "
    "30 if it is right only at its top level, 0 if it is wrong. Scores in between are allowed.\n"
    "Answer with the score only, a whole number from 0 to 100."
)


class Judge(Protocol):
    def score(self, docs: Sequence[Doc], topics: Sequence[str]) -> list[float]: ...


class Teacher(Protocol):
    def write(self, topic: str, n: int, seed: int) -> list[Doc]: ...

    def write_many(self, topics: Sequence[str], n: int, seed: int) -> list[Doc]:
        """``n`` documents for each topic, topic by topic (a teacher that batches overrides this)."""
        return [d for topic in topics for d in self.write(topic, n, seed)]


# -- judges -------------------------------------------------------------------------------------------
class EmbeddingJudge:
    """A local judge: an independent model (MiniLM embeddings + logistic regression on the gold set)
    fills the rubric in expectation, G-Eval style: 100 x P(topic right) + 30 x P(only its top level right)."""

    def __init__(self, taxonomy: Taxonomy, model: _LogRegTopics | None = None) -> None:
        """``model``: the probe whose probabilities fill the rubric (default MiniLM + LR; an LM's states
        + LR is ``classifier.teacher.LMFeatureTopicClassifier``)."""
        self.taxonomy = taxonomy
        self.model = model or EmbeddingTopicClassifier(taxonomy)

    def fit(self, gold: Sequence[Doc]) -> EmbeddingJudge:
        self.model.fit(gold)
        return self

    def score(self, docs: Sequence[Doc], topics: Sequence[str]) -> list[float]:
        proba = self.model.proba(docs)
        classes = [split_path(c) for c in self.model.clf.classes_]
        out = []
        for p, topic in zip(proba, topics):
            parts = split_path(topic)
            under = np.array([c[: len(parts)] == parts for c in classes])
            same_top = np.array([c[0] == parts[0] for c in classes])
            exact = np.array([c == parts for c in classes])
            p_exact = float(p[exact].sum())
            if p_exact > 0 or not under.any():  # the topic is as specific as the gold labels
                s = 100 * p_exact + 30 * float(p[same_top & ~exact].sum())
            else:  # an ancestor of gold-level topics: right at best at a coarser level
                s = 30 * float(p[under].sum()) if len(parts) == 1 else 60 * float(p[under].sum()) + 30 * float(p[same_top & ~under].sum())
            out.append(round(min(100.0, max(0.0, s)), 2))
        return out


class OpenAICompatible:
    """A chat-completions client for any OpenAI-compatible endpoint (vLLM, TGI, OpenAI, ...)."""

    def __init__(self, url: str, model: str, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(timeout=timeout_s, headers=headers)

    def chat(self, system: str, user: str, *, max_tokens: int = 200, temperature: float = 0.0, seed: int | None = None) -> str:
        body = {"model": self.model, "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}], "max_tokens": max_tokens, "temperature": temperature}
        if seed is not None:
            body["seed"] = seed
        resp = self.http.post(self.url, json=body)
        resp.raise_for_status()
        try:
            return resp.json()["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.url}: not a chat-completions answer: {resp.text[:200]}") from exc


class LLMJudge:
    """The production judge: a large LLM behind an OpenAI-compatible endpoint fills in the rubric."""

    def __init__(self, client: OpenAICompatible) -> None:
        self.client = client

    def score(self, docs: Sequence[Doc], topics: Sequence[str]) -> list[float]:
        out = []
        for d, t in zip(docs, topics):
            answer = self.client.chat(RUBRIC, f"Document:\n{d.text}\n\nTopic: {t}\n\nScore:", max_tokens=5)
            match = re.search(r"\d+(?:\.\d+)?", answer)
            if match is None:
                raise ValueError(f"judge answer for document {d.doc_id!r} has no score: {answer!r}")
            out.append(min(100.0, max(0.0, float(match.group()))))
        return out


# -- teachers -----------------------------------------------------------------------------------------
_WORD = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")


class MarkovTeacher(Teacher):
    """A local teacher: word-bigram models of the titles and of the bodies of each topic's documents
    (backing off to the topic's parent, then to everything). It writes a title first, then a body that
    starts from the title's words, so the two agree. Crude text, but on-topic vocabulary."""

    def __init__(self, taxonomy: Taxonomy, title_words: tuple[int, int] = (8, 14), body_words: tuple[int, int] = (20, 45)) -> None:
        self.taxonomy = taxonomy
        self.title_words = title_words
        self.body_words = body_words
        self._titles: dict[tuple[str, ...], dict[str, list[str]]] = {}
        self._bodies: dict[tuple[str, ...], dict[str, list[str]]] = {}

    @staticmethod
    def _bigrams(texts: Sequence[str]) -> dict[str, list[str]]:
        table: dict[str, list[str]] = defaultdict(list)
        for text in texts:
            words = ["<s>", *_WORD.findall(text), "</s>"]
            for a, b in itertools.pairwise(words):
                table[a].append(b)
        return dict(table)

    def fit(self, docs: Sequence[Doc]) -> MarkovTeacher:
        titles: dict[tuple[str, ...], list[str]] = defaultdict(list)
        bodies: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for d in docs:
            parts = split_path(d.topic)
            for depth in range(len(parts) + 1):  # the doc also teaches every ancestor (and the root)
                titles[parts[:depth]].append(d.title)
                if d.body:
                    bodies[parts[:depth]].append(d.body)
        self._titles = {k: self._bigrams(v) for k, v in titles.items()}
        self._bodies = {k: self._bigrams(v) for k, v in bodies.items()}
        return self

    def _table(self, tables: dict, parts: tuple[str, ...]) -> dict[str, list[str]]:
        for depth in range(len(parts), -1, -1):
            if parts[:depth] in tables:
                return tables[parts[:depth]]
        return {}  # no text of this kind at all (e.g. documents without bodies)

    @staticmethod
    def _sample(table: dict[str, list[str]], rng: random.Random, start: list[str], lo: int, hi: int) -> list[str]:
        words = list(start)
        prev = words[-1] if words else "<s>"
        target = rng.randint(lo, hi)
        while len(words) < target:
            nxt = table.get(prev)
            if not nxt:
                break
            prev = rng.choice(nxt)
            if prev == "</s>":
                if len(words) >= lo:
                    break
                prev = "<s>"
                continue
            words.append(prev)
        return words

    @staticmethod
    def _join(words: list[str]) -> str:
        text = " ".join(words)
        return re.sub(r"\s+([^\w\s(\"'])", r"\1", text).strip()

    def write(self, topic: str, n: int, seed: int) -> list[Doc]:
        if not self._titles:
            raise ValueError("the teacher has not been fitted")
        parts = self.taxonomy.node(topic).parts
        rng = random.Random(f"{seed}:{topic}")
        titles, bodies = self._table(self._titles, parts), self._table(self._bodies, parts)
        docs = []
        for i in range(n):
            title = self._join(self._sample(titles, rng, [], *self.title_words))
            seed_words = [w for w in _WORD.findall(title) if w in bodies][:1]
            body = self._join(self._sample(bodies, rng, seed_words, *self.body_words))
            docs.append(Doc(f"synthetic-{seed}-{zlib.crc32(topic.encode())}-{i}", title or topic, body, (topic,)))
        return docs


class LLMTeacher(Teacher):
    """The production teacher: a large LLM writes a title for the topic, then a body from topic and title."""

    def __init__(self, client: OpenAICompatible) -> None:
        self.client = client

    def write(self, topic: str, n: int, seed: int) -> list[Doc]:
        docs = []
        for i in range(n):
            title = self.client.chat("You write realistic news headlines.", f"Write one news headline about the topic '{topic}'. Headline only.", max_tokens=40, temperature=0.9, seed=seed + i).strip().strip('"')
            body = self.client.chat(
                "You write realistic news abstracts.", f"Topic: {topic}\nHeadline: {title}\nWrite the article's two- or three-sentence abstract.", max_tokens=160, temperature=0.7, seed=seed + i
            ).strip()
            docs.append(Doc(f"synthetic-{seed}-{zlib.crc32(topic.encode())}-{i}", title or topic, body, (topic,)))
        return docs


def make_judge(settings: ClassifierSettings, taxonomy: Taxonomy, gold: Sequence[Doc]) -> Judge:
    """The endpoint's LLM when ``llm_url`` is set; else the local teacher LM's states (``teacher_base``)
    or MiniLM's embeddings, with a logistic regression fitted on ``gold``."""
    if settings.llm_url:
        return LLMJudge(OpenAICompatible(settings.llm_url, settings.llm_model, settings.llm_api_key))
    if settings.teacher_base:
        encoder = LMEncoder(settings.teacher_base, max_tokens=settings.max_prompt_tokens, device=settings.device)
        return EmbeddingJudge(taxonomy, LMFeatureTopicClassifier(taxonomy, encoder)).fit(gold)
    return EmbeddingJudge(taxonomy).fit(gold)


def make_teacher(settings: ClassifierSettings, taxonomy: Taxonomy, gold: Sequence[Doc]) -> Teacher:
    """The endpoint's LLM when ``llm_url`` is set; else the local teacher LM (``teacher_base``) or the bigram writer."""
    if settings.llm_url:
        return LLMTeacher(OpenAICompatible(settings.llm_url, settings.llm_model, settings.llm_api_key))
    if settings.teacher_base:
        return LMTeacher(settings.teacher_base, taxonomy, device=settings.device)
    return MarkovTeacher(taxonomy).fit(gold)


# -- the steps ----------------------------------------------------------------------------------------
@dataclass
class WeakLabels:
    labelled: list[Doc]  # pool documents with the model's best topic as their topic
    scores: list[float]  # the judge's score of each
    threshold: float

    @property
    def kept(self) -> list[Doc]:
        return [d for d, s in zip(self.labelled, self.scores) if s >= self.threshold]

    @property
    def proposed(self) -> int:
        return len(self.labelled)

    def at(self, threshold: float) -> WeakLabels:
        return WeakLabels(self.labelled, self.scores, threshold)


def weak_label(model: TopicClassifier, pool: Sequence[Doc], judge: Judge, threshold: float) -> WeakLabels:
    """Label ``pool`` with the model's best topic; keep the labels the judge scores at least ``threshold``."""
    preds = model.predict(pool, k=1)
    labelled = [Doc(d.doc_id, d.title, d.body, (p[0].path,)) for d, p in zip(pool, preds) if p and p[0] is not None]
    return WeakLabels(labelled, judge.score(labelled, [d.topic for d in labelled]), threshold)


def under_covered(taxonomy: Taxonomy, docs: Sequence[Doc], min_docs: int) -> list[str]:
    """Topics at the depth the training labels use that have fewer than ``min_docs`` documents."""
    counts = Counter(d.topic for d in docs)
    depths = {taxonomy.node(t).level for t in counts}
    return [n.path for n in taxonomy if n.level in depths and counts.get(n.path, 0) < min_docs]


@dataclass
class AblationRow:
    step: str
    train_docs: int
    result: EvalResult
    train_s: float
    note: str = ""


@dataclass
class Ablation:
    rows: list[AblationRow] = field(default_factory=list)

    def table(self) -> str:
        head = ["step", "train docs", "L1 top-1", "L2 top-1", "L2 R@3", "train s", "note"]
        lines = [head]
        for r in self.rows:
            l1, l2 = r.result.level(1), r.result.level(2)
            lines.append([r.step, str(r.train_docs), f"{l1.top1:.3f}" if l1 else "n/a", f"{l2.top1:.3f}" if l2 and l2.n else "n/a", f"{l2.recall:.3f}" if l2 and l2.n else "n/a", f"{r.train_s:.0f}", r.note])
        widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip() for x in lines)


def run_ablation(
    taxonomy: Taxonomy,
    gold: Sequence[Doc],
    pool: Sequence[Doc],
    dev: Sequence[Doc],
    settings: ClassifierSettings,
    *,
    judge: Judge | None = None,
    teacher: Teacher | None = None,
    without_judge: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Ablation:
    """Train after each step of the pipeline and score every model on ``dev``."""

    def train(docs: Sequence[Doc]) -> tuple[TopicClassifier, float]:
        return train_recipe(settings, taxonomy, docs, progress=progress)

    def ev(name: str, clf: TopicClassifier) -> EvalResult:
        return evaluate(name, clf, dev, taxonomy, k=settings.num_beams, batch_size=settings.predict_batch_size)

    ablation = Ablation()
    judge = judge or make_judge(settings, taxonomy, gold)
    teacher = teacher or make_teacher(settings, taxonomy, gold)

    m1, s1 = train(gold)
    ablation.rows.append(AblationRow("1 SFT on gold", len(gold), ev("gold", m1), s1))
    log(ablation.table())

    weak = weak_label(m1, pool, judge, settings.judge_threshold)
    right = {d.doc_id: d.topic for d in pool if d.topics}

    def share_right(labels: Sequence[Doc]) -> float:
        """How many weak labels equal the pool's hidden gold topic (measurable only in an ablation)."""
        return sum(right.get(d.doc_id) == d.topic for d in labels) / len(labels) if labels and right else float("nan")

    if without_judge:
        unfiltered = weak.at(0.0)
        m, s = train([*gold, *unfiltered.kept])
        ablation.rows.append(
            AblationRow("2a + weak labels, no judge", len(gold) + len(unfiltered.kept), ev("weak-all", m), s, f"labels right: {share_right(unfiltered.kept):.1%}")
        )
        log(ablation.table())
    m2, s2 = train([*gold, *weak.kept])
    ablation.rows.append(
        AblationRow(
            f"2 + weak labels, judge >= {settings.judge_threshold:g}",
            len(gold) + len(weak.kept),
            ev("weak-judged", m2),
            s2,
            f"kept {len(weak.kept)}/{weak.proposed}; labels right: {share_right(weak.kept):.1%}",
        )
    )
    log(ablation.table())

    base = [*gold, *weak.kept]
    topics = under_covered(taxonomy, base, settings.synthetic_min_docs)
    synthetic = teacher.write_many(topics, settings.synthetic_per_topic, settings.seed)
    m3, s3 = train([*base, *synthetic])
    ablation.rows.append(AblationRow("3 + synthetic (rare topics)", len(base) + len(synthetic), ev("synthetic", m3), s3, f"{len(synthetic)} docs for {len(topics)} topics"))
    log(ablation.table())
    return ablation
