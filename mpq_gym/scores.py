"""The normalized score: how far a configuration's surrogate quality goes from random toward the optimum.

``normalized = (S(config) - S(random)) / (S(opt) - S(random))``, where ``S`` is the calibrated surrogate's
quality, ``S(opt)`` the surrogate optimum within the budget and ``S(random)`` the mean over
:data:`RANDOM_SAMPLES` random feasible configurations (seed :data:`RANDOM_SEED`). 1.0 is optimal, 0 is
random: the RL-facing number, as human-normalized scores are on Atari. Exact test quality stays the
headline quality.

In surrogate mode the task is a multiple-choice knapsack: the surrogate is a monotone increasing function
of the summed phase-1 noise power, so the configuration with the least summed noise within the budget
(:meth:`~mpq_gym.budget.BudgetTable.least_penalty`, solved exactly) is the surrogate optimum.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mpq_gym.budget import BudgetTable
from mpq_gym.metrics import noise_power
from mpq_gym.problem import Problem

RANDOM_SAMPLES = 1000
RANDOM_SEED = 0

#: problem -> {(metric, limit): ScoreScale}
_scales: "weakref.WeakKeyDictionary[Problem, dict[tuple[str, float], ScoreScale]]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ScoreScale:
    """The two anchors of the normalized score on one (problem, budget)."""

    #: mean surrogate quality of random feasible configurations
    random: float
    #: surrogate quality of the optimum within the budget
    optimum: float
    #: the optimum's candidate indices
    optimum_choices: tuple[int, ...]

    def normalize(self, surrogate_quality: float | np.ndarray) -> float | np.ndarray:
        """(S - S(random)) / (S(opt) - S(random)); 1.0 where the two anchors coincide and S reaches them."""
        values = np.asarray(surrogate_quality, dtype=np.float64)
        span = self.optimum - self.random
        if span <= 1e-12:  # every feasible configuration is as good as the optimum (a loose budget)
            return np.where(values >= self.optimum - 1e-12, 1.0, 0.0)
        return (values - self.random) / span


def surrogate_optimum(problem: Problem, table: BudgetTable) -> np.ndarray:
    """The surrogate-optimal configuration within ``table``'s limit (the ILP's answer)."""
    return table.least_penalty(noise_power(problem.sensitivity.sqnr_db))


def score_scale(problem: Problem, table: BudgetTable) -> ScoreScale:
    """The anchors of ``problem`` under ``table``'s limit (computed once per limit and metric, then kept on
    the problem). Calibrates the surrogate if it is not yet (its exact evaluations, once per problem)."""
    cache = _scales.setdefault(problem, {})
    key = (table.metric, table.limit)
    if key not in cache:
        surrogate = problem.surrogate
        best = surrogate_optimum(problem, table)
        rng = np.random.default_rng(RANDOM_SEED)
        randoms = np.stack([table.random_feasible(rng) for _ in range(RANDOM_SAMPLES)])
        cache[key] = ScoreScale(random=float(surrogate.predict(randoms).mean()),
                                optimum=float(surrogate.predict(best)[0]),
                                optimum_choices=tuple(int(c) for c in best))
    return cache[key]


def normalized_score(problem: Problem, table: BudgetTable,
                     choices: Sequence[int] | np.ndarray) -> float | np.ndarray:
    """The normalized score of one configuration (or [batch] of them) under ``table``'s limit."""
    scale = score_scale(problem, table)
    values = scale.normalize(problem.surrogate.predict(np.asarray(choices, dtype=np.int64)))
    return float(values[0]) if np.ndim(choices) == 1 else values
