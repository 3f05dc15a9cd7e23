"""A token trie of every taxonomy path, built once per (taxonomy, tokenizer).

Each node of the taxonomy, at any depth, is spelled as ``" " + "a > b > c"`` in the tokenizer's tokens
and ends with the end-of-label token. The trie knows, for every prefix of generated tokens, which next
tokens keep the answer inside the taxonomy; a full sequence names exactly one node. Decoding therefore
never has to turn tokens back into text: the answer is the node, spelled as the taxonomy spells it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from topicfeed.taxonomy import Taxonomy, split_path


def end_token_id(tokenizer) -> int:
    """The token that ends a label: EOS for GPT-style tokenizers, [SEP] for BERT-style ones."""
    for name in ("eos_token_id", "sep_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    raise ValueError("the tokenizer has neither an EOS nor a SEP token to end a label with")


def label_text(path: str) -> str:
    return " " + path


class Verbalizer:
    """Spells taxonomy names in words the tokenizer knows: ``newsscienceandtechnology`` becomes
    ``news science and technology``, ``football_nfl`` becomes ``football nfl``. A warm-started LM's head
    is tied to its word embeddings, so meaningful label words start with a useful prior. Names that are
    already words (IAB's) stay as they are. The trie maps the spelled tokens back to the node."""

    def __init__(self, tokenizer) -> None:
        words = set()
        for token in tokenizer.get_vocab():
            if token.startswith("##"):
                continue
            word = token.lstrip("Ġ▁").lower()
            if word.isalpha() and len(word) >= 2:
                words.add(word)
        self.words = words

    def known(self, low: str) -> bool:
        return low in self.words or (low.endswith("s") and low[:-1] in self.words) or (low.endswith("es") and low[:-2] in self.words)

    def segment(self, word: str) -> list[str]:
        """The cheapest split into known words (short pieces cost more); the word itself when it is
        known or no split reads as words (average piece under 4 letters)."""
        low = word.lower()
        if not low.isalpha() or len(low) < 5 or self.known(low):
            return [word]
        n = len(low)
        best: list[tuple[float, list[str]] | None] = [None] * (n + 1)
        best[0] = (0.0, [])
        for end in range(2, n + 1):
            for start in range(max(0, end - 24), end - 1):
                prev = best[start]
                piece = low[start:end]
                if prev is not None and self.known(piece):
                    cost = prev[0] + 1 + (2 if len(piece) <= 3 else 0)
                    if best[end] is None or cost < best[end][0]:
                        best[end] = (cost, [*prev[1], piece])
        found = best[n]
        if found is None or n / len(found[1]) < 4:
            return [word]
        return found[1]

    def name(self, name: str) -> str:
        return re.sub(r"[A-Za-z]+", lambda m: " ".join(self.segment(m.group())), name.replace("_", " "))

    def path(self, path: str) -> str:
        return " > ".join(self.name(part) for part in split_path(path))


@dataclass
class TopicTrie:
    """Token sequences of all nodes, and the allowed next tokens after every prefix."""

    sequences: dict[int, tuple[int, ...]]  # node id -> its label tokens, ending with ``end_id``
    end_id: int
    # state 0 is the empty prefix; every other state is one prefix of one or more sequences
    _state: dict[tuple[int, ...], int] = field(default_factory=dict, repr=False)
    _next: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)
    _allowed: list[list[int]] = field(default_factory=list, repr=False)
    _terminal: dict[int, int] = field(default_factory=dict, repr=False)  # final state -> node id
    _allowed_t: list[torch.Tensor] = field(default_factory=list, repr=False)
    _allowed_local: list[torch.Tensor] = field(default_factory=list, repr=False)
    vocab: torch.Tensor = field(init=False, repr=False)  # every token that appears in some label, sorted
    _mask: dict[torch.device, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._state = {(): 0}
        allowed: list[set[int]] = [set()]
        by_seq: dict[tuple[int, ...], int] = {}
        for node_id, seq in self.sequences.items():
            if not seq or seq[-1] != self.end_id or self.end_id in seq[:-1]:
                raise ValueError(f"label tokens of node {node_id} must end with the end token {self.end_id} exactly once")
            if seq in by_seq:
                raise ValueError(f"nodes {by_seq[seq]} and {node_id} have the same label tokens {list(seq)}: the tokenizer cannot tell them apart")
            by_seq[seq] = node_id
            state = 0
            for i, tok in enumerate(seq):
                allowed[state].add(tok)
                prefix = seq[: i + 1]
                nxt = self._state.get(prefix)
                if nxt is None:
                    nxt = self._state[prefix] = len(allowed)
                    allowed.append(set())
                self._next[(state, tok)] = nxt
                state = nxt
            self._terminal[state] = node_id
        self._allowed = [sorted(a) for a in allowed]
        self._allowed_t = [torch.tensor(a, dtype=torch.long) for a in self._allowed]
        vocab = sorted({t for seq in self.sequences.values() for t in seq})
        self.vocab = torch.tensor(vocab, dtype=torch.long)
        local = {t: i for i, t in enumerate(vocab)}
        self._allowed_local = [torch.tensor([local[t] for t in a], dtype=torch.long) for a in self._allowed]

    @classmethod
    def build(cls, taxonomy: Taxonomy, tokenizer, *, verbalize: bool = False) -> TopicTrie:
        end = end_token_id(tokenizer)
        spell = Verbalizer(tokenizer).path if verbalize else (lambda p: p)
        paths = [label_text(spell(n.path)) for n in taxonomy]
        encoded = tokenizer(paths, add_special_tokens=False)["input_ids"]
        return cls({n.id: (*ids, end) for n, ids in zip(taxonomy, encoded)}, end)

    # -- lookups -------------------------------------------------------------------------------------
    @property
    def n_states(self) -> int:
        return len(self._allowed)

    @property
    def max_len(self) -> int:
        return max(len(s) for s in self.sequences.values())

    def step(self, state: int, token: int) -> int:
        """The state after ``token``; -1 when ``token`` leaves the taxonomy."""
        if state < 0:
            return -1
        return self._next.get((state, token), -1)

    def allowed(self, state: int) -> list[int]:
        return self._allowed[state] if state >= 0 else []

    def allowed_tensor(self, state: int) -> torch.Tensor:
        """Allowed next tokens as a tensor of token ids (``local_mask`` covers the label vocabulary)."""
        return self._allowed_t[state]

    def local_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(states + 1, label vocab) additive mask: 0 where a token is allowed after the state, -inf
        elsewhere; the last row (index -1) is the state of a label that left the taxonomy. Built
        once, and copied once to each device asked for."""
        if self._mask is None:
            mask = torch.full((self.n_states + 1, len(self.vocab)), float("-inf"))
            for state, allowed in enumerate(self._allowed_local):
                mask[state, allowed] = 0.0
            self._mask = {mask.device: mask}
        device = torch.device(device) if device is not None else torch.device("cpu")
        if device not in self._mask:
            self._mask[device] = next(iter(self._mask.values())).to(device)
        return self._mask[device]

    def node_of(self, state: int) -> int | None:
        """The node a finished sequence names, or None when the state is not the end of a label."""
        return self._terminal.get(state)

    def walk(self, tokens: Sequence[int]) -> int:
        state = 0
        for tok in tokens:
            state = self.step(state, int(tok))
        return state

    def lookup(self, tokens: Sequence[int]) -> int | None:
        """The node that ``tokens`` (ending with the end token) spells, or None."""
        state = self.walk(tokens)
        return self.node_of(state) if state >= 0 else None

    def prefix_allowed_tokens_fn(self, prompt_len: int) -> Callable[[int, torch.Tensor], list[int]]:
        """The hook for ``model.generate(prefix_allowed_tokens_fn=...)`` with left-padded prompts of ``prompt_len``."""

        def fn(batch_id: int, input_ids: torch.Tensor) -> list[int]:
            state = self.walk(input_ids[prompt_len:].tolist())
            # a finished label (or one past its end, padded by generate) may only be padded further
            return (self._allowed[state] if state >= 0 else None) or [self.end_id]

        return fn

    def to_json(self) -> dict:
        return {"end_id": self.end_id, "sequences": {str(k): list(v) for k, v in self.sequences.items()}}
