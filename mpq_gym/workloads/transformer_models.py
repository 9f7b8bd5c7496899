"""Loading Hugging Face ``transformers`` models offline-safely, and wrapping them as tensor-in/tensor-out
modules the fake-quant core can hook: every ``nn.Linear`` (attention projections included) is a layer.

The encoder wrappers (:class:`MeanPooledEncoder`, :class:`PairEncoder`, :class:`SequenceClassifier` over a
BERT-style model: ``.embeddings`` and an ``.encoder.layer`` list) declare their chain of stages
(``mpq_stages()``, used by :class:`mpq_gym.quant.stages.StageChain`, which verifies it against the forward):
the embeddings (with padding trimmed), per encoder layer its self-attention (query, key, value), attention
output, intermediate and output, then the pooling or classification head. Stages pass tuples of tensors
(hidden states, the token mask, and what a later part of the layer still needs) and call the wrapped
model's own submodules, so the quantizer's hooks on them act as in the forward."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

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


def _mean_pool(hidden: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Hidden states [batch, length, hidden] averaged over the real tokens (mask [batch, length])."""
    mask = token_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)


# ------------------------------------------------------------------------------ stages of BERT-style encoders
def _bert_base(model: nn.Module) -> nn.Module:
    """The BERT-style encoder under ``model`` (its ``base_model``), or ValueError saying why there is none."""
    base = getattr(model, "base_model", model)
    config = getattr(base, "config", None)
    if not (isinstance(getattr(base, "embeddings", None), nn.Module)
            and isinstance(getattr(getattr(base, "encoder", None), "layer", None), nn.ModuleList)):
        raise ValueError(f"{type(base).__name__} is no BERT-style encoder (.embeddings and an .encoder.layer list)")
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        raise ValueError(f"{type(base).__name__} is configured as a decoder (causal or cross-attention masks)")
    return base


