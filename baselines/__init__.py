"""Baseline search policies, each a :data:`mpq_gym.search.SearchFunction` ``(ctx, seed) -> choices``.

- :func:`uniform_search`: best uniform configuration within the budget;
- :func:`random_search`: exact evaluation of random feasible configurations;
- :func:`greedy_sqnr_search`: AIMET's phase-1 SQNR / cumulative-flip greedy search (budget target;
  :func:`greedy_accuracy_search`: accuracy target 1 point below FP32);
- :func:`evolutionary_search`: mutation + crossover inside the budget (surrogate or exact fitness);
- :func:`ilp_search`: HAWQ-V3-style ILP on the phase-1 noise, solved exactly with scipy's MILP.
"""
from mpq_gym.baselines.evolution import evolutionary_search
from mpq_gym.baselines.greedy_sqnr import flip_path, greedy_accuracy_search, greedy_sqnr_search
from mpq_gym.baselines.ilp import ilp_search, solve_assignment_ilp
from mpq_gym.baselines.random_search import random_search
from mpq_gym.baselines.uniform import uniform_search

__all__ = ["uniform_search", "random_search", "greedy_sqnr_search", "greedy_accuracy_search", "evolutionary_search",
           "ilp_search",
           "flip_path", "solve_assignment_ilp"]
