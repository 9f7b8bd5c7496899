"""Quantizable layers of a network: discovery in execution order, per-layer statistics, BN folding.

Everything is measured with forward hooks on one example input, so any ``nn.Module`` works
(no tracing): timm's "same"-padded convs, torchvision models and user models alike.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import torch
from torch import nn

QUANTIZABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class LayerInfo:
    """Static facts about one quantizable layer, measured once (per single input sample)."""

    index: int
    name: str
    kind: str
    c_in: int
    c_out: int
    kernel: int
    stride: int
    groups: int
    depthwise: bool
    params: int
    weight_params: int
    macs: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    @property
    def feature_size(self) -> int:
        """Spatial size of the input feature map (1 for Linear)."""
        return self.input_shape[-1] if self.kind == "Conv2d" else 1

    def to_json(self) -> dict:
        """JSON-able dict, with ``feature_size`` included."""
        return {**asdict(self), "feature_size": self.feature_size}


def iter_quantizable(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of every Conv2d / Linear, in definition order."""
    for name, module in model.named_modules():
        if isinstance(module, QUANTIZABLE_TYPES):
            yield name, module


def _layer_info(index: int, name: str, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LayerInfo:
    params = sum(p.numel() for p in module.parameters(recurse=False))
    weight_params = module.weight.numel()
    per_sample_out = y[0].numel()
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1]
        macs = per_sample_out * (module.in_channels // module.groups) * k
        return LayerInfo(index, name, "Conv2d", module.in_channels, module.out_channels,
                         module.kernel_size[0], module.stride[0], module.groups,
                         module.groups > 1 and module.groups == module.in_channels, params, weight_params, macs,
                         tuple(x.shape[1:]), tuple(y.shape[1:]))
    assert isinstance(module, nn.Linear)
    macs = per_sample_out * module.in_features
    return LayerInfo(index, name, "Linear", module.in_features, module.out_features, 1, 1, 1, False,
                     params, weight_params, macs, tuple(x.shape[1:]), tuple(y.shape[1:]))


@torch.no_grad()
def discover_layers(model: nn.Module, example_input: torch.Tensor) -> list[LayerInfo]:
    """Quantizable layers in *execution* order with params, MACs and shapes (``example_input`` has batch 1).

    A layer that never runs on the example input is not quantizable here and is left out.
    """
    seen: dict[str, LayerInfo] = {}
    handles = []
    for name, module in iter_quantizable(model):
        def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor, name: str = name) -> None:
            if name not in seen:
                seen[name] = _layer_info(len(seen), name, mod, inputs[0], output)
        handles.append(module.register_forward_hook(hook))
    try:
        model.eval()(example_input)
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise ValueError("the model has no Conv2d or Linear layer that runs on the example input: nothing to quantize")
    return list(seen.values())


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example_input: torch.Tensor, rtol: float = 1e-3) -> int:
    """Fold every BatchNorm that directly consumes a conv's output into that conv, in place.

    Pairs are found by tensor identity in one hooked forward pass. A plain ``BatchNorm2d`` becomes
    ``Identity``; a subclass that also applies an activation (timm's ``BatchNormAct2d``) keeps its
    activation with an identity normalisation. The folded model's output is checked against the
    original; a mismatch raises instead of returning a silently different network.
    Returns the number of folded pairs.
    """
    model.eval()
    reference = model(example_input)
    conv_of_output: dict[int, str] = {}
    pairs: dict[str, str] = {}
    handles = []

    def record_conv(name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            conv_of_output[id(output)] = name
        return hook

    def record_bn(name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple) -> None:
            pairs.setdefault(name, conv_of_output.get(id(inputs[0]), ""))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(record_conv(name)))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            handles.append(module.register_forward_pre_hook(record_bn(name)))
    try:
        model(example_input)
    finally:
        for h in handles:
            h.remove()
    folded = 0
    for bn_name, conv_name in pairs.items():
        if not conv_name:
            continue
        bn = model.get_submodule(bn_name)
        conv = model.get_submodule(conv_name)
        if bn.running_mean is None or bn.running_var is None:
            continue
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.affine else torch.ones_like(std)
        beta = bn.bias if bn.affine else torch.zeros_like(std)
        factor = gamma / std
        conv.weight.copy_(conv.weight * factor.reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(std)
        new_bias = (bias - bn.running_mean) * factor + beta
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias)
        else:
            conv.bias.copy_(new_bias)
        if type(bn) is nn.BatchNorm2d:
            parent, attr = _parent(model, bn_name)
            setattr(parent, attr, nn.Identity())
        else:
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            if bn.affine:
                bn.weight.fill_(1.0)
                bn.bias.zero_()
        folded += 1
    after = model(example_input)
    err = (after - reference).abs().max().item()
    scale = reference.abs().max().item() + 1e-12
    if err > rtol * scale:
        raise RuntimeError(
            f"BatchNorm folding changed the model's output (max error {err:.3g} vs output scale {scale:.3g}): "
            "some conv output feeds more than its BatchNorm. Build the QuantizedModel with fold_bn=False."
        )
    return folded


def quantizable_layers(model: nn.Module, example: torch.Tensor, fold_bn: bool = True) -> list[LayerInfo]:
    """The quantizable layers of ``model`` (on a copy, BN folded when ``fold_bn``, as they are quantized)."""
    model = copy.deepcopy(model).eval()
    if fold_bn:
        fold_batchnorm(model, example)
    return discover_layers(model, example)
