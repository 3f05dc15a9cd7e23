"""Candidate beam search: beam search over a causal LM where every step may only pick tokens that keep
the answer inside the taxonomy trie.

It works on any Hugging Face causal LM through two parts of it: the body (``model.base_model``, which
takes ``input_ids``, a 4-D attention mask, ``position_ids`` and a KV cache) and the LM head. The prompt
is run once per document, and its KV cache is then shared by the ``k`` beams (``model.generate`` with
``num_beams=k`` runs the prompt ``k`` times). Scores are path probabilities: the product of the token
probabilities over the whole label, so deeper and shallower answers compete on the same scale.

``prefix_lm`` lets the prompt tokens see each other both ways (the way a BERT-style encoder was
pre-trained) while label tokens stay causal; the model must have been trained the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from classifier.trie import TopicTrie


@dataclass(frozen=True)
class Hypothesis:
    node_id: int | None  # None: the tokens do not spell a taxonomy node (only without constraints)
    logprob: float


def lm_parts(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(body, head) of a causal LM: the transformer that gives hidden states, and what turns them into logits."""
    body = model.base_model
    head = getattr(model, "cls", None)  # BERT-style LM heads have a transform before the decoder
    if head is None:
        head = model.get_output_embeddings()
    if body is model or head is None:
        raise ValueError(f"{type(model).__name__}: cannot find the transformer body and the LM head")
    return body, head


def linear_rows(weight: torch.Tensor, bias: torch.Tensor | None, ids: torch.Tensor) -> nn.Linear:
    """A frozen ``Linear`` with only the output rows ``ids`` of ``weight`` and ``bias`` (an LM head cut to a vocabulary)."""
    cut = nn.Linear(weight.shape[1], len(ids), bias=bias is not None, dtype=weight.dtype, device="meta")  # no initialization to throw away
    cut.weight = nn.Parameter(weight[ids].detach(), requires_grad=False)
    if bias is not None:
        cut.bias = nn.Parameter(bias[ids].detach(), requires_grad=False)
    return cut


