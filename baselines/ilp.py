"""ILP baseline (HAWQ-V3 style): minimise summed per-group sensitivity subject to the budget, exactly.

HAWQ-V3 weighs each layer's choice by a Hessian-trace x quantization-perturbation term; here the term
is the measured output noise power of the phase-1 table, 10^(-S[g, c] / 10), which also covers
activation quantization and needs no second-order information. Minimising its sum is minimising the
surrogate's predicted output noise, solved to optimality with ``scipy.optimize.milp`` (HiGHS).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import kron, eye, csr_matrix

from mpq_gym.search import SearchContext
from mpq_gym.metrics import noise_power


def solve_assignment_ilp(penalty: np.ndarray, cost: np.ndarray, capacity: float) -> np.ndarray:
    """Choice per row of ``penalty`` [G, C] minimising the summed penalty with summed ``cost`` <= ``capacity``."""
    groups, candidates = penalty.shape
    scale = np.abs(penalty).max() or 1.0
    one_hot = LinearConstraint(kron(eye(groups), np.ones((1, candidates))), 1, 1)
    cost_scale = abs(capacity) or 1.0
    within = LinearConstraint(csr_matrix(cost.reshape(1, -1) / cost_scale), -np.inf, capacity / cost_scale)
    result = milp(penalty.reshape(-1) / scale, constraints=[one_hot, within], integrality=np.ones(penalty.size),
                  bounds=Bounds(0, 1))
    if result.x is None:
        raise ValueError(f"the ILP found no configuration within the budget: {result.message}")
    return np.asarray(result.x, dtype=np.float64).reshape(groups, candidates).argmax(axis=1)


def ilp_search(ctx: SearchContext, seed: int = 0) -> np.ndarray:
    """The configuration with the least summed phase-1 noise power within the budget (no exact evaluations)."""
    noise = noise_power(ctx.sensitivity.sqnr_db)
    choices = solve_assignment_ilp(noise, ctx.budget_table.table, ctx.budget_table.ceiling - ctx.budget_table.fixed)
    if not ctx.fits(choices):  # the solver's feasibility tolerance: step down to be strictly within
        choices = ctx.budget_table.enforce_limit(choices)
    return choices
