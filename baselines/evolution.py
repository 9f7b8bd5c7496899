"""Evolutionary search (HAQ/APQ style): a population evolved by mutation and crossover inside the budget.

Fitness is the calibrated surrogate by default (APQ evolves against a predictor), with the final
``top_k`` candidates re-ranked by exact evaluation; ``fitness="exact"`` evaluates every new individual
exactly until the evaluation budget is spent.
"""
from __future__ import annotations

import numpy as np

from mpq_gym.search import SearchContext

FITNESS = ("surrogate", "exact")


def _offspring(parents: np.ndarray, n: int, n_candidates: int, mutation_rate: float,
               rng: np.random.Generator) -> np.ndarray:
    """Half mutants of random parents, half uniform crossovers of two random parents."""
    n_mutants = n // 2
    mutants = parents[rng.integers(len(parents), size=n_mutants)].copy()
    flip = rng.uniform(size=mutants.shape) < mutation_rate
    mutants[flip] = rng.integers(n_candidates, size=int(flip.sum()))
    a = parents[rng.integers(len(parents), size=n - n_mutants)]
    b = parents[rng.integers(len(parents), size=n - n_mutants)]
    children = np.where(rng.uniform(size=a.shape) < 0.5, a, b)
    return np.concatenate([mutants, children])


def evolutionary_search(ctx: SearchContext, seed: int = 0, population: int = 50, generations: int = 30,
                        parent_fraction: float = 0.25, mutation_rate: float = 0.1, fitness: str = "surrogate",
                        top_k: int = 5) -> np.ndarray:
    """Evolve ``population`` configurations for ``generations``; return the best by exact quality."""
    if fitness not in FITNESS:
        raise ValueError(f"fitness must be one of {FITNESS}, got {fitness!r}")
    rng = np.random.default_rng(seed)

    def score(pop: np.ndarray) -> np.ndarray:
        return ctx.surrogate.predict(pop) if fitness == "surrogate" else ctx.evaluate_affordable(pop)

    pop = np.stack([ctx.random_feasible(rng) for _ in range(population)])
    fit = score(pop)
    n_parents = max(2, int(round(parent_fraction * population)))
    for _ in range(generations):
        if fitness == "exact" and ctx.remaining <= 0:
            break
        order = np.argsort(-fit, kind="stable")
        parents = pop[order[:n_parents]]
        children = _offspring(parents, population - n_parents, ctx.n_candidates, mutation_rate, rng)
        children = np.stack([ctx.repair(c, rng) for c in children])
        pop = np.concatenate([parents, children])
        fit = np.concatenate([fit[order[:n_parents]], score(children)])
    if fitness == "exact":
        return ctx.best_evaluated()
    return ctx.rerank_exactly(pop, top_k)
