"""How far the knapsack's LP price leaves a task from its optimum (docs/benchmarks.md, "A wall at every step").

Prints the price μ of ``dense_potential="lagrangian"`` (:meth:`~mpq_gym.budget.BudgetTable.lagrange_price`),
the normalized score of the configuration it prices in, and each group where that configuration differs from
the surrogate optimum (the ILP's), with the optimum's reduced cost there.

Example::

    python -m benchmarks.lagrange_gap --env MixedPrecision-MiniLM-v0 --env-kwargs candidates=expanded --budget 0.15
"""
from __future__ import annotations

import argparse
import sys

import gymnasium as gym
import numpy as np

import mpq_gym  # noqa: F401  (registers the ids)
from mpq_gym.cli.common import parse_env_kwargs
from mpq_gym.scores import score_scale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True)
    ap.add_argument("--env-kwargs", nargs="*", default=[])
    ap.add_argument("--budget", type=float, required=True)
    args = ap.parse_args(argv)
    env = gym.make(args.env, budget=args.budget, dense_reward=True, dense_potential="lagrangian",
                   **parse_env_kwargs(args.env_kwargs)).unwrapped
    table, problem = env.budget_table, env.problem
    scale = score_scale(problem, table)
    optimum = np.asarray(scale.optimum_choices)
    mu, priced = env.noise_price(table)
    reduced = env.reward_surrogate.noise + mu * table.table

    def normalized(choices: np.ndarray) -> float:
        return float(scale.normalize(float(env.reward_surrogate.predict(choices)[0])))

    print(f"μ {mu:.4g}; priced-in configuration: normalized {normalized(priced):.4f}, within budget "
          f"{table.fits(priced)}; optimum: {normalized(optimum):.4f}")
    for g in np.flatnonzero(priced != optimum):
        print(f"group {g} {problem.groups[g].name}: optimum {problem.candidates[optimum[g]]}, priced-in "
              f"{problem.candidates[priced[g]]}, reduced cost of the optimum's choice "
              f"{reduced[g, optimum[g]] - reduced[g].min():.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
