"""Problem: the one object policies talk to (groups x candidates, costs, exact and surrogate quality),
and :class:`ProblemSpec`, the validated description of a problem and its budget that ``gym.make``
kwargs, the benchmark harness and the agents share."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np
import torch

from mpq_gym.budget import Budget, BudgetTable
from mpq_gym.candidates import QuantizerGroup, config_from_choices, make_groups, parse_candidates
from mpq_gym.config import FP32, Candidate, Config, uniform_config
from mpq_gym.cost import CostModel, LookupTableCost
from mpq_gym.errors import ConfigError
from mpq_gym.evaluate.exact import ExactEvaluator, build_quantized_model
from mpq_gym.evaluate.sensitivity import RowPool, SensitivityTable, compute_sensitivity
from mpq_gym.evaluate.surrogate import Surrogate
from mpq_gym.quant.quantizers import DEFAULT_QUANTIZER, QUANTIZERS, WEIGHT_ROUNDING, QuantSettings, quantizer_settings
from mpq_gym.quant.residual import residual_groups
from mpq_gym.workloads import get_workload
from mpq_gym.workloads.base import Workload


class EvaluationPool(RowPool, Protocol):
    """Parallel workers holding copies of one problem (e.g. :class:`mpq_gym.bench.parallel.RayPool`)."""

    def qualities(self, choices: Iterable[Sequence[int]], split: str) -> list[float]:
        """Exact quality of each configuration, in input order."""


def _require(ok: bool, field_name: str, value: Any, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}={value!r} is invalid: {fix}")


@dataclass(frozen=True)
class ProblemSpec:
    """Everything that defines a search task: the workload, the candidates, how layers are tied, the
    quantizer settings, the phase-1 / surrogate sizes, and the budget. Validated once, field by field.

    These are the keyword arguments of ``gym.make("MixedPrecision-...", ...)`` that are not episode
    options, the ``--env-kwargs`` of the harness and the agents, and a harness spec's problem.
    """

    workload: str | Workload = "digits_cnn"
    candidates: str | Sequence[Any] = "hardware"
    #: layers that share one choice, or "residual" (tie the layers meeting at each residual add)
    tied: Sequence[Sequence[str]] | str = ()
    data_dir: str | None = None
    weights: str | None = None
    random_weights: bool = False
    workload_kwargs: Mapping[str, Any] | None = None
    #: HAQ-format lookup table (.npy) adding cost metric ``lut``
    lut: str | None = None
    sensitivity_images: int = 256
    surrogate_points: int = 16
    weight_rounding: str = "nearest"
    #: quantizer version (``QUANTIZERS``): ``v2`` (default) or ``v1`` (the settings of figures before issue 19)
    quantizer: str = DEFAULT_QUANTIZER
    #: budget: ``budget`` x cost of uniform W8A16 on ``budget_metric``, or ``budget_absolute``
    budget: float | None = 0.5
    budget_metric: str = "bops"
    budget_absolute: float | None = None
    #: search split of exact evaluations
    split: str = "search"
    seed: int = 0

    def __post_init__(self) -> None:
        _require(isinstance(self.workload, (str, Workload)) and bool(self.workload), "workload", self.workload,
                 "give a workload name (e.g. 'efficientnet_lite0', 'hf:<id>') or a Workload")
        parse_candidates(self.candidates)  # raises ConfigError naming the fix
        _require(self.tied == "residual" or (not isinstance(self.tied, str) and all(
            not isinstance(g, str) and all(isinstance(n, str) for n in g) for g in self.tied)), "tied", self.tied,
            "give 'residual' or a list of lists of layer names")
        for name in ("data_dir", "weights", "lut"):
            value = getattr(self, name)
            _require(value is None or isinstance(value, (str, os.PathLike)), name, value, "give a path")
        _require(isinstance(self.random_weights, bool), "random_weights", self.random_weights, "give true or false")
        _require(self.workload_kwargs is None or isinstance(self.workload_kwargs, Mapping), "workload_kwargs",
                 self.workload_kwargs, "give a mapping, e.g. {\"dataset\": \"data.csv\"}")
        for name in ("sensitivity_images", "surrogate_points"):
            value = getattr(self, name)
            _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name, value,
                     "give a whole number >= 1")
        _require(self.weight_rounding in WEIGHT_ROUNDING, "weight_rounding", self.weight_rounding,
                 f"choose one of {WEIGHT_ROUNDING}")
        _require(self.quantizer in QUANTIZERS, "quantizer", self.quantizer, f"choose one of {sorted(QUANTIZERS)}")
        _require(self.split in ("calibration", "search", "test"), "split", self.split,
                 "choose 'search' (or 'calibration' / 'test')")
        _require(isinstance(self.seed, int) and not isinstance(self.seed, bool), "seed", self.seed, "give an integer")
        self.budget_spec  # noqa: B018  (Budget validates ratio / absolute / metric)

    # ----------------------------------------------------------------- building
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The keyword arguments a spec takes."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def split_kwargs(cls, kwargs: Mapping[str, Any], allowed: Iterable[str] = ()) -> tuple["ProblemSpec", dict]:
        """(spec from the spec fields of ``kwargs``, the rest); a key that is neither a spec field nor in
        ``allowed`` is a :class:`ConfigError` listing the valid keys."""
        names, allowed = set(cls.field_names()), set(allowed)
        unknown = sorted(k for k in kwargs if k not in names and k not in allowed)
        if unknown:
            raise ConfigError(f"unknown keyword argument(s) {unknown}; valid: {sorted(names | allowed)}")
        return cls(**{k: v for k, v in kwargs.items() if k in names}), {k: v for k, v in kwargs.items()
                                                                          if k not in names}

    @property
    def budget_spec(self) -> Budget:
        """The :class:`Budget` these fields describe."""
        return Budget(self.budget_metric, self.budget, self.budget_absolute)

    def settings(self) -> QuantSettings:
        """The quantizer settings."""
        return quantizer_settings(self.quantizer, weight_rounding=self.weight_rounding)

    def build_workload(self) -> Workload:
        """The workload (loaded from its registry name, or the one given)."""
        if isinstance(self.workload, Workload):
            return self.workload
        return get_workload(self.workload, data_dir=self.data_dir, weights=self.weights,
                            random_weights=self.random_weights, **dict(self.workload_kwargs or {}))

    def build(self, progress: bool = False) -> "Problem":
        """The :class:`Problem` (its phase-1 table not yet computed)."""
        return Problem(self.build_workload(), self.candidates, tied=self.tied, settings=self.settings(),
                       lut=self.lut, split=self.split, sensitivity_images=self.sensitivity_images,
                       surrogate_points=self.surrogate_points, seed=self.seed, progress=progress)


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
        self.cost_model = CostModel.for_model(self.layers, workload.model, lut)
        self.split = split
        self.sensitivity_images = sensitivity_images
        self.surrogate_points = surrogate_points
        self.seed = seed
        self.progress = progress
        self.exact_evaluations = 0
        #: a :class:`mpq_gym.bench.parallel.RayPool` of this problem: phase-1 rows and surrogate calibration run on it
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

    def budget_table(self, budget: Budget) -> BudgetTable:
        """The :class:`BudgetTable` of ``budget`` on this problem's groups and candidates."""
        cost_model = self.cost_model
        if budget.metric not in cost_model.metrics:
            raise ConfigError(f"unknown budget metric {budget.metric!r}; choose one of {cost_model.metrics} "
                              "('lut' needs lut='table.npy')")
        reference = cost_model.cost(cost_model.reference_config(), budget.metric)
        return BudgetTable(self.group_cost_table(budget.metric), cost_model.fixed[budget.metric],
                           budget.limit(reference), budget.metric, reference)

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
