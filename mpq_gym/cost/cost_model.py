"""CostModel: every cost metric of a network's quantizable layers under a configuration."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mpq_gym.config import Candidate, Config, uniform_config
from mpq_gym.errors import ConfigError
from mpq_gym.cost.constants import REFERENCE_CANDIDATE
from mpq_gym.cost.lut import LookupTableCost
from mpq_gym.cost.models import ANALYTIC_MODELS, LayerCost, config_cost, cost_table
from mpq_gym.quant.graph import LayerInfo

#: the analytic cost metrics every network has (a lookup table adds ``lut``)
COST_METRICS: tuple[str, ...] = tuple(ANALYTIC_MODELS)


class CostModel:
    """All cost metrics of a network's quantizable layers; optional ``lut`` adds metric ``lut``.

    ``total_params`` is the parameter count of the original model: parameters outside the quantizable
    layers' weights (biases, BatchNorm affine, ...) are counted in ``size_bits`` at 32 bits.
    """

    def __init__(self, layers: Sequence[LayerInfo], total_params: int | None = None,
                 lut: LookupTableCost | None = None) -> None:
        self.layers = list(layers)
        self.total_params = int(total_params if total_params is not None else sum(l.params for l in self.layers))
        self.models: dict[str, LayerCost] = dict(ANALYTIC_MODELS)
        if lut is not None:
            self.models["lut"] = lut
        #: cost that no configuration changes, per metric (parameters outside quantizable layers, 32-bit)
        self.fixed = {m: 0.0 for m in self.models}
        self.fixed["size_bits"] = 32.0 * (self.total_params - sum(l.params for l in self.layers))

    @classmethod
    def for_model(cls, layers: Sequence[LayerInfo], model: torch.nn.Module,
                  lut: LookupTableCost | None = None) -> "CostModel":
        """The cost model of ``model``'s quantizable ``layers`` (every other parameter counted at 32 bits)."""
        return cls(layers, sum(p.numel() for p in model.parameters()), lut)

    @property
    def metrics(self) -> list[str]:
        """Names of the available cost metrics."""
        return list(self.models)

    def _check(self, metric: str) -> None:
        if metric not in self.models:
            raise ConfigError(f"unknown cost metric {metric!r}; choose one of {self.metrics}")

    def cost(self, config: Config, metric: str) -> float:
        """Total cost of ``config`` under ``metric``."""
        self._check(metric)
        return config_cost(self.layers, config, self.models[metric]) + self.fixed[metric]

    def table(self, candidates: Sequence[Candidate], metric: str) -> np.ndarray:
        """Per-layer costs [layer, candidate]; a configuration's cost is a row-wise pick + ``fixed[metric]``."""
        self._check(metric)
        return cost_table(self.layers, candidates, self.models[metric])

    def reference_config(self, candidate: Candidate = Candidate(*REFERENCE_CANDIDATE)) -> Config:
        """Uniform configuration that relative costs are measured against (default W8A16, as AIMET)."""
        return uniform_config([l.name for l in self.layers], candidate)

    def costs(self, config: Config, reference: Config | None = None) -> dict[str, float]:
        """Every metric of ``config``, plus each one's ratio to ``reference`` (default uniform W8A16)."""
        reference = reference or self.reference_config()
        out: dict[str, float] = {"params": float(self.total_params), "macs": float(sum(l.macs for l in self.layers))}
        for metric in self.models:
            value = self.cost(config, metric)
            out[metric] = value
            out[f"{metric}_ratio"] = value / self.cost(reference, metric)
        out["size_mb"] = out["size_bits"] / 8 / 1e6
        return out

