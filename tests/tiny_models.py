"""Tiny, randomly initialised Hugging Face models saved on disk (BERT, GPT-2, Llama): the classifier
must work through the same code for any of them. Built locally in a second; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from classifier.lm import minilm_path

CORPUS = [
    "Sports > Water Sports > Scuba Diving",
    "News > Politics; Travel > Europe; Food & Drink > Desserts and Baking",
    "The quick brown fox jumps over the lazy dog. Markets rallied on Monday as rates fell.",
    "football_nfl baseball_mlb newsus newspolitics weathertopstories lifestyleroyals",
]


def bpe_tokenizer(texts: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<bos>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def save_tiny(kind: str, directory: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "bert":  # an encoder checkpoint, as all-MiniLM-L6-v2 is; the classifier loads it as a causal LM
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=256)
        model = BertForMaskedLM(config)
    else:
        tokenizer = bpe_tokenizer(CORPUS)
        if kind == "gpt2":
            config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256, bos_token_id=1, eos_token_id=2)
            model = GPT2LMHeadModel(config)
        elif kind == "llama":
            config = LlamaConfig(
                vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                bos_token_id=1, eos_token_id=2, pad_token_id=0,
            )
            model = LlamaForCausalLM(config)
        else:
            raise ValueError(kind)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
