"""Loading Hugging Face ``transformers`` models offline-safely, and wrapping them as tensor-in/tensor-out
modules the fake-quant core can hook: every ``nn.Linear`` (attention projections included) is a layer."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mpq_gym.errors import MissingWeightsError
from mpq_gym.workloads.weights import offline

#: Token tensors are stacked as [batch, ROWS, length]: input ids, attention mask, token type ids.
IDS, MASK, TYPES = 0, 1, 2


def hf_fix(source: str) -> str:
    """How to supply an absent Hugging Face checkpoint."""
    return (f"Download it on a machine with internet (`huggingface-cli download {source}`, into the HF cache "
            f"$HF_HOME, default ~/.cache/huggingface) and copy the cache here, or save it with "
            f"`model.save_pretrained(DIR)` + `tokenizer.save_pretrained(DIR)` and pass that directory instead.")


def from_pretrained(factory: Any, source: str | os.PathLike, what: str, part: str = "checkpoint",
                    **kwargs: Any) -> Any:
    """``factory.from_pretrained(source)`` (a model, tokenizer or config class) from a local directory or the
    HF cache, downloading only when online; any failure becomes a :class:`MissingWeightsError` with the fix."""
    source = str(source)
    path = Path(source).expanduser()
    local = path.is_dir()
    try:
        return factory.from_pretrained(path if local else source, local_files_only=local or offline(), **kwargs)
    except (OSError, ValueError) as exc:
        raise MissingWeightsError(f"{what}: cannot load the {part} of {source!r} ({type(exc).__name__}: "
                                  f"{str(exc)[:300]}). {hf_fix(source)}") from exc


def load_pretrained(auto_class: Any, source: str | os.PathLike, what: str, **kwargs: Any) -> nn.Module:
    """:func:`from_pretrained` for a model; a checkpoint that leaves any weight to random initialisation
    is refused."""
    from transformers.utils import logging as hf_logging
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # missing weights are checked below; unused heads need no report
    try:
        model, info = from_pretrained(auto_class, source, what, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = list(info.get("missing_keys", []))
    if missing:
        raise MissingWeightsError(
            f"{what}: the checkpoint {str(source)!r} has no weights for {missing[:4]}"
            f"{' ...' if len(missing) > 4 else ''}; they would be random. Give a checkpoint that includes this "
            f"task's head (e.g. one fine-tuned for sequence classification), or choose the task its head was "
            f"trained for.")
    return model.eval()


def load_tokenizer(source: str | os.PathLike, what: str) -> Any:
    """The checkpoint's tokenizer, from a local directory or the HF cache."""
    from transformers import AutoTokenizer
    return from_pretrained(AutoTokenizer, source, what, part="tokenizer")


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace GPT-2-style ``Conv1D`` (weight [in, out]) by equivalent ``nn.Linear``; returns how many."""
    from transformers.pytorch_utils import Conv1D
    replaced = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, Conv1D):
            linear = nn.Linear(module.weight.shape[0], module.weight.shape[1])
            with torch.no_grad():
                linear.weight.copy_(module.weight.t())
                linear.bias.copy_(module.bias)
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, linear)
            replaced += 1
    return replaced


def untie_linear_weights(model: nn.Module) -> None:
    """Give every Linear its own weight tensor: quantizing a tied LM head must not quantize the embedding."""
    owners: dict[int, int] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            owners[id(param)] = owners.get(id(param), 0) + 1
    for module in model.modules():
        if isinstance(module, nn.Linear) and owners[id(module.weight)] > 1:
            module.weight = nn.Parameter(module.weight.detach().clone())


def trim_padding(tokens: torch.Tensor) -> torch.Tensor:
    """Drop the trailing positions that are padding in every row (right padding): exact, and a batch of
    short texts no longer pays for the longest text of the dataset."""
    length = int(tokens[..., MASK, :].sum(dim=-1).max().clamp_min(1))
    return tokens[..., :length]


def _encode(model: nn.Module, tokens: torch.Tensor) -> Any:
    kwargs = {"input_ids": tokens[:, IDS], "attention_mask": tokens[:, MASK]}
    if tokens.shape[1] > TYPES:
        kwargs["token_type_ids"] = tokens[:, TYPES]
    return model(**kwargs)


class MeanPooledEncoder(nn.Module):
    """Sentence embeddings: a transformer encoder's last hidden states averaged over real tokens."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, 2 or 3, length] -> embeddings [batch, hidden]."""
        tokens = trim_padding(tokens)
        hidden = _encode(self.encoder, tokens).last_hidden_state
        mask = tokens[:, MASK].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)


class PairEncoder(nn.Module):
    """Both sentences of each pair through one encoder: [batch, 2, rows, length] -> [batch, 2, hidden]."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.sentence = MeanPooledEncoder(encoder)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.sentence(pairs.flatten(0, 1)).unflatten(0, (pairs.shape[0], 2))


class SequenceClassifier(nn.Module):
    """A ``...ForSequenceClassification`` model as tokens [batch, rows, length] -> logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return _encode(self.model, trim_padding(tokens)).logits


class TokenNLL(nn.Module):
    """A causal LM as tokens [batch, rows, length] -> negative log-likelihood of each next token
    [batch, length - 1] (0 at padding), so a split's outputs stay small whatever the vocabulary."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        full = tokens.shape[-1]
        tokens = trim_padding(tokens)
        logits = self.model(input_ids=tokens[:, IDS], attention_mask=tokens[:, MASK]).logits[:, :-1].float()
        target = tokens[:, IDS, 1:]
        nll = nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        nll = nll * tokens[:, MASK, 1:].to(nll.dtype)
        return nn.functional.pad(nll, (0, full - tokens.shape[-1]))  # same width for every batch
