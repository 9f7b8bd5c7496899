"""Problem: the one object policies talk to: groups x candidates, costs, exact and surrogate quality."""
from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np
import torch

from mpq_gym.candidates import QuantizerGroup, config_from_choices, make_groups, parse_candidates
from mpq_gym.config import FP32, Candidate, Config, uniform_config
from mpq_gym.cost import CostModel, LookupTableCost
from mpq_gym.evaluate.exact import ExactEvaluator, build_quantized_model
from mpq_gym.evaluate.sensitivity import SensitivityTable, compute_sensitivity
from mpq_gym.evaluate.surrogate import Surrogate
from mpq_gym.quant.quantizers import QuantSettings
from mpq_gym.quant.residual import residual_groups
from mpq_gym.workloads.base import Workload


def graded_random_choices(rng: np.random.Generator, n: int, groups: int, candidates: int) -> np.ndarray:
    """``n`` random configurations spanning light to heavy quantization: each draws a rate p ~ U(0, 1),
    and each group takes a uniformly random candidate with probability p, else the last (widest) one."""
    rate = rng.uniform(size=(n, 1))
    random = rng.integers(candidates, size=(n, groups))
    return np.where(rng.uniform(size=(n, groups)) < rate, random, candidates - 1)


class Problem:
    """Mixed-precision search problem on a workload.

    Candidate indices refer to ``candidates`` (by convention ordered from narrowest to widest);
    a configuration is one index per quantizer group. ``tied`` lists layers that share a choice, or is
    ``"residual"`` to tie the layers meeting at each residual add. Exact evaluations are counted.
    """

    def __init__(self, workload: Workload, candidates: str | Sequence[Candidate] = "hardware",
                 tied: Sequence[Sequence[str]] | str = (), settings: QuantSettings = QuantSettings(),
                 lut: LookupTableCost | str | None = None, split: str = "search", sensitivity_images: int = 256,
                 surrogate_points: int = 16, seed: int = 0, progress: bool = True) -> None:
        self.workload = workload
        self.evaluator = ExactEvaluator(workload, build_quantized_model(workload, settings, progress), progress=progress)
        self.layers = self.evaluator.qmodel.layers
        self.layer_names = [layer.name for layer in self.layers]
        self.candidates = parse_candidates(candidates)
        if tied == "residual":  # layers meeting at a residual add share one choice
            tied = residual_groups(workload.model)
        self.groups: list[QuantizerGroup] = make_groups(self.layer_names, tied)
        if isinstance(lut, str):
            lut = LookupTableCost.load(lut, self.layers)
        self.cost_model = CostModel(self.layers, sum(p.numel() for p in workload.model.parameters()), lut)
        self.split = split
        self.sensitivity_images = sensitivity_images
        self.surrogate_points = surrogate_points
        self.seed = seed
        self.progress = progress
        self.exact_evaluations = 0
        #: a :class:`mpq_gym.parallel.RayPool` of this problem: phase-1 rows and surrogate calibration run on it
        self.pool = None

    # ------------------------------------------------------------ configurations
    def config(self, choices: Sequence[int]) -> Config:
        """Configuration for one candidate index per group."""
        return config_from_choices(self.groups, self.candidates, choices)

    def uniform(self, candidate: Candidate) -> Config:
        """Every layer at ``candidate``."""
        return uniform_config(self.layer_names, candidate)

    # --------------------------------------------------------------------- costs
    def cost(self, config: Config, metric: str = "bops") -> float:
        """Total cost of ``config``."""
        return self.cost_model.cost(config, metric)

    def group_cost_table(self, metric: str = "bops") -> np.ndarray:
        """Cost [group, candidate], each group's layers summed; add ``cost_model.fixed[metric]`` for totals."""
        layer_table = self.cost_model.table(self.candidates, metric)
        row = {name: i for i, name in enumerate(self.layer_names)}
        return np.stack([layer_table[[row[l] for l in g.layers]].sum(axis=0) for g in self.groups])

    # ------------------------------------------------------------------- quality
    def evaluate(self, config: Config, split: str | None = None) -> dict[str, float]:
        """Exact metrics of ``config`` (memoised; counts a new evaluation)."""
        before = self.evaluator.forward_passes
        result = self.evaluator.evaluate(config, split or self.split)
        self.exact_evaluations += self.evaluator.forward_passes > before
        return result

    def quality(self, config: Config, split: str | None = None) -> float:
        """The workload's primary metric of ``config``, evaluated exactly."""
        return self.evaluate(config, split)[self.workload.primary_metric]

    @cached_property
    def fp32_quality(self) -> float:
        """Primary metric of the FP32 model on the problem's split."""
        return self.quality(self.uniform(FP32))

    @cached_property
    def sensitivity(self) -> SensitivityTable:
        """Phase-1 table S[group, candidate] on the first ``sensitivity_images`` calibration images (cached)."""
        return compute_sensitivity(self.evaluator.qmodel, self.sensitivity_inputs(), self.groups, self.candidates,
                                   cache_key=self.workload.fingerprint(), batch_size=self.workload.batch_size,
                                   progress=self.progress, pool=self.pool)

    def sensitivity_inputs(self) -> torch.Tensor:
        """The calibration images phase 1 measures on."""
        return next(self.workload.split("calibration").batches(self.sensitivity_images))[0]

    @cached_property
    def surrogate(self) -> Surrogate:
        """Surrogate calibrated on every uniform configuration plus graded-random ones, ``surrogate_points`` in all."""
        choices = self.surrogate_calibration_choices()
        if self.pool is not None:
            values = np.array(self.pool.qualities(choices, self.split))
        else:
            values = np.array([self.quality(self.config(c)) for c in choices])
        return Surrogate(self.sensitivity).fit(choices, values, self.fp32_quality)

    def surrogate_calibration_choices(self) -> np.ndarray:
        """The configurations (candidate indices) the surrogate is calibrated on."""
        n_groups, n_cand = len(self.groups), len(self.candidates)
        uniform = np.repeat(np.arange(n_cand)[:, None], n_groups, axis=1)
        extra = max(self.surrogate_points - n_cand, 0)
        rng = np.random.default_rng(self.seed)
        return np.concatenate([uniform, graded_random_choices(rng, extra, n_groups, n_cand)])
