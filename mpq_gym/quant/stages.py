"""A network as a verified chain of stages, each taking the single tensor the stage before returned.

Phase 1 (:mod:`mpq_gym.evaluate.sensitivity`) and the exact evaluator's reused activations
(:mod:`mpq_gym.evaluate.exact`) both need it: a configuration that changes only layers from stage s on
re-runs only stages s.. from a kept input of stage s. The chain is checked against the model's real
forward on an example input; a model that is not such a chain is one stage (correct, only slower).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn


def _top_level_stages(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The model's children in definition order, ``nn.Sequential`` containers expanded."""
    stages = []
    for name, child in model.named_children():
        full = f"{prefix}{name}"
        stages += _top_level_stages(child, full + ".") if isinstance(child, nn.Sequential) else [(full, child)]
    return stages


def _run(stages: Sequence[tuple[str, nn.Module]], x: torch.Tensor) -> torch.Tensor:
    for _, module in stages:
        if isinstance(module, nn.Linear) and x.ndim > 2:
            x = x.flatten(1)
        x = module(x)
    return x


@dataclass
class StageChain:
    """(name, module) stages whose composition is the model's forward; ``len(chain) == 1`` when the model is
    not a chain (the fallback: the whole model is one stage)."""

    stages: list[tuple[str, nn.Module]]

    @classmethod
    @torch.inference_mode()
    def build(cls, model: nn.Module, example_input: torch.Tensor) -> "StageChain":
        """The model's top-level modules (``nn.Sequential`` expanded) if they compose to its forward on
        ``example_input``, else one stage."""
        stages = _top_level_stages(model)
        try:
            reference = model(example_input)
            if stages and torch.allclose(_run(stages, example_input), reference, rtol=1e-5, atol=1e-6):
                return cls(stages)
        except Exception:  # noqa: BLE001 - a module that rejects the chained input is simply not a chain
            pass
        return cls([("", model)])

    def __len__(self) -> int:
        return len(self.stages)

    @property
    def names(self) -> list[str]:
        """Stage names ("" for the whole-model fallback)."""
        return [name for name, _ in self.stages]

    def stage_of(self, layer: str) -> int:
        """The stage that holds the layer named ``layer``."""
        for i, (name, _) in enumerate(self.stages):
            if name == "" or layer == name or layer.startswith(name + "."):
                return i
        raise ValueError(f"layer {layer!r} is in no stage")

    def run(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Stages ``start`` to ``stop`` (exclusive; default: to the end) on ``x``, the input of stage ``start``."""
        return _run(self.stages[start:stop], x)

    def run_batched(self, x: torch.Tensor, batch_size: int, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """:meth:`run` in batches of ``batch_size``, concatenated."""
        return torch.cat([self.run(x[i:i + batch_size], start, stop) for i in range(0, len(x), batch_size)])
