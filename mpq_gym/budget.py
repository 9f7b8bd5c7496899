"""Hardware budgets: resolving a limit, checking feasibility, and HAQ's action wall."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix, eye, hstack, kron

from mpq_gym.errors import ConfigError

ENFORCEMENT_MODES = ("limit", "penalty", "mask", "project")


@dataclass(frozen=True)
class Budget:
    """Cost limit on ``metric``: ``ratio`` x cost(reference) (default W8A16, as AIMET) or ``absolute``."""

    metric: str = "bops"
    ratio: float | None = 0.5
    absolute: float | None = None

    def __post_init__(self) -> None:
        for name in ("ratio", "absolute"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"budget {name} must be a finite number > 0 (e.g. budget=0.375), got {value!r}")
        if self.ratio is None and self.absolute is None:
            raise ConfigError("a budget needs a ratio of the reference cost (budget=0.375) or budget_absolute=<cost>")
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(f"budget_metric must be a cost metric name such as 'bops', got {self.metric!r}")

    def limit(self, reference_cost: float) -> float:
        """The absolute limit."""
        if self.absolute is not None:
            return float(self.absolute)
        return float(self.ratio) * reference_cost


class BudgetTable:
    """Per-group costs [group, candidate] of one metric, plus the fixed part, against a limit."""

    def __init__(self, table: np.ndarray, fixed: float, limit: float, metric: str, reference_cost: float) -> None:
        self.table, self.fixed, self.limit, self.metric = table, fixed, limit, metric
        self.reference_cost = reference_cost
        self.cheapest = table.min(axis=1)
        #: sum of the cheapest choices of groups g+1 .. G-1, for each g
        self.cheapest_after = np.concatenate([np.cumsum(self.cheapest[::-1])[::-1][1:], [0.0]])
        self.min_total = float(self.cheapest.sum() + fixed)
        self.max_total = float(table.max(axis=1).sum() + fixed)
        #: the limit with a relative tolerance for floating-point sums
        self.ceiling = limit * (1 + 1e-9)

    def with_limit(self, limit: float) -> "BudgetTable":
        """The same costs against another limit."""
        return BudgetTable(self.table, self.fixed, limit, self.metric, self.reference_cost)

    def check_feasible(self) -> None:
        """Raise :class:`ConfigError` naming the smallest achievable cost when no configuration fits."""
        if self.min_total > self.ceiling:
            raise ConfigError(
                f"infeasible budget: {self.metric} limit {self.limit:.6g} "
                f"({self.limit / self.reference_cost:.4f} x the reference) is below the smallest achievable "
                f"{self.metric} {self.min_total:.6g} ({self.min_total / self.reference_cost:.4f} x the reference, "
                "every group at its cheapest candidate): raise the budget or add cheaper candidates")

    def total(self, choices: np.ndarray) -> float:
        """Total cost of a complete configuration."""
        return float(self.table[np.arange(len(choices)), choices].sum() + self.fixed)

    def fits(self, choices: np.ndarray) -> bool:
        """Whether a complete configuration is within the limit."""
        return self.total(choices) <= self.ceiling

    def lagrange_price(self, values: np.ndarray, iterations: int = 100) -> tuple[float, np.ndarray]:
        """The knapsack's price of cost in units of ``values`` [group, candidate] (lower is better), and the
        choices it prices in: the smallest μ >= 0 at which every group's argmin of values + μ x cost fits
        the limit (the dual price of the LP relaxation, by bisection), with those choices [group]."""
        def choices(mu: float) -> np.ndarray:
            return np.argmin(values + mu * self.table, axis=1)

        if self.fits(choices(0.0)):
            return 0.0, choices(0.0)
        gaps = np.diff(np.sort(self.table, axis=1), axis=1)
        gap = float(gaps[gaps > 0].min()) if (gaps > 0).any() else 1.0
        lo, hi = 0.0, 2.0 * float(np.ptp(values)) / gap + 1e-300  # at hi any saving beats any value: the cheapest
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if self.fits(choices(mid)) else (mid, hi)
        return hi, choices(hi)

    def random_feasible(self, rng: np.random.Generator) -> np.ndarray:
        """A random configuration within the limit: groups visited in random order, each taking a uniformly
        random candidate among those that still leave a feasible completion."""
        groups = len(self.table)
        choices = np.empty(groups, dtype=np.int64)
        spent, rest = self.fixed, float(self.cheapest.sum())
        for g in rng.permutation(groups):
            rest -= self.cheapest[g]
            allowed = np.flatnonzero(spent + self.table[g] + rest <= self.ceiling)
            choices[g] = rng.choice(allowed)
            spent += self.table[g, choices[g]]
        return choices

    def least_penalty(self, penalty: np.ndarray, exclude: Sequence[np.ndarray] = ()) -> np.ndarray:
        """The configuration within the limit with the least summed ``penalty`` [group, candidate], other than
        those in ``exclude``: the multiple-choice knapsack, solved to optimality (``scipy.optimize.milp``, HiGHS)."""
        choices = solve_assignment_ilp(penalty, self.table, self.ceiling - self.fixed, exclude)
        return choices if self.fits(choices) else self.enforce_limit(choices)  # the solver's tolerance

    def least_penalties(self, penalty: np.ndarray, k: int) -> np.ndarray:
        """The ``k`` configurations within the limit with the least summed ``penalty``, best first [k, G]
        (each solve excludes the ones before it; fewer when fewer fit)."""
        found = [self.least_penalty(penalty)]
        while len(found) < k:
            try:
                found.append(self.least_penalty(penalty, found))
            except ValueError:  # no other configuration fits
                break
        return np.stack(found)

    def feasible_actions(self, step: int, spent: float | np.ndarray,
                         ceiling: float | np.ndarray | None = None) -> np.ndarray:
        """Mask of candidates at ``step`` from which a completion within the limit exists (``spent`` and
        ``ceiling``, default this table's, may be [N, 1] columns of N episodes with their own limits)."""
        return spent + self.table[step] + self.cheapest_after[step] + self.fixed <= (
            self.ceiling if ceiling is None else ceiling)

    def project(self, step: int, index: np.ndarray, spent: np.ndarray, ceiling: float | np.ndarray | None = None
                ) -> np.ndarray:
        """A per-step wall: each of N episodes' candidate ``index`` [N] at ``step`` if a completion within the
        limit remains (:meth:`feasible_actions`; ``spent`` [N] excludes the fixed cost, ``ceiling`` scalar or
        [N]), else its most expensive candidate that does and costs no more (first on ties; the cheapest
        always does while the episode so far fits)."""
        index = np.asarray(index, dtype=np.int64)
        ceiling = self.ceiling if ceiling is None else np.reshape(ceiling, (-1, 1))
        feasible = self.feasible_actions(step, np.reshape(spent, (-1, 1)), ceiling)  # [N, C]
        row = self.table[step]
        allowed = feasible & (row[None, :] <= row[index][:, None])
        fallback = np.argmax(np.where(allowed, row[None, :], -np.inf), axis=1)
        return np.where(feasible[np.arange(len(index)), index], index, fallback)

    def enforce_limit(self, choices: np.ndarray) -> np.ndarray:
        """HAQ's action wall: sweep from the last group back, moving each to its next cheaper candidate,
        until the configuration fits (always possible once :meth:`check_feasible` passed)."""
        choices = choices.copy()
        while not self.fits(choices):
            changed = False
            for g in range(len(choices) - 1, -1, -1):
                row = self.table[g]
                cheaper = row < row[choices[g]]
                if cheaper.any():  # the most expensive of the cheaper candidates (first on ties)
                    choices[g] = int(np.argmax(np.where(cheaper, row, -np.inf)))
                    changed = True
                    if self.fits(choices):
                        return choices
            if not changed:
                break
        return choices



def assignment_constraints(cost: np.ndarray, capacity: float, extra_columns: int = 0) -> list[LinearConstraint]:
    """The multiple-choice knapsack's constraints on one-hot x [G * C] (``cost`` [G, C]): one choice per group,
    summed cost <= ``capacity``; ``extra_columns`` more variables after x take no part in them."""
    groups, candidates = cost.shape
    cost_scale = abs(capacity) or 1.0
    choose, spend = kron(eye(groups), np.ones((1, candidates))), csr_matrix(cost.reshape(1, -1) / cost_scale)
    if extra_columns:
        choose = hstack([choose, csr_matrix((groups, extra_columns))]).tocsr()
        spend = hstack([spend, csr_matrix((1, extra_columns))]).tocsr()
    return [LinearConstraint(choose, 1, 1), LinearConstraint(spend, -np.inf, capacity / cost_scale)]


def solve_assignment_ilp(penalty: np.ndarray, cost: np.ndarray, capacity: float,
                         exclude: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Choice per row of ``penalty`` [G, C] minimising the summed penalty with summed ``cost`` <= ``capacity``,
    other than the choice vectors in ``exclude`` (a no-good cut each: at most G - 1 of its choices)."""
    groups, candidates = penalty.shape
    scale = np.abs(penalty).max() or 1.0
    constraints = assignment_constraints(cost, capacity)
    if len(exclude):
        rows = np.stack([np.arange(groups) * candidates + np.asarray(e) for e in exclude])
        cuts = np.zeros((len(exclude), penalty.size))
        np.put_along_axis(cuts, rows, 1.0, axis=1)
        constraints.append(LinearConstraint(csr_matrix(cuts), -np.inf, groups - 1))
    # mip_rel_gap=0: the proven optimum, not HiGHS's default 1e-4 gap (the normalized score's 1.0 is this)
    result = milp(penalty.reshape(-1) / scale, constraints=constraints, integrality=np.ones(penalty.size),
                  bounds=Bounds(0, 1), options={"mip_rel_gap": 0.0})
    if result.x is None:
        raise ValueError(f"the ILP found no configuration within the budget: {result.message}")
    return np.asarray(result.x, dtype=np.float64).reshape(groups, candidates).argmax(axis=1)