def _mask_function(base: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    """(hidden states, token mask [batch, length]) -> the attention mask the encoder layers get, built as the
    model's forward builds it (only the hidden states' shape, dtype and device are read)."""
    if hasattr(base, "_create_attention_masks"):  # transformers >= 5
        return lambda hidden, mask: base._create_attention_masks(
            attention_mask=mask, encoder_attention_mask=None, embedding_output=hidden,
            encoder_hidden_states=None, cache=None)[0]
    return lambda hidden, mask: base.get_extended_attention_mask(mask, mask.shape)


class _Embed(nn.Module):
    """tokens -> (embeddings, token mask), padding trimmed (pairs flattened into one batch first)."""

    def __init__(self, embeddings: nn.Module, pairs: bool) -> None:
        super().__init__()
        self.embeddings, self.pairs = embeddings, pairs

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = trim_padding(tokens.flatten(0, 1) if self.pairs else tokens)
        types = tokens[:, TYPES] if tokens.shape[1] > TYPES else None
        return self.embeddings(input_ids=tokens[:, IDS], token_type_ids=types), tokens[:, MASK]


class _SelfAttention(nn.Module):
    """(hidden, mask) -> (hidden, attention context, mask): the query, key and value projections."""

    def __init__(self, attention: nn.Module, mask_function: Callable) -> None:
        super().__init__()
        self.attention, self.mask_function = attention, mask_function

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return hidden, self.attention(hidden, attention_mask=self.mask_function(hidden, mask))[0], mask


class _AttentionOutput(nn.Module):
    """(hidden, context, mask) -> (attention output, mask): projection, residual and norm."""

    def __init__(self, output: nn.Module) -> None:
        super().__init__()
        self.output = output

    def forward(self, hidden: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.output(context, hidden), mask


class _Intermediate(nn.Module):
    """(attention output, mask) -> (attention output, intermediate, mask)."""

    def __init__(self, intermediate: nn.Module) -> None:
        super().__init__()
        self.intermediate = intermediate

    def forward(self, attended: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return attended, self.intermediate(attended), mask


class _Output(nn.Module):
    """(attention output, intermediate, mask) -> (the layer's output, mask)."""

    def __init__(self, output: nn.Module) -> None:
        super().__init__()
        self.output = output

    def forward(self, attended: torch.Tensor, inner: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.output(inner, attended), mask


class _Layer(nn.Module):
    """(hidden, mask) -> (the layer's output, mask): a whole encoder layer of another layout."""

    def __init__(self, layer: nn.Module, mask_function: Callable) -> None:
        super().__init__()
        self.layer, self.mask_function = layer, mask_function

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.layer(hidden, self.mask_function(hidden, mask))
        return (out[0] if isinstance(out, tuple) else out), mask


class _MeanPool(nn.Module):
    """(hidden, mask) -> sentence embeddings (pairs unflattened again: [batch, 2, hidden])."""

    def __init__(self, pairs: bool) -> None:
        super().__init__()
        self.pairs = pairs

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = _mean_pool(hidden, mask)
        return pooled.unflatten(0, (pooled.shape[0] // 2, 2)) if self.pairs else pooled


class _PooledHead(nn.Module):
    """(hidden, mask) -> logits through the encoder's pooler (first token), dropout and classifier."""

    def __init__(self, pooler: nn.Module, dropout: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.pooler, self.dropout, self.classifier = pooler, dropout, classifier

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pooler(hidden)))


class _SequenceHead(nn.Module):
    """(hidden, mask) -> logits through a head that reads the hidden states (RoBERTa style)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(hidden)


def _splits_into_parts(layer: nn.Module) -> bool:
    """Whether a layer is BERT's attention (self + output) -> intermediate -> output, unchunked."""
    attention = getattr(layer, "attention", None)
    return (all(isinstance(getattr(attention, a, None), nn.Module) for a in ("self", "output"))
            and not getattr(attention, "is_cross_attention", False)
            and all(isinstance(getattr(layer, a, None), nn.Module) for a in ("intermediate", "output"))
            and not getattr(layer, "chunk_size_feed_forward", 0))


def bert_stages(root: nn.Module, base: nn.Module, head: nn.Module, head_name: nn.Module | str,
                pairs: bool = False) -> list[tuple[str, nn.Module]]:
    """The stages of ``root`` (a wrapper around the BERT-style ``base``): embeddings, the parts of every
    encoder layer, then ``head``, named ``head_name`` or after that module of ``root``. Names are ``root``'s
    qualified module names."""
    names = {id(m): n for n, m in root.named_modules()}
    mask_function = _mask_function(base)
    stages = [(names[id(base.embeddings)], _Embed(base.embeddings, pairs))]
    for layer in base.encoder.layer:
        name = names[id(layer)]
        if _splits_into_parts(layer):
            stages += [(f"{name}.attention.self", _SelfAttention(layer.attention.self, mask_function)),
                       (f"{name}.attention.output", _AttentionOutput(layer.attention.output)),
                       (f"{name}.intermediate", _Intermediate(layer.intermediate)),
                       (f"{name}.output", _Output(layer.output))]
        else:
            stages.append((name, _Layer(layer, mask_function)))
    return stages + [(head_name if isinstance(head_name, str) else names[id(head_name)], head)]


class MeanPooledEncoder(nn.Module):
    """Sentence embeddings: a transformer encoder's last hidden states averaged over real tokens."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, 2 or 3, length] -> embeddings [batch, hidden]."""
        tokens = trim_padding(tokens)
        return _mean_pool(_encode(self.encoder, tokens).last_hidden_state, tokens[:, MASK])

    def mpq_stages(self, root: nn.Module | None = None, pairs: bool = False) -> list[tuple[str, nn.Module]]:
        """Stages for :class:`~mpq_gym.quant.stages.StageChain` (see the module docstring); ValueError if
        the encoder is not BERT-style."""
        return bert_stages(root or self, _bert_base(self.encoder), _MeanPool(pairs), "pooling", pairs)


class PairEncoder(nn.Module):
    """Both sentences of each pair through one encoder: [batch, 2, rows, length] -> [batch, 2, hidden]."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.sentence = MeanPooledEncoder(encoder)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.sentence(pairs.flatten(0, 1)).unflatten(0, (pairs.shape[0], 2))

    def mpq_stages(self) -> list[tuple[str, nn.Module]]:
        """:meth:`MeanPooledEncoder.mpq_stages` on both sentences of each pair as one batch."""
        return self.sentence.mpq_stages(root=self, pairs=True)


class SequenceClassifier(nn.Module):
    """A ``...ForSequenceClassification`` model as tokens [batch, rows, length] -> logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return _encode(self.model, trim_padding(tokens)).logits

    def mpq_stages(self) -> list[tuple[str, nn.Module]]:
        """Stages for :class:`~mpq_gym.quant.stages.StageChain`: a BERT-style encoder's (see the module
        docstring), then the head: pooler -> dropout -> classifier (BERT) or the classifier on the hidden
        states (RoBERTa style: no pooler); ValueError for other models."""
        base = _bert_base(self.model)
        classifier = getattr(self.model, "classifier", None)
        if not isinstance(classifier, nn.Module):
            raise ValueError(f"{type(self.model).__name__} has no .classifier head")
        pooler = getattr(base, "pooler", None)
        if isinstance(pooler, nn.Module):
            dropout = getattr(self.model, "dropout", None)
            head = _PooledHead(pooler, dropout if isinstance(dropout, nn.Module) else nn.Identity(), classifier)
        else:
            head = _SequenceHead(classifier)
        return bert_stages(self, base, head, classifier)


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
