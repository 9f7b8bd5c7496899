"""One benchmark cell: a policy's search on a problem under a budget, scored as a results row."""
from __future__ import annotations

import json
import time
from typing import Any

import gymnasium as gym
import numpy as np

import mpq_gym  # noqa: F401  (registers the env ids)
from mpq_gym.bench.policies import get_policy
from mpq_gym.budget import Budget
from mpq_gym.config import FP32, config_to_json
from mpq_gym.cost import COST_METRICS
from mpq_gym.envs.env import problem_from_env
from mpq_gym.errors import MpqGymError
from mpq_gym.problem import EvaluationPool, Problem
from mpq_gym.search import SearchContext

CELL_COLUMNS = ("env", "policy", "seed", "budget", "budget_metric", "candidates", "quality", "search_quality",
                "normalized_score", "fp32_quality", "report_split", *COST_METRICS,
                *(f"{c}_ratio" for c in COST_METRICS), "within_budget", "exact_evaluations", "surrogate_evaluations",
                "wall_s", "choices", "config")
#: the columns of a results.csv: those of :func:`run_cell` (with the env), then where the row came from: the
#: suite and task (empty outside a suite) and the provenance as JSON (:func:`mpq_gym.provenance.provenance`
#: plus the suite's version and digest). Files written before these three columns still read and validate.
COLUMNS = (*CELL_COLUMNS, "suite", "task", "provenance")


def make_problem(env_id: str, env_kwargs: dict[str, Any], progress: bool = True,
                 pool: EvaluationPool | None = None) -> tuple[Problem, str]:
    """The env's problem (its phase-1 table computed, on ``pool`` when given) and its budget metric.

    The env is built on the problem, so its own checks of the episode kwargs run too.
    """
    problem = problem_from_env(env_id, env_kwargs, progress)
    problem.pool = pool
    env = gym.make(env_id, problem=problem, **env_kwargs).unwrapped
    return problem, env.budget.metric


def uniform_references(problem: Problem, metric: str, split: str) -> list[dict[str, Any]]:
    """Every candidate applied to every layer: its cost ratio on ``metric`` and its exact quality on ``split``
    (the reference points of the Pareto plot; reporting only, not counted against any search)."""
    out = []
    for candidate in problem.candidates:
        config = problem.uniform(candidate)
        out.append({"candidate": str(candidate), "cost_ratio": problem.cost_model.costs(config)[f"{metric}_ratio"],
                    "quality": problem.quality(config, split)})
    return out


def run_cell(problem: Problem, budget: Budget, policy_name: str, seed: int, max_evaluations: int | None,
             report_split: str) -> dict[str, Any]:
    """One search and its scores, as a results row (without the env column)."""
    policy = get_policy(policy_name)
    ctx = SearchContext(problem, budget, max_evaluations)
    start = time.perf_counter()
    choices = np.asarray(policy.search(ctx, seed), dtype=np.int64)
    if choices.shape != (ctx.n_groups,):
        raise MpqGymError(f"policy {policy_name!r} returned shape {choices.shape}; expected ({ctx.n_groups},)")
    search_quality = ctx.quality(choices) if ctx.affordable([choices])[0] else float("nan")
    wall = time.perf_counter() - start
    config = problem.config(choices)
    costs = problem.cost_model.costs(config)
    return {
        "policy": policy_name, "seed": seed, "budget": budget.ratio, "budget_metric": budget.metric,
        "candidates": ",".join(map(str, problem.candidates)),
        "quality": problem.quality(config, report_split), "search_quality": search_quality,
        "normalized_score": ctx.normalized_score(choices),
        "fp32_quality": problem.quality(problem.uniform(FP32), report_split),
        "report_split": report_split, **{c: costs[c] for c in COST_METRICS},
        **{f"{c}_ratio": costs[f"{c}_ratio"] for c in COST_METRICS}, "within_budget": ctx.fits(choices),
        "exact_evaluations": ctx.evaluations, "surrogate_evaluations": ctx.surrogate_evaluations, "wall_s": wall,
        "choices": " ".join(map(str, choices.tolist())), "config": json.dumps(config_to_json(config)),
    }