def restricted_head(head: nn.Module, ids: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The LM head computing only the logits of ``ids`` (the label vocabulary): same values, a fraction of the work."""
    if isinstance(head, nn.Linear):
        return linear_rows(head.weight, head.bias, ids)
    predictions = getattr(head, "predictions", None)  # BERT-style: transform, then a decoder tied to the embeddings
    if predictions is not None and isinstance(getattr(predictions, "decoder", None), nn.Linear):
        decoder = predictions.decoder
        cut = linear_rows(decoder.weight, decoder.bias if decoder.bias is not None else getattr(predictions, "bias", None), ids)
        return lambda h: cut(predictions.transform(h))
    return lambda h: head(h)[..., ids]


def position_ids(valid: torch.Tensor) -> torch.Tensor:
    """Positions in left-padded rows: 0 at each row's first real token (pads 0 too)."""
    return (valid.long().cumsum(1) - 1).clamp(min=0)


def attention_mask_4d(allowed: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """A (batch, 1, q, kv) mask in the form the model's attention implementation takes."""
    mask = allowed[:, None]
    if getattr(model.config, "_attn_implementation", "eager") == "eager":
        dtype = next(model.parameters()).dtype
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    return mask


def prompt_mask(valid: torch.Tensor, prefix_lm: bool) -> torch.Tensor:
    """Who may attend to whom inside left- or right-padded prompts (batch, L, L); pads attend to themselves."""
    length, device = valid.shape[1], valid.device
    allowed = valid[:, None, :].expand(-1, length, -1)
    if not prefix_lm:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=device).tril()
    return allowed | torch.eye(length, dtype=torch.bool, device=device)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (length - len(p)) + list(p) for p in prompts], dtype=torch.long, device=device)
    valid = torch.tensor([[False] * (length - len(p)) + [True] * len(p) for p in prompts], dtype=torch.bool, device=device)
    return ids, valid


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def beam_search(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    trie: TopicTrie,
    *,
    k: int = 3,
    constrained: bool = True,
    prefix_lm: bool = False,
    pad_id: int = 0,
    max_new_tokens: int | None = None,
    label_vocab: bool = True,
    on_prompt: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> list[list[Hypothesis]]:
    """The ``k`` best labels of each prompt, best first.

    With ``constrained`` every hypothesis is a distinct taxonomy node. Without it the same search runs
    over the whole vocabulary (to measure what the constraint costs and how often a free model leaves
    the taxonomy); a hypothesis that is not a node, or that did not end within ``max_new_tokens``,
    comes back with ``node_id=None``.

    The beams of a document share one cache row: the prompt once, then the k tokens of every step side
    by side, with a 4-D mask that lets each beam see the prompt and its own ancestors only. Nothing is
    copied when beams swap parents, and documents whose answers are final leave the batch.

    With ``label_vocab`` (the default) the softmax runs over the tokens that occur in some label rather
    than the whole vocabulary, constrained or not: the LM head then costs a few hundred rows instead of
    tens of thousands. Without constraints the search may still join those tokens into a non-node.

    ``on_prompt(hidden, valid)``, when given, is called once with the prompt pass's last hidden states
    (batch, L, d) and which of their positions are real tokens (left padding), e.g. to pool them.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    body, head = lm_parts(model)
    dev = model_device(model)
    if label_vocab:
        head = restricted_head(head, trie.vocab.to(dev))
        token_of = trie.vocab.tolist()
    max_new = max_new_tokens or trie.max_len
    n = len(prompts)
    ids, valid = left_pad(prompts, pad_id, dev)
    positions = position_ids(valid)
    out = body(
        input_ids=ids,
        attention_mask=attention_mask_4d(prompt_mask(valid, prefix_lm), model),
        position_ids=positions,
        use_cache=True,
    )
    if on_prompt is not None:
        on_prompt(out.last_hidden_state, valid)
    cache = out.cache
    logits = head(out.last_hidden_state[:, -1:]).float().expand(-1, k, -1)  # every beam starts from the prompt
    next_pos = positions[:, -1] + 1
    kv_valid = valid  # (m, L): which prompt columns of each cache row are real tokens
    ancestry = torch.zeros((n, k, 0), dtype=torch.bool, device=dev)  # (m, k, label columns) each beam may see
    scores = torch.full((n, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # the k beams are one empty label: let only the first expand
    states = [0] * (n * k)
    active = list(range(n))  # the document of each cache row
    finished: list[list[Hypothesis]] = [[] for _ in range(n)]
    vocab = logits.shape[-1]
    end = trie.end_id
    neg_inf = float("-inf")
    eye = torch.eye(k, dtype=torch.bool, device=dev)
    local_mask = trie.local_mask(dev) if constrained and label_vocab else None

    for step in range(max_new):
        m = len(active)
        logp = torch.log_softmax(logits.reshape(m * k, vocab), dim=-1)
        if constrained and label_vocab:
            logp = logp + local_mask[torch.tensor(states, device=dev)]  # state -1 picks the all -inf row
        elif constrained:
            rows, cols = [], []
            for r, s in enumerate(states):
                if s >= 0:
                    allowed = trie.allowed_tensor(s)
                    rows.append(torch.full((len(allowed),), r, dtype=torch.long))
                    cols.append(allowed)
            mask = torch.full_like(logp, neg_inf)
            if rows:
                mask[torch.cat(rows).to(dev), torch.cat(cols).to(dev)] = 0.0
            logp = logp + mask
        cand = (scores.view(m * k, 1) + logp).view(m, k * vocab)
        top_s, top_i = cand.topk(2 * k, dim=1)
        top_s_l, top_i_l = top_s.tolist(), top_i.tolist()

        # the next step's beams, built as lists and sent to the device once
        score_rows = [[neg_inf] * k for _ in range(m)]
        src_rows = [list(range(k)) for _ in range(m)]
        token_rows = [[end] * k for _ in range(m)]
        new_states = [-1] * (m * k)
        keep = []
        for b in range(m):
            live = 0
            doc = finished[active[b]]
            row_s, row_src, row_tok = score_rows[b], src_rows[b], token_rows[b]
            for s, flat in zip(top_s_l[b], top_i_l[b]):
                if s == neg_inf:
                    break
                beam, tok = divmod(flat, vocab)
                if label_vocab:
                    tok = token_of[tok]
                state = states[b * k + beam]
                if tok == end:
                    after = trie.step(state, tok)
                    doc.append(Hypothesis(trie.node_of(after) if after >= 0 else None, s))
                elif live < k:
                    row_src[live] = beam
                    row_tok[live] = tok
                    new_states[b * k + live] = trie.step(state, tok)
                    row_s[live] = s
                    live += 1
            best_live = row_s[0]  # candidates come best first
            final = live == 0 or (len(doc) >= k and sorted((h.logprob for h in doc), reverse=True)[k - 1] >= best_live)
            if not final:
                keep.append(b)
        if not keep or step == max_new - 1:
            break
        src = torch.tensor(src_rows, device=dev)
        tokens = torch.tensor(token_rows, dtype=torch.long, device=dev)
        new_scores = torch.tensor(score_rows, dtype=scores.dtype, device=dev)
        ancestry = torch.cat([ancestry.gather(1, src[:, :, None].expand(-1, -1, ancestry.shape[2])), eye.expand(m, k, k)], dim=2)
        if len(keep) < m:
            keep_t = torch.tensor(keep, dtype=torch.long, device=dev)
            cache.batch_select_indices(keep_t)
            kv_valid, ancestry, next_pos, tokens, new_scores = kv_valid[keep_t], ancestry[keep_t], next_pos[keep_t], tokens[keep_t], new_scores[keep_t]
            new_states = [new_states[b * k + j] for b in keep for j in range(k)]
            active = [active[b] for b in keep]
            m = len(keep)
        scores, states = new_scores, new_states
        allowed = torch.cat([kv_valid[:, None, :].expand(m, k, -1), ancestry], dim=2)
        out = body(
            input_ids=tokens,
            attention_mask=attention_mask_4d(allowed, model),
            position_ids=(next_pos + step)[:, None].expand(m, k),
            cache=cache,
            use_cache=True,
        )
        cache = out.cache
        logits = head(out.last_hidden_state).float()

    results = []
    for hyps in finished:
        hyps = sorted(hyps, key=lambda h: h.logprob, reverse=True)
        unique: list[Hypothesis] = []
        seen: set[int] = set()
        for h in hyps:
            if h.node_id is not None:
                if h.node_id in seen:
                    continue
                seen.add(h.node_id)
            unique.append(h)
        unique = unique[:k]
        while len(unique) < k and not constrained:
            unique.append(Hypothesis(None, neg_inf))  # ran out of steps: not a valid answer
        results.append(unique)
    return results
