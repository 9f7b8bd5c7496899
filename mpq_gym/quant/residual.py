"""Quantizer groups implied by the graph: layers whose outputs meet at a residual add.

Traced with ``torch.fx`` (quantizable layers kept as leaves). Each input of an add is walked back
through non-quantizable operations along their data (first) input (BN, activations, pooling) to the
quantizable layers producing it; everything feeding one add, transitively through chained adds
(a ResNet stage's identity shortcuts), becomes one group.
"""
from __future__ import annotations

import operator

import torch
from torch import fx, nn

from mpq_gym.errors import ConfigError
from mpq_gym.quant.graph import QUANTIZABLE_TYPES

_ADDS = {operator.add, operator.iadd, torch.add}


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, QUANTIZABLE_TYPES) or super().is_leaf_module(m, qualname)


def residual_groups(model: nn.Module) -> list[list[str]]:
    """Lists of layer names that feed a common residual add (only lists of two or more)."""
    try:
        graph = _LeafTracer().trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many types on untraceable code
        raise ConfigError(f"cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}); "
                          "declare the tied layers yourself with tied=[[...], ...]") from exc
    modules = dict(model.named_modules())
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    def producers(node: fx.Node, seen: set) -> set[str]:
        if node in seen:
            return set()
        seen.add(node)
        if node.op == "call_module" and isinstance(modules.get(node.target), QUANTIZABLE_TYPES):
            return {node.target}
        if node.op == "call_function" and node.target in _ADDS:
            return set().union(*(producers(a, seen) for a in node.args if isinstance(a, fx.Node)))
        data = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        return producers(data, seen) if data is not None else set()  # the data input comes first

    for node in graph.nodes:
        if node.op == "call_function" and node.target in _ADDS:
            layers = sorted(producers(node, set()))
            for other in layers[1:]:
                parent[find(other)] = find(layers[0])
    groups: dict[str, list[str]] = {}
    for layer in parent:
        groups.setdefault(find(layer), []).append(layer)
    return [sorted(g) for g in groups.values() if len(g) > 1]
