"""The normalized score: its optimum is the true optimum (brute force), random is 0 on average."""
import itertools

import numpy as np

from mpq_gym.budget import Budget, BudgetTable
from mpq_gym.problem import ProblemSpec
from mpq_gym.scores import RANDOM_SAMPLES, score_scale
from mpq_gym.search import SearchContext


def test_least_penalty_is_the_brute_force_optimum():
    rng = np.random.default_rng(0)
    for _ in range(100):
        penalty = np.sort(rng.uniform(0, 1, (6, 3)), axis=1)[:, ::-1].copy()
        cost = np.sort(rng.uniform(1, 5, (6, 3)), axis=1)
        low, high = cost.min(1).sum(), cost.max(1).sum()
        table = BudgetTable(cost, 0.0, float(low + rng.uniform() * (high - low)), "bops", 1.0)
        best = min(penalty[np.arange(6), c].sum() for c in itertools.product(range(3), repeat=6)
                   if table.fits(np.array(c)))
        got = table.least_penalty(penalty)
        assert table.fits(got) and penalty[np.arange(6), got].sum() <= best + 1e-12


def test_normalized_score_is_one_at_the_optimum_and_zero_for_random_on_average():
    problem = ProblemSpec("digits_cnn", candidates="W2A8,W4A8,W8A8").build(progress=False)
    ctx = SearchContext(problem, Budget("bops", 0.3))
    scale = ctx.score_scale
    assert scale is score_scale(problem, ctx.budget_table)  # computed once per (problem, budget)
    every = [np.array(c) for c in itertools.product(range(3), repeat=ctx.n_groups) if ctx.fits(c)]
    scores = np.array([ctx.normalized_score(c) for c in every])
    assert scores.max() <= 1.0 + 1e-12 and ctx.normalized_score(scale.optimum_choices) == 1.0
    rng = np.random.default_rng(0)
    randoms = np.stack([ctx.random_feasible(rng) for _ in range(RANDOM_SAMPLES)])
    assert abs(float(np.mean(ctx.normalized_score(randoms)))) < 1e-9  # the same draws define S(random)
