"""The topic classifier: a causal LM fine-tuned (SFT, loss on the label tokens only) to write a document's
topic as a taxonomy path, and decoded with candidate beam search so that every answer is a node.

``TopicClassifier.from_base(path, taxonomy, **params)`` starts from any Hugging Face causal LM on disk (or
a BERT checkpoint, loaded as a causal LM with ``is_decoder=True``); ``fit`` / ``predict`` /
``save_pretrained`` / ``from_pretrained`` follow scikit-learn and transformers. Every hyperparameter
(recipe and inference) lives in one ``ClassifierSettings`` object, ``clf.params``: its defaults are the
defaults of the Python API and of ``topicfeed classify train`` alike; ``fit`` reads it and returns
``self``; what fitting learns ends in ``_`` (``fit_report_``). A saved classifier is one directory: the
model and tokenizer in the transformers format, ``taxonomy.tsv`` and ``topicfeed_classifier.json``
(prompt settings and the trie's token sequences, checked against the tokenizer when loading).

The default recipe also trains a *topic head*: a linear layer over the mean of the prompt's hidden
states, one class per taxonomy node, trained jointly with the LM loss. Reading it needs no extra model
pass (the search's prompt pass computes those states anyway); it is saved as ``topic_head.safetensors``.
``predict`` then widens the search to ``head_beams`` and re-ranks those valid answers by
``log p_LM + head_weight * log p_head`` (see ``classifier.rescore``).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

from classifier.data import Doc
from classifier.decoding import attention_mask_4d, beam_search, left_pad, lm_parts, model_device, prompt_mask, restricted_head
from classifier.lm import load_causal_lm, quantize_int8
from classifier.scores import TopicScore, rescore
from classifier.trie import TopicTrie, end_token_id
from topicfeed.settings import ClassifierSettings
from topicfeed.taxonomy import Taxonomy

CONFIG_NAME = "topicfeed_classifier.json"
TAXONOMY_NAME = "taxonomy.tsv"
HEAD_NAME = "topic_head.safetensors"
HEAD_LR_SCALE = 10.0  # the topic head starts from scratch: it learns at 10x the body's learning rate
WEIGHT_DECAY = 0.01
WARMUP = 0.06  # share of the steps with a rising learning rate


@dataclass
class FitReport:
    epochs: int
    examples: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss per epoch


def mean_pool(hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The mean of each row's hidden states over its real tokens: (batch, L, d), (batch, L) -> (batch, d)."""
    weights = valid.to(hidden.dtype)[:, :, None]
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class TopicClassifier:
    def __init__(
        self,
        model,
        tokenizer,
        taxonomy: Taxonomy,
        *,
        prefix_lm: bool,
        params: ClassifierSettings | None = None,
        prompt_suffix: str = " topic:",
        topic_head: torch.nn.Linear | None = None,
    ):
        """``params``: every hyperparameter (default ``ClassifierSettings()``); ``topic_head``: a linear
        layer from the mean prompt state to one logit per taxonomy node (node ids as classes)."""
        self.model = model
        self.tokenizer = tokenizer
        self.taxonomy = taxonomy
        self.prefix_lm = prefix_lm
        self.params = params or ClassifierSettings()
        self.prompt_suffix = prompt_suffix
        self.trie = TopicTrie.build(taxonomy, tokenizer, verbalize=self.verbalize)
        self.end_id = end_token_id(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_id
        start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        self._start = [int(start)] if start is not None else []
        self._suffix = tokenizer(prompt_suffix, add_special_tokens=False)["input_ids"]
        self.fit_report_: FitReport | None = None
        if topic_head is not None and topic_head.out_features != len(taxonomy.nodes):
            raise ValueError(f"the topic head has {topic_head.out_features} classes, the taxonomy {len(taxonomy.nodes)} nodes")
        self.topic_head = topic_head

    # what the prompt and the inference read from ``params``
    @property
    def max_prompt_tokens(self) -> int:
        return self.params.max_prompt_tokens

    @property
    def verbalize(self) -> bool:
        return self.params.verbalize_labels

    @property
    def head_weight(self) -> float:
        """Inference: re-rank the ``head_beams`` best answers by ``log p_LM + head_weight * log p_head`` (0: off)."""
        return self.params.head_weight

    @property
    def head_beams(self) -> int:
        return self.params.rescore_beams

    def set_params(self, **params: object) -> TopicClassifier:
        """Change hyperparameters (``ClassifierSettings`` names, validated); the prompt's own ones
        (``max_prompt_tokens``, ``verbalize_labels``) are fixed once the trie is built."""
        fixed = {"max_prompt_tokens", "verbalize_labels"} & {k for k, v in params.items() if v != getattr(self.params, k, None)}
        if fixed:
            raise ValueError(f"{sorted(fixed)} cannot change after the classifier is built")
        self.params = _params(self.params, params)
        return self

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_base(
        cls,
        base: str | Path,
        taxonomy: Taxonomy,
        *,
        params: ClassifierSettings | None = None,
        **overrides: object,
    ) -> TopicClassifier:
        """A classifier to train, from a causal LM (or BERT-style encoder) saved on disk; ``"minilm"`` for the default.
        Hyperparameters: ``params`` (default ``ClassifierSettings()``) with ``overrides`` by name, e.g.
        ``max_prompt_tokens=32, epochs=2``. With ``topic_head`` a new head over the mean prompt state is
        trained along with the LM."""
        params = _params(params or ClassifierSettings(), overrides)
        prefix_lm, seed = params.prefix_lm, params.seed
        torch.manual_seed(seed)
        model, tokenizer, bidirectional = load_causal_lm(base)
        head = torch.nn.Linear(model.config.hidden_size, len(taxonomy.nodes)) if params.topic_head else None
        return cls(model, tokenizer, taxonomy, prefix_lm=bidirectional if prefix_lm is None else prefix_lm, params=params, topic_head=head)

    @classmethod
    def from_pretrained(cls, directory: str | Path, params: ClassifierSettings | None = None) -> TopicClassifier:
        """A saved classifier; ``params`` sets its inference (the prompt's own settings come from the directory)."""
        directory = Path(directory)
        meta_path = directory / CONFIG_NAME
        if not meta_path.exists():
            raise FileNotFoundError(f"{directory} is not a saved topic classifier: {CONFIG_NAME} is missing")
        meta = json.loads(meta_path.read_text())
        taxonomy = Taxonomy.load(directory / TAXONOMY_NAME)
        model = AutoModelForCausalLM.from_pretrained(directory)
        model.eval()
        tokenizer = AutoTokenizer.from_pretrained(directory)
        head = None
        if meta.get("topic_head"):
            state = load_file(directory / HEAD_NAME)
            head = torch.nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
            head.load_state_dict(state)
            head.eval()
        saved = {"max_prompt_tokens": meta["max_prompt_tokens"], "verbalize_labels": meta.get("verbalize", False), "topic_head": head is not None}
        clf = cls(model, tokenizer, taxonomy, prefix_lm=meta["prefix_lm"], params=_params(params or ClassifierSettings(), saved), prompt_suffix=meta["prompt_suffix"], topic_head=head)
        sequences = {int(k): tuple(v) for k, v in meta["trie"]["sequences"].items()}
        if sequences != clf.trie.sequences:
            raise ValueError(f"{directory}: the saved label tokens differ from what the tokenizer gives now; the tokenizer or taxonomy changed")
        if meta.get("fit"):
            clf.fit_report_ = FitReport(**meta["fit"])
        return clf

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        if self.topic_head is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.topic_head.state_dict().items()}, directory / HEAD_NAME)
        (directory / TAXONOMY_NAME).write_text("".join(p + "\n" for p in self.taxonomy.paths()), encoding="utf-8")
        meta = {
            "format": 1,
            "taxonomy_name": self.taxonomy.name,
            "prefix_lm": self.prefix_lm,
            "max_prompt_tokens": self.max_prompt_tokens,
            "prompt_suffix": self.prompt_suffix,
            "verbalize": self.verbalize,
            "topic_head": self.topic_head is not None,
            "trie": self.trie.to_json(),
            "fit": None if self.fit_report_ is None else self.fit_report_.__dict__,
        }
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return directory

    # -- encoding -------------------------------------------------------------------------------------
    def encode_prompts(self, texts: Sequence[str]) -> list[list[int]]:
        body = self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=self.max_prompt_tokens)["input_ids"]
        return [self._start + ids + self._suffix for ids in body]

    def label_ids(self, path: str) -> tuple[int, ...]:
        return self.trie.sequences[self.taxonomy.node(path).id]

    # -- training -------------------------------------------------------------------------------------
    def _label_hidden(self, prompts: list[list[int]], labels: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher forcing: the hidden states that predict each label token, the tokens, their example index,
        and each example's mean prompt state (what the topic head reads)."""
        body, _ = lm_parts(self.model)
        dev = model_device(self.model)
        seqs = [p + list(lab) for p, lab in zip(prompts, labels)]
        length = max(len(s) for s in seqs)
        ids = torch.tensor([s + [self.pad_id] * (length - len(s)) for s in seqs], dtype=torch.long, device=dev)
        valid = torch.tensor([[True] * len(s) + [False] * (length - len(s)) for s in seqs], dtype=torch.bool, device=dev)
        # right padding: the prompt may see itself both ways (prefix LM), labels are causal
        allowed = prompt_mask(valid, prefix_lm=False)
        plen = torch.tensor([len(p) for p in prompts], device=dev)
        in_prompt = torch.arange(length, device=dev)[None, :] < plen[:, None]
        if self.prefix_lm:
            allowed = allowed | (in_prompt[:, None, :] & in_prompt[:, :, None])
        positions = torch.arange(length, device=dev)[None, :].expand(len(seqs), -1)
        hidden = body(input_ids=ids, attention_mask=attention_mask_4d(allowed, self.model), position_ids=positions, use_cache=False).last_hidden_state
        rows, cols, targets = [], [], []
        for i, (p, lab) in enumerate(zip(prompts, labels)):
            for j, tok in enumerate(lab):
                rows.append(i)
                cols.append(len(p) - 1 + j)
                targets.append(tok)
        rows_t = torch.tensor(rows, dtype=torch.long, device=dev)
        cols_t = torch.tensor(cols, dtype=torch.long, device=dev)
        return hidden[rows_t, cols_t], torch.tensor(targets, dtype=torch.long, device=dev), rows_t, mean_pool(hidden, in_prompt)

    def _loss(
        self, prompts: list[list[int]], labels: list[tuple[int, ...]], label_smoothing: float, head_loss: float = 1.0, weights: Sequence[float] | None = None
    ) -> torch.Tensor:
        """Mean cross-entropy of the label tokens (and of the topic head); with ``weights`` each example
        counts by its weight (soft targets: a document's candidate paths weighted by a teacher's probabilities)."""
        hidden, targets, rows, pooled = self._label_hidden(prompts, labels)
        _, head = lm_parts(self.model)
        w = None if weights is None else torch.tensor(list(weights), dtype=torch.float32, device=hidden.device)

        def ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
            if weight is None:
                return torch.nn.functional.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)
            each = torch.nn.functional.cross_entropy(logits.float(), target, label_smoothing=label_smoothing, reduction="none")
            return (each * weight).sum() / weight.sum().clamp(min=1e-8)

        loss = ce(head(hidden), targets, None if w is None else w[rows])
        if self.topic_head is not None and head_loss > 0:
            nodes = torch.tensor([self.trie.lookup(lab) for lab in labels], dtype=torch.long, device=pooled.device)
            loss = loss + head_loss * ce(self.topic_head(pooled), nodes, w)
        return loss

    @torch.inference_mode()
    def head_log_proba(self, docs: Sequence[Doc | str]) -> torch.Tensor:
        """log P(node | document) from the topic head, (documents, taxonomy nodes); node ids index the columns."""
        if self.topic_head is None:
            raise ValueError("this classifier has no topic head (train it with topic_head=True)")
        self.model.eval()
        texts = [d if isinstance(d, str) else d.text for d in docs]
        prompts = self.encode_prompts(texts)
        *_, pooled = self._label_hidden(prompts, [() for _ in prompts])
        return torch.log_softmax(self.topic_head(pooled).float(), dim=-1)

    @torch.inference_mode()
    def log_prob(self, docs: Sequence[Doc | str], paths: Sequence[str], *, label_vocab: bool = True) -> list[float]:
        """log P(path | document) by teacher forcing, normalised as ``predict`` normalises (see ``beam_search``)."""
        self.model.eval()
        texts = [d if isinstance(d, str) else d.text for d in docs]
        hidden, targets, rows, _ = self._label_hidden(self.encode_prompts(texts), [self.label_ids(p) for p in paths])
        _, head = lm_parts(self.model)
        if label_vocab:
            logits = restricted_head(head, self.trie.vocab.to(hidden.device))(hidden).float()
            local = {t: i for i, t in enumerate(self.trie.vocab.tolist())}
            targets = torch.tensor([local[t] for t in targets.tolist()], device=hidden.device)
        else:
            logits = head(hidden).float()
        token_lp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
        return torch.zeros(len(texts), device=hidden.device).index_add_(0, rows, token_lp).tolist()

    def fit(self, docs: Sequence[Doc], *, all_topics: bool = True, progress: bool = True) -> TopicClassifier:
        """Fine-tune on documents with gold topics with the recipe of ``params`` (``epochs``,
        ``batch_size``, ``learning_rate``, ``label_smoothing``, ``seed``); with ``all_topics`` every
        topic of a document is a target.

        A document with ``weights`` (soft targets) counts each topic by its weight; the others count 1 a topic.

        With ``augment_views`` a document that has both a title and a body is also seen as its title alone
        and as its body alone (three examples per topic), a data augmentation for small gold sets.

        A topic head, when the classifier has one, is trained with the LM: its cross-entropy is added to
        the LM loss at ``topic_head_loss``, and it learns at ``HEAD_LR_SCALE`` times the learning rate."""
        p = self.params
        epochs, batch_size, lr, seed = p.epochs, p.batch_size, p.learning_rate, p.seed
        label_smoothing, views, head_loss, weight_decay, warmup = p.label_smoothing, p.augment_views, p.topic_head_loss, WEIGHT_DECAY, WARMUP
        pairs = [
            (text, t, d.weights[j] if d.weights else 1.0) for d in docs for j, t in enumerate(d.topics if all_topics else d.topics[:1]) for text in _views(d, views)
        ]
        if not pairs:
            raise ValueError("fit needs at least one document with a topic")
        prompts = self.encode_prompts([text for text, _, _ in pairs])
        labels = [self.label_ids(t) for _, t, _ in pairs]
        weights = [w for _, _, w in pairs] if any(d.weights for d in docs) else None
        rng = random.Random(seed)
        torch.manual_seed(seed)
        self.model.train()
        decay = [p for n, p in self.model.named_parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.requires_grad and p.ndim < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if self.topic_head is not None:
            self.topic_head.to(model_device(self.model)).train()
            groups.append({"params": list(self.topic_head.parameters()), "weight_decay": weight_decay, "lr": lr * HEAD_LR_SCALE})
        optimizer = torch.optim.AdamW(groups, lr=lr)
        params = [p for g in groups for p in g["params"]]
        steps_per_epoch = math.ceil(len(pairs) / batch_size)
        total = steps_per_epoch * epochs
        schedule = get_linear_schedule_with_warmup(optimizer, int(warmup * total), total)
        report = FitReport(epochs=epochs, examples=len(pairs), seconds=0.0)
        start = time.perf_counter()
        bar = tqdm(total=total, desc="train", unit="step", disable=not progress)
        for epoch in range(epochs):
            order = list(range(len(pairs)))
            rng.shuffle(order)
            # similar lengths in a batch waste less on padding: sort inside chunks of 32 batches
            chunk = batch_size * 32
            order = [i for c in range(0, len(order), chunk) for i in sorted(order[c : c + chunk], key=lambda i: len(prompts[i]))]
            batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
            rng.shuffle(batches)
            total_loss = 0.0
            for batch in batches:
                loss = self._loss([prompts[i] for i in batch], [labels[i] for i in batch], label_smoothing, head_loss, None if weights is None else [weights[i] for i in batch])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                total_loss += loss.item()
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
            report.losses.append(total_loss / len(batches))
        bar.close()
        self.model.eval()
        if self.topic_head is not None:
            self.topic_head.eval()
        report.seconds = time.perf_counter() - start
        self.fit_report_ = report
        return self

    # -- inference ------------------------------------------------------------------------------------
    def predict(
        self,
        docs: Sequence[Doc | str],
        *,
        k: int = 3,
        batch_size: int = 32,
        constrained: bool = True,
        label_vocab: bool = True,
        head_weight: float | None = None,
        progress: bool = False,
    ) -> list[list[TopicScore | None]]:
        """The ``k`` best topics of each document, best first (``None`` marks an answer that is not a node,
        which only happens with ``constrained=False``).

        With a topic head and ``head_weight`` > 0 (default: ``self.head_weight``), the search keeps the
        ``max(k, self.head_beams)`` best answers and returns the ``k`` best by ``log p_LM + head_weight *
        log p_head``, scores renormalised over those answers. ``head_weight=0`` (or ``constrained=False``)
        gives the LM's own beams."""
        weight = self.head_weight if head_weight is None else head_weight
        use_head = self.topic_head is not None and weight > 0 and constrained  # unconstrained answers stay the LM's own
        width = max(k, self.head_beams) if use_head else k
        texts = [d if isinstance(d, str) else d.text for d in docs]
        prompts = self.encode_prompts(texts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[list[TopicScore | None]] = [[] for _ in prompts]
        self.model.eval()
        pooled: list[torch.Tensor] = []
        bar = tqdm(total=len(prompts), desc="predict", unit="doc", disable=not progress)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            pooled.clear()
            hyps = beam_search(
                self.model,
                [prompts[i] for i in idx],
                self.trie,
                k=width,
                constrained=constrained,
                prefix_lm=self.prefix_lm,
                pad_id=self.pad_id,
                label_vocab=label_vocab,
                on_prompt=(lambda hidden, valid: pooled.append(mean_pool(hidden, valid))) if use_head else None,
            )
            if use_head:
                with torch.inference_mode():
                    head_p = torch.softmax(self.topic_head(pooled[0]).float(), dim=-1).tolist()
            for j, (i, hs) in enumerate(zip(idx, hyps)):
                answers = [None if h.node_id is None else self._score(h.node_id, h.logprob) for h in hs]
                if use_head:  # the head's probability of each candidate only, not of every node
                    head_of = {a.path: head_p[j][h.node_id] for a, h in zip(answers, hs) if a is not None}
                    answers = rescore(answers, head_of, weight, k)
                results[i] = answers
            bar.update(len(idx))
        bar.close()
        return results

    @torch.inference_mode()
    def predict_with_generate(self, docs: Sequence[Doc | str], *, k: int = 3, batch_size: int = 32) -> list[list[TopicScore | None]]:
        """The same answers through transformers' own ``generate(num_beams=k, prefix_allowed_tokens_fn=trie...)``
        (full-vocabulary softmax, the prompt run once per beam): the reference path, slower than ``predict``.
        Decoder LMs only: ``generate`` cannot keep a prefix-LM prompt bidirectional."""
        texts = [d if isinstance(d, str) else d.text for d in docs]
        out: list[list[TopicScore | None]] = []
        self.model.eval()
        for start in range(0, len(texts), batch_size):
            ids, valid = left_pad(self.encode_prompts(texts[start : start + batch_size]), self.pad_id, model_device(self.model))
            gen = self.model.generate(
                input_ids=ids,
                attention_mask=valid.long(),
                num_beams=k,
                num_return_sequences=k,
                max_new_tokens=self.trie.max_len,
                prefix_allowed_tokens_fn=self.trie.prefix_allowed_tokens_fn(ids.shape[1]),
                pad_token_id=self.pad_id,
                eos_token_id=self.end_id,
                do_sample=False,
                length_penalty=0.0,
                output_scores=True,
                return_dict_in_generate=True,
            )
            rows = gen.sequences[:, ids.shape[1] :].tolist()
            for i in range(0, len(rows), k):
                answers: list[TopicScore | None] = []
                for row, lp in zip(rows[i : i + k], gen.sequences_scores[i : i + k].tolist()):
                    node = self.trie.lookup(row[: row.index(self.end_id) + 1]) if self.end_id in row else None
                    answers.append(None if node is None else self._score(node, lp))
                out.append(answers)
        return out

    def _score(self, node_id: int, logprob: float) -> TopicScore:
        node = self.taxonomy.nodes[node_id]
        return TopicScore(node.path, node.level, math.exp(logprob))

    def to(self, device: torch.device | str) -> TopicClassifier:
        """Move the model to ``device`` (``"cuda"``...): training and ``predict`` then run there."""
        self.model.to(device)
        if self.topic_head is not None:
            self.topic_head.to(device)
        return self

    def quantize(self) -> TopicClassifier:
        """int8 dynamic quantization of the linear layers, for CPU inference (not for further training;
        ``classifier.lm.quantize_int8``: on the CPU only, ``.to('cpu')`` first)."""
        self.model = quantize_int8(self.model)
        return self


def _views(doc: Doc, views: bool) -> list[str]:
    title, body = doc.title.strip(), doc.body.strip()
    return [doc.text, title, body] if views and title and body else [doc.text]


def _params(base: ClassifierSettings, overrides: dict[str, object]) -> ClassifierSettings:
    """``base`` with ``overrides`` by field name, validated; an unknown name is an error."""
    unknown = set(overrides) - set(ClassifierSettings.model_fields)
    if unknown:
        raise TypeError(f"unknown classifier parameters {sorted(unknown)}; see topicfeed.settings.ClassifierSettings")
    return ClassifierSettings.model_validate({**base.model_dump(), **overrides})


def use_settings(clf: TopicClassifier, settings: ClassifierSettings) -> TopicClassifier:
    """``clf`` with the configured inference: the topic head's re-ranking weight and how many beams it re-ranks."""
    return clf.set_params(head_weight=settings.head_weight, rescore_beams=settings.rescore_beams)


def train_recipe(settings: ClassifierSettings, taxonomy: Taxonomy, docs: Sequence[Doc], *, progress: bool = True) -> tuple[TopicClassifier, float]:
    """The configured recipe, from its base model to a fitted classifier; returns it and the training seconds."""
    clf = TopicClassifier.from_base(settings.base_model, taxonomy, params=settings).to(settings.device)
    start = time.perf_counter()
    clf.fit(docs, progress=progress)
    return clf, time.perf_counter() - start
