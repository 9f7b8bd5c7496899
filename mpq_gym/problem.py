"""Problem: the one object policies talk to (groups x candidates, costs, exact and surrogate quality),
and :class:`ProblemSpec`, the validated description of a problem and its budget that ``gym.make``
kwargs, the benchmark harness and the agents share.

A problem starts from a shipped table (:mod:`mpq_gym.tabular`) when one stands for its spec: surrogate
mode then needs neither the network nor the data, which load on the first exact evaluation (and are
checked against the table's fingerprint). The workload package is imported only then too: it pulls in
torchvision, timm and scikit-learn, seconds that ``import mpq_gym`` does not need to spend."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from contextlib import contextmanager
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np
import torch

from mpq_gym.budget import Budget, BudgetTable
from mpq_gym.candidates import QuantizerGroup, config_from_choices, make_groups, parse_candidates
from mpq_gym.config import FP32, Candidate, Config, uniform_config
from mpq_gym.cost import CostModel, LookupTableCost
from mpq_gym.devices import resolve_device
from mpq_gym.errors import ConfigError, MissingDataError, MissingWeightsError
from mpq_gym.evaluate.sensitivity import RowPool, SensitivityTable, compute_sensitivity, sensitivity_rows
from mpq_gym.evaluate.interactions import PairwiseTable, compute_pairwise
from mpq_gym.evaluate.surrogate import Surrogate
from mpq_gym.quant.graph import LayerInfo
from mpq_gym.quant.quantizers import DEFAULT_QUANTIZER, QUANTIZERS, WEIGHT_ROUNDING, QuantSettings, quantizer_settings
from mpq_gym.quant.residual import residual_groups
from mpq_gym.tabular import REGENERATE, ProblemTable, find_table
from mpq_gym.workers import ProcessPool

if TYPE_CHECKING:
    from mpq_gym.evaluate.exact import ExactEvaluator
    from mpq_gym.workloads.base import Workload


class EvaluationPool(RowPool, Protocol):
    """Parallel workers holding copies of one problem (:class:`mpq_gym.workers.ProcessPool`,
    :class:`mpq_gym.bench.parallel.RayPool`)."""

    def qualities(self, choices: Iterable[Sequence[int]], split: str) -> list[float]:
        """Exact quality of each configuration, in input order."""


def _require(ok: bool, field_name: str, value: Any, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}={value!r} is invalid: {fix}")


def _is_workload(value: Any) -> bool:
    """Whether ``value`` is a :class:`Workload` object (the workload package is imported only for non-names)."""
    if isinstance(value, str):
        return False
    from mpq_gym.workloads.base import Workload
    return isinstance(value, Workload)


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
    #: start from the table shipped for these fields (:mod:`mpq_gym.tabular`) when one exists; False computes
    #: everything from the workload
    tabular: bool = True
    #: where the network runs: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda[:N]``, ``mps``
    device: str = "auto"
    #: processes that compute phase 1 and the surrogate's calibration points side by side (:mod:`mpq_gym.workers`;
    #: 1 = in this process). Where the work runs, like ``device``: results are the same for any value
    workers: int = 1

    def __post_init__(self) -> None:
        _require((isinstance(self.workload, str) or _is_workload(self.workload)) and bool(self.workload), "workload",
                 self.workload,
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
        _require(isinstance(self.tabular, bool), "tabular", self.tabular, "give true or false")
        _require(isinstance(self.device, str), "device", self.device, "give 'auto', 'cpu', 'cuda[:N]' or 'mps'")
        resolve_device(self.device)  # raises ConfigError naming the fix when the device is not available
        _require(isinstance(self.workers, int) and not isinstance(self.workers, bool) and self.workers >= 1,
                 "workers", self.workers, "give a whole number >= 1 (1 = no worker processes)")
        _require(self.workers == 1 or isinstance(self.workload, str), "workers", self.workers,
                 "worker processes rebuild the problem from its workload's name: give workload='<name>' or workers=1")
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

    def build_workload(self) -> "Workload":
        """The workload (loaded from its registry name, or the one given)."""
        if not isinstance(self.workload, str):
            return self.workload
        from mpq_gym.workloads import get_workload
        return get_workload(self.workload, data_dir=self.data_dir, weights=self.weights,
                            random_weights=self.random_weights, **dict(self.workload_kwargs or {}))

    def build(self, progress: bool = False) -> "Problem":
        """The :class:`Problem`: from the shipped table when one stands for this spec (the workload then loads
        on the first exact evaluation), else on the workload (its phase-1 table not yet computed)."""
        table = find_table(self)
        return Problem(self.build_workload if table is not None else self.build_workload(), self.candidates,
                       tied=self.tied, settings=self.settings(), lut=self.lut, split=self.split,
                       sensitivity_images=self.sensitivity_images, surrogate_points=self.surrogate_points,
                       seed=self.seed, progress=progress, table=table, device=self.device, workers=self.workers,
                       factory=partial(ProblemSpec.build, dataclasses.replace(self, workers=1)) if self.workers > 1 else None)


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

    With a shipped ``table`` (:class:`~mpq_gym.tabular.ProblemTable`) the layers, groups, costs, phase-1
    table, FP32 quality and surrogate come from it, and ``workload`` may be a function that loads the
    workload: it runs on the first exact evaluation, and the workload's fingerprint and layers must be the
    table's (else a :class:`ConfigError` naming the fix; nothing is ever mixed).
    """

    def __init__(self, workload: "Workload | Callable[[], Workload]", candidates: str | Sequence[Candidate] = "hardware",
                 tied: Sequence[Sequence[str]] | str = (), settings: QuantSettings = QuantSettings(),
                 lut: LookupTableCost | str | None = None, split: str = "search", sensitivity_images: int = 256,
                 surrogate_points: int = 16, seed: int = 0, progress: bool = True,
                 table: ProblemTable | None = None, device: str = "cpu", workers: int = 1,
                 factory: "Callable[[], Problem] | None" = None) -> None:
        self.settings = settings
        #: where the network runs (``ProblemSpec.device``; a bare Problem runs on the CPU)
        self.device = resolve_device(device)
        self.table = table
        self.progress = progress
        #: the workload, or a function that loads it (see :attr:`workload`)
        self._source = workload
        self._workload: Workload | None = None
        self.candidates = parse_candidates(candidates)
        if table is None:
            total_params = self._init_from_workload(tied)
        else:
            total_params = self._init_from_table(table)
        if isinstance(lut, str):
            lut = LookupTableCost.load(lut, self.layers)
        self.cost_model = CostModel(self.layers, total_params, lut)
        self.split = split
        self.sensitivity_images = sensitivity_images
        self.surrogate_points = surrogate_points
        self.seed = seed
        self.exact_evaluations = 0
        #: workers holding copies of this problem (:class:`mpq_gym.workers.ProcessPool`, or a
        #: :class:`mpq_gym.bench.parallel.RayPool` the bench attaches): phase-1 rows and surrogate calibration run on it
        self.pool: EvaluationPool | None = None
        #: with ``factory`` (a picklable function returning a copy of this problem), :attr:`sensitivity` and
        #: :attr:`surrogate` start that many worker processes for their exact work when no pool is attached
        self.workers, self.factory = workers, factory
        if table is not None:
            self._check_table(table)

    def _init_from_workload(self, tied: Sequence[Sequence[str]] | str) -> int:
        """Layers and groups of the workload (built now); returns the model's parameter count."""
        model = self.workload.model
        self.layers: list[LayerInfo] = self.evaluator.qmodel.layers
        self.layer_names = [layer.name for layer in self.layers]
        if tied == "residual":  # layers meeting at a residual add share one choice
            tied = residual_groups(model)
        self.groups: list[QuantizerGroup] = make_groups(self.layer_names, tied)
        return sum(p.numel() for p in model.parameters())

    def _init_from_table(self, table: ProblemTable) -> int:
        """Layers and groups of the table; returns the model's parameter count."""
        if [str(c) for c in self.candidates] != [str(c) for c in table.candidates]:
            raise ConfigError(f"table {table.source} holds candidates {[str(c) for c in table.candidates]}, not "
                              f"{[str(c) for c in self.candidates]}; {REGENERATE}")
        self.layers = list(table.layers)
        self.layer_names = [layer.name for layer in self.layers]
        self.groups = list(table.groups)
        return table.total_params

    def _check_table(self, table: ProblemTable) -> None:
        """The table's costs and calibration points are what this code derives from its layers and seed."""
        for metric, cost in table.costs.items():
            computed = np.append(self.group_cost_table(metric), [self.cost_model.fixed[metric], self.cost_model.cost(
                self.cost_model.reference_config(), metric)])
            if not np.allclose(np.append(cost["table"], [cost["fixed"], cost["reference"]]), computed, rtol=1e-9):
                raise ConfigError(f"table {table.source}: its {metric} costs differ from what this mpq-gym computes "
                                  f"from its layers; {REGENERATE}")
        if not np.array_equal(table.calibration_choices, self.surrogate_calibration_choices()):
            raise ConfigError(f"table {table.source}: its calibration configurations are not those of "
                              f"surrogate_points={self.surrogate_points}, seed={self.seed}; {REGENERATE}")

    # ------------------------------------------------------------------ workload
    @property
    def workload(self) -> "Workload":
        """The workload (with a table: loaded on first use and checked against the table's fingerprint)."""
        if self._workload is None:
            self._workload = self._load_workload()
        return self._workload

    def _load_workload(self) -> "Workload":
        """The workload, loaded now when given as a function. With a table, raise naming the fix when its data or
        weights are missing, or when it is not the workload the table was computed from."""
        table = self.table
        if table is None:
            return self._source() if callable(self._source) else self._source
        try:
            workload = self._source() if callable(self._source) else self._source
            fingerprint = workload.fingerprint()
        except (MissingDataError, MissingWeightsError) as exc:
            raise type(exc)(f"exact evaluation needs the {table.key['workload']} network and its data (the table "
                            f"{table.source} covers surrogate rewards only): {exc}") from exc
        if fingerprint != table.fingerprint:
            raise ConfigError(f"the {workload.name} weights and data loaded here (fingerprint {fingerprint}) are not "
                              f"those the table {table.source} was computed from ({table.fingerprint}; other weights "
                              "or data, or images decoded into MPQ_GYM_CACHE by another version): pass tabular=False "
                              "to compute everything from yours, or regenerate the tables with `mpq-gym tabular build`")
        return workload

    @cached_property
    def evaluator(self) -> "ExactEvaluator":
        """The counted exact oracle: the workload's fake-quantized network (built on first use)."""
        from mpq_gym.evaluate.exact import ExactEvaluator, build_quantized_model
        workload = self.workload
        qmodel = build_quantized_model(workload, self.settings, self.progress, self.device)
        if self.table is not None and qmodel.layers != list(self.table.layers):
            raise ConfigError(f"the layers of the {workload.name} network loaded here are not those of the table "
                              f"{self.table.source}: pass tabular=False, or regenerate the tables with "
                              "`mpq-gym tabular build`")
        return ExactEvaluator(workload, qmodel, progress=self.progress)

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
        if self.table is not None:
            return self.table.fp32_quality
        return self.quality(self.uniform(FP32))

    @cached_property
    def sensitivity(self) -> SensitivityTable:
        """Phase-1 table S[group, candidate] on the first ``sensitivity_images`` calibration images (cached)."""
        if self.table is not None:
            return SensitivityTable([g.name for g in self.groups], list(self.candidates), self.table.sensitivity.copy(),
                                    self.sensitivity_images)
        with self._worker_pool():
            return compute_sensitivity(self.evaluator.qmodel, self.sensitivity_inputs(), self.groups, self.candidates,
                                       cache_key=self.workload.fingerprint(), batch_size=self.workload.batch_size,
                                       progress=self.progress, pool=self.pool)

    def sensitivity_rows(self, which: Sequence[int]) -> dict[int, np.ndarray]:
        """Phase-1 rows of the groups ``which`` (what a worker computes for :attr:`sensitivity`)."""
        return sensitivity_rows(self.evaluator.qmodel, self.sensitivity_inputs(), self.groups, self.candidates,
                                [int(g) for g in which], self.workload.batch_size)

    @contextmanager
    def _worker_pool(self) -> Iterator[None]:
        """Within the block, :attr:`pool` is ``workers`` processes holding copies of this problem (started on first
        use, stopped at the end), unless a pool is attached already or ``workers`` is 1."""
        if self.pool is not None or self.workers < 2 or self.factory is None:
            yield
            return
        with ProcessPool(self.factory, self.workers) as pool:
            self.pool = pool
            try:
                yield
            finally:
                self.pool = None

    def sensitivity_inputs(self) -> torch.Tensor:
        """The calibration images phase 1 measures on."""
        return next(self.workload.split("calibration").batches(self.sensitivity_images))[0]

    @cached_property
    def surrogate(self) -> Surrogate:
        """Surrogate calibrated on every uniform configuration plus graded-random ones, ``surrogate_points`` in all."""
        choices = self.surrogate_calibration_choices()
        if self.table is not None:
            return Surrogate(self.sensitivity).fit(choices, self.table.calibration_values, self.fp32_quality)
        with self._worker_pool():
            sensitivity = self.sensitivity
            values = self.exact_qualities(choices)
        return Surrogate(sensitivity).fit(choices, values, self.fp32_quality)

    def exact_qualities(self, choices: np.ndarray) -> np.ndarray:
        """Exact quality of each configuration on the problem's split; with a :attr:`pool` those not stored yet
        are computed on its workers (and counted as exact evaluations)."""
        keys = [tuple(int(c) for c in row) for row in choices]
        known: dict[tuple[int, ...], float] = {}
        if self.pool is not None:
            new = [k for k in dict.fromkeys(keys) if not self.evaluator.stored(self.config(k), self.split)]
            if len(new) > 1:
                self.evaluator.qmodel.fit_quantizers(self.layer_names, self.candidates)  # saved: workers load it
                known = dict(zip(new, self.pool.qualities(new, self.split)))
                self.exact_evaluations += len(new)
        return np.array([known[k] if k in known else self.quality(self.config(k)) for k in keys], dtype=np.float64)

    @cached_property
    def pairwise(self) -> PairwiseTable:
        """Measured interactions of adjacent groups on phase 1's images (``(G - 1) x C^2`` cells, cached like
        phase 1): the CLADO-style baseline's terms and the ``pairwise`` surrogate's."""
        return compute_pairwise(self.evaluator.qmodel, self.sensitivity_inputs(), self.groups, self.candidates,
                                cache_key=self.workload.fingerprint(), batch_size=self.workload.batch_size,
                                progress=self.progress)

    @cached_property
    def pairwise_surrogate(self) -> Surrogate:
        """The surrogate plus the measured adjacent-pair interactions, mapped to the metric by the same
        calibrated fit (no further exact evaluations)."""
        pairwise = self.pairwise
        return Surrogate(self.sensitivity, self.surrogate.metric_fit, pairwise.pairs,
                         pairwise.interactions(self.sensitivity))

    def surrogate_calibration_choices(self) -> np.ndarray:
        """The configurations (candidate indices) the surrogate is calibrated on."""
        n_groups, n_cand = len(self.groups), len(self.candidates)
        uniform = np.repeat(np.arange(n_cand)[:, None], n_groups, axis=1)
        extra = max(self.surrogate_points - n_cand, 0)
        rng = np.random.default_rng(self.seed)
        return np.concatenate([uniform, graded_random_choices(rng, extra, n_groups, n_cand)])
