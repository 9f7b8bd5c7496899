"""CLADO-style baseline: the ILP extended with measured pairwise interactions between adjacent groups.

CLADO (Deng et al., "Mixed-precision quantization with cross-layer dependencies") shows that the
independence assumption behind the ILP leads to sub-optimal choices and adds measured pairwise terms to
the objective. Here the terms are label-free, in the same noise-power units as phase 1
(:mod:`mpq_gym.evaluate.interactions`): minimise

    sum_g n[g, c_g] + sum_(g, h) I[g, h, c_g, c_h]    subject to the budget,

solved to optimality with ``scipy.optimize.milp``: one-hot x[g, c] as in the ILP, and per adjacent pair a
y[p, c, d] in [0, 1] whose row and column sums equal x[g, :] and x[h, :] (the exact linearisation of the
product for one-hot x). Measuring the pairs costs (G - 1) x C^2 phase-1 cells, cached like phase 1.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix

from mpq_gym.budget import BudgetTable, assignment_constraints
from mpq_gym.evaluate.interactions import PairwiseTable
from mpq_gym.metrics import noise_power
from mpq_gym.search import SearchContext


def solve_pairwise_ilp(single: np.ndarray, pairs: list[tuple[int, int]], interactions: np.ndarray,
                       table: BudgetTable) -> np.ndarray:
    """The choice per group minimising summed ``single`` [G, C] plus ``interactions`` [P, C, C] of the chosen
    pairs, within ``table``'s limit."""
    groups, cands = single.shape
    n_x, n_y = groups * cands, len(pairs) * cands * cands
    constraints = assignment_constraints(table.table, table.ceiling - table.fixed, extra_columns=n_y)
    rows, cols, vals = [], [], []
    for p, (g, h) in enumerate(pairs):  # sum_d y[p, c, d] = x[g, c];  sum_c y[p, c, d] = x[h, d]
        base = n_x + p * cands * cands
        for c in range(cands):
            r = 2 * p * cands + c
            rows += [r] * (cands + 1)
            cols += [base + c * cands + d for d in range(cands)] + [g * cands + c]
            vals += [1.0] * cands + [-1.0]
            r = (2 * p + 1) * cands + c
            rows += [r] * (cands + 1)
            cols += [base + e * cands + c for e in range(cands)] + [h * cands + c]
            vals += [1.0] * cands + [-1.0]
    if pairs:
        marginals = csr_matrix((vals, (rows, cols)), shape=(2 * len(pairs) * cands, n_x + n_y))
        constraints.append(LinearConstraint(marginals, 0, 0))
    objective = np.concatenate([single.reshape(-1), interactions.reshape(-1)])
    scale = np.abs(objective).max() or 1.0
    result = milp(objective / scale, constraints=constraints,
                  integrality=np.concatenate([np.ones(n_x), np.zeros(n_y)]), bounds=Bounds(0, 1),
                  options={"mip_rel_gap": 0.0})
    if result.x is None:
        raise ValueError(f"the pairwise ILP found no configuration within the budget: {result.message}")
    choices = result.x[:n_x].reshape(groups, cands).argmax(axis=1)
    return choices if table.fits(choices) else table.enforce_limit(choices)  # the solver's tolerance


def clado_search(ctx: SearchContext, seed: int = 0) -> np.ndarray:
    """The configuration with the least phase-1 noise plus measured adjacent-pair interactions (no exact
    evaluations; the pairs are measured once per problem and cached)."""
    pairwise: PairwiseTable = ctx.problem.pairwise
    single = noise_power(ctx.sensitivity.sqnr_db)
    return solve_pairwise_ilp(single, pairwise.pairs, pairwise.interactions(ctx.sensitivity), ctx.budget_table)
