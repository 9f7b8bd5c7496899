"""What every search policy sees: a :class:`SearchContext` (problem, budget, counted exact oracle).

A policy is any callable ``search(ctx, seed) -> choices`` returning one candidate index per quantizer
group within ``ctx``'s budget. Baselines (``baselines/``), trained agents (``agents/``) and user
policies plug into the benchmark harness (:mod:`mpq_gym.bench`) through this one interface.
"""
from __future__ import annotations

import math
from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from mpq_gym.budget import Budget, BudgetTable
from mpq_gym.errors import MpqGymError
from mpq_gym.evaluate.sensitivity import SensitivityTable
from mpq_gym.evaluate.surrogate import Surrogate
from mpq_gym.problem import EvaluationPool, Problem
from mpq_gym.scores import ScoreScale, normalized_score, score_scale


class EvaluationBudgetExhausted(MpqGymError):
    """A policy asked for more exact evaluations than its budget allows."""


def choices_key(choices: Sequence[int]) -> tuple[int, ...]:
    """The hashable form of a configuration's candidate indices (how evaluations are counted and stored)."""
    return tuple(int(c) for c in choices)


class SearchContext:
    """One search: ``problem`` under ``budget``, with at most ``max_evaluations`` distinct exact evaluations.

    Exact quality is measured on ``split`` (default the problem's search split). Every distinct
    configuration a policy evaluates counts once, whether or not a cache already held its result, so
    counts compare across runs. Using :attr:`surrogate` charges its calibration evaluations separately
    (:attr:`surrogate_evaluations`), since several policies in one benchmark share one surrogate.
    """

    def __init__(self, problem: Problem, budget: Budget, max_evaluations: int | None = None,
                 split: str | None = None, pool: EvaluationPool | None = None) -> None:
        self.problem = problem
        self.pool = pool
        self.budget = budget
        self.budget_table: BudgetTable = problem.budget_table(budget)
        self.budget_table.check_feasible()
        self.max_evaluations = max_evaluations
        self.split = split or problem.split
        self.evaluated: dict[tuple[int, ...], float] = {}
        self.surrogate_evaluations = 0

    # -------------------------------------------------------------- the problem
    @property
    def n_groups(self) -> int:
        """Quantizer groups (one choice each)."""
        return len(self.problem.groups)

    @property
    def n_candidates(self) -> int:
        """Candidates per group."""
        return len(self.problem.candidates)

    @property
    def sensitivity(self) -> SensitivityTable:
        """The phase-1 table S[group, candidate] (output SQNR in dB; costs no exact evaluations)."""
        return self.problem.sensitivity

    @cached_property
    def surrogate(self) -> Surrogate:
        """The calibrated surrogate; charges its calibration points to :attr:`surrogate_evaluations`."""
        surrogate = self.problem.surrogate
        self.surrogate_evaluations = len(self.problem.surrogate_calibration_choices())
        return surrogate

    @property
    def score_scale(self) -> ScoreScale:
        """The normalized score's anchors under this budget (S(random), S(opt)); calibrates the surrogate
        once per problem if no policy has, without charging it to :attr:`surrogate_evaluations`."""
        return score_scale(self.problem, self.budget_table)

    def normalized_score(self, choices: Sequence[int]) -> float:
        """(S(choices) - S(random)) / (S(opt) - S(random)) with S the surrogate quality: 1 = optimal."""
        return normalized_score(self.problem, self.budget_table, choices)

    # -------------------------------------------------------------------- costs
    def total_cost(self, choices: Sequence[int]) -> float:
        """Cost of a configuration on the budget's metric."""
        return self.budget_table.total(np.asarray(choices, dtype=np.int64))

    def fits(self, choices: Sequence[int]) -> bool:
        """Whether a configuration is within the budget."""
        return self.budget_table.fits(np.asarray(choices, dtype=np.int64))

    def random_feasible(self, rng: np.random.Generator) -> np.ndarray:
        """A random configuration within the budget (:meth:`BudgetTable.random_feasible`)."""
        return self.budget_table.random_feasible(rng)

    def repair(self, choices: Sequence[int], rng: np.random.Generator) -> np.ndarray:
        """Bring a configuration within the budget by moving random groups to their next cheaper candidate."""
        choices = np.array(choices, dtype=np.int64)
        table = self.budget_table.table
        while not self.budget_table.fits(choices):
            current = table[np.arange(self.n_groups), choices]
            cheaper = table < current[:, None]
            movable = np.flatnonzero(cheaper.any(axis=1))
            g = rng.choice(movable)
            choices[g] = int(np.argmax(np.where(cheaper[g], table[g], -np.inf)))
        return choices

    # ------------------------------------------------------------------ quality
    @property
    def evaluations(self) -> int:
        """Distinct configurations evaluated exactly so far."""
        return len(self.evaluated)

    @property
    def remaining(self) -> float:
        """Exact evaluations left (``inf`` when unlimited)."""
        return math.inf if self.max_evaluations is None else self.max_evaluations - self.evaluations

    def quality(self, choices: Sequence[int]) -> float:
        """Exact quality of a configuration (counted once per distinct configuration)."""
        key = choices_key(choices)
        if key not in self.evaluated:
            if self.remaining <= 0:
                raise EvaluationBudgetExhausted(
                    f"exact-evaluation budget of {self.max_evaluations} is spent; check ctx.remaining before "
                    "evaluating, or raise max_evaluations")
            self.evaluated[key] = self.problem.quality(self.problem.config(key), self.split)
        return self.evaluated[key]

    def qualities(self, batch: Sequence[Sequence[int]]) -> list[float]:
        """Exact quality of several configurations (in parallel when the context has a pool), counted like
        :meth:`quality`; new configurations beyond the evaluation budget raise before any is evaluated."""
        keys = [choices_key(choices) for choices in batch]
        new = list(dict.fromkeys(k for k in keys if k not in self.evaluated))
        if len(new) > self.remaining:
            raise EvaluationBudgetExhausted(
                f"{len(new)} new configurations but only {self.remaining} of {self.max_evaluations} exact "
                "evaluations left; check ctx.remaining before evaluating")
        if self.pool is not None and len(new) > 1:
            self.evaluated.update(zip(new, self.pool.qualities(new, self.split)))
        for key in sorted(new):  # groups run in execution order: sorted, neighbours share the longest prefixes
            self.quality(key)
        return [self.evaluated[k] for k in keys]

    def affordable(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Mask over ``batch``: already evaluated, or new and within the remaining evaluations (in order)."""
        seen, mask = set(self.evaluated), []
        budget = self.remaining
        for choices in batch:
            key = choices_key(choices)
            if key not in seen and budget > 0:
                seen.add(key)
                budget -= 1
            mask.append(key in seen)
        return np.array(mask, dtype=bool)

    def evaluate_affordable(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Exact quality of the :meth:`affordable` part of ``batch`` (in parallel with a pool); ``-inf`` elsewhere."""
        mask = self.affordable(batch)
        out = np.full(len(batch), -np.inf)
        if mask.any():
            out[mask] = self.qualities([c for c, ok in zip(batch, mask) if ok])
        return out

    def rerank_exactly(self, candidates: np.ndarray, top_k: int | None = None) -> np.ndarray:
        """The best by exact quality of the ``top_k`` (default: as many as the evaluation budget allows)
        distinct configurations of ``candidates`` [N, G] within the budget, ranked by the surrogate."""
        unique = np.unique(np.asarray(candidates, dtype=np.int64), axis=0)
        unique = unique[[self.fits(c) for c in unique]]
        ranked = unique[np.argsort(-self.surrogate.predict(unique), kind="stable")]
        self.evaluate_affordable(ranked if top_k is None else ranked[:top_k])
        return self.best_evaluated()

    def best_evaluated(self) -> np.ndarray:
        """The best exactly evaluated configuration within the budget."""
        feasible = [(q, k) for k, q in self.evaluated.items() if self.fits(k)]
        if not feasible:
            raise MpqGymError("no configuration within the budget has been evaluated yet: evaluate one first")
        return np.array(max(feasible)[1], dtype=np.int64)


#: a search policy: (context, seed) -> one candidate index per group, within the budget
SearchFunction = Callable[[SearchContext, int], np.ndarray]
