"""ILP baseline (HAWQ-V3 style): minimise summed per-group sensitivity subject to the budget, exactly.

HAWQ-V3 weighs each layer's choice by a Hessian-trace x quantization-perturbation term; here the term
is the measured output noise power of the phase-1 table, 10^(-S[g, c] / 10), which also covers
activation quantization and needs no second-order information. Minimising its sum is minimising the
surrogate's predicted output noise, solved to optimality with ``scipy.optimize.milp`` (HiGHS).
"""
from __future__ import annotations

import math

import numpy as np

from mpq_gym.budget import solve_assignment_ilp  # noqa: F401  (re-exported: the solver lives with the budget)
from mpq_gym.search import SearchContext
from mpq_gym.metrics import noise_power

#: re-ranked configurations when the evaluation budget is unlimited
MAX_RERANK = 16


def ilp_search(ctx: SearchContext, seed: int = 0) -> np.ndarray:
    """The configuration with the least summed phase-1 noise power within the budget (no exact evaluations)."""
    return ctx.budget_table.least_penalty(noise_power(ctx.sensitivity.sqnr_db))


def ilp_rerank_search(ctx: SearchContext, seed: int = 0, top_k: int | None = None) -> np.ndarray:
    """The best by exact quality of the ``top_k`` least-noise configurations within the budget (the ILP's
    optimum and the next best knapsack solutions; default: as many as the evaluation budget allows)."""
    if top_k is None:
        top_k = MAX_RERANK if math.isinf(ctx.remaining) else ctx.remaining
    k = max(1, int(top_k))
    return ctx.rerank_exactly(ctx.budget_table.least_penalties(noise_power(ctx.sensitivity.sqnr_db), k))
