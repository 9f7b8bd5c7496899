"""Random search: exact evaluation of random configurations within the budget."""
from __future__ import annotations

import numpy as np

from mpq_gym.search import SearchContext

DEFAULT_SAMPLES = 20


def random_search(ctx: SearchContext, seed: int = 0, samples: int = DEFAULT_SAMPLES) -> np.ndarray:
    """Evaluate ``samples`` random feasible configurations (fewer if the evaluation budget ends) and
    return the best."""
    rng = np.random.default_rng(seed)
    ctx.evaluate_affordable([ctx.random_feasible(rng) for _ in range(samples)])
    return ctx.best_evaluated()
