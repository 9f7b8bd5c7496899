"""Uniform baseline: every layer at one candidate; the best exactly evaluated one that fits the budget."""
from __future__ import annotations

import numpy as np

from mpq_gym.search import SearchContext


def uniform_search(ctx: SearchContext, seed: int = 0) -> np.ndarray:
    """Evaluate each uniform configuration within the budget (widest first) and return the best."""
    fitting = [np.full(ctx.n_groups, c, dtype=np.int64) for c in range(ctx.n_candidates)]
    fitting = [c for c in fitting if ctx.fits(c)]
    if not fitting:
        raise ValueError(f"no uniform configuration fits the {ctx.budget.metric} budget "
                         f"({ctx.budget_table.limit / ctx.budget_table.reference_cost:.4f} x the reference); "
                         "raise the budget or add a narrower candidate")
    fitting.sort(key=ctx.total_cost, reverse=True)
    ctx.evaluate_affordable(fitting)
    return ctx.best_evaluated()
