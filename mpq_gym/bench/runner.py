"""Run policies x budgets x seeds on one env's problem and append every result to ``results.csv``.

Each (budget, policy, seed) cell gets a fresh :class:`~mpq_gym.search.SearchContext`; its chosen
configuration is scored exactly on the search split (counted) and on the held-out ``report_split``
(not counted: reporting only). Rows are written as each cell finishes, and a rerun with the same
``out`` skips finished cells, so an interrupted benchmark resumes where it stopped.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

import mpq_gym  # noqa: F401  (registers the env ids)
from mpq_gym.bench.policies import get_policy
from mpq_gym.config import FP32, config_to_json
from mpq_gym.envs.budget import Budget
from mpq_gym.envs.env import PROBLEM_KWARGS, problem_from_env
from mpq_gym.envs.registration import require_env_id
from mpq_gym.errors import ConfigError
from mpq_gym.problem import Problem
from mpq_gym.search import SearchContext

if TYPE_CHECKING:
    from mpq_gym.parallel import RayPool

COST_COLUMNS = ("size_bits", "bops", "latency", "energy")
COLUMNS = ("env", "policy", "seed", "budget", "budget_metric", "candidates", "quality", "search_quality",
           "fp32_quality", "report_split", *COST_COLUMNS, *(f"{c}_ratio" for c in COST_COLUMNS),
           "within_budget", "exact_evaluations", "surrogate_evaluations", "wall_s", "choices", "config")


@dataclass
class BenchSpec:
    """What to benchmark (stored as ``bench.json`` beside the results, and used by ``validate``)."""

    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    policies: list[str] = field(default_factory=lambda: ["uniform", "greedy", "ilp", "evolution", "random"])
    budgets: list[float] = field(default_factory=lambda: [0.25, 0.375, 0.5])
    seeds: int = 5
    max_evaluations: int | None = None
    report_split: str = "test"

    def save(self, out: Path) -> None:
        """Write ``bench.json``; refuse to mix with a different spec already in ``out``."""
        path = out / "bench.json"
        mine = asdict(self)
        if path.exists():
            old = json.loads(path.read_text())
            same = {k: old.get(k) for k in ("env_id", "env_kwargs", "report_split", "max_evaluations")}
            if same != {k: mine[k] for k in same}:
                raise ConfigError(f"{out} holds a benchmark of a different problem ({same}); use a new --out")
            mine["policies"] = sorted(set(old["policies"]) | set(self.policies))
            mine["budgets"] = sorted(set(old["budgets"]) | set(self.budgets))
            mine["seeds"] = max(old["seeds"], self.seeds)
        path.write_text(json.dumps(mine, indent=2))

    @classmethod
    def load(cls, out: Path) -> "BenchSpec":
        """Read ``bench.json`` from a results folder."""
        path = Path(out) / "bench.json"
        if not path.exists():
            raise ConfigError(f"{path} is missing: is {out} a folder written by `python -m mpq_gym.bench`?")
        return cls(**json.loads(path.read_text()))


def make_problem(env_id: str, env_kwargs: dict[str, Any], progress: bool = True,
                 pool: RayPool | None = None) -> tuple[Problem, str]:
    """The env's problem (its phase-1 table computed, on ``pool`` when given) and its budget metric.

    The env is built on the problem, so its own checks of the episode kwargs run too.
    """
    problem = problem_from_env(env_id, env_kwargs, progress)
    problem.pool = pool
    episode_kwargs = {k: v for k, v in env_kwargs.items() if k not in PROBLEM_KWARGS}
    env = gym.make(env_id, problem=problem, **episode_kwargs).unwrapped
    return problem, env.budget.metric


def read_results(path: Path) -> list[dict[str, str]]:
    """Rows of a results.csv (empty when absent)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _append(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def run_cell(problem: Problem, budget: Budget, policy_name: str, seed: int, max_evaluations: int | None,
             report_split: str) -> dict[str, Any]:
    """One search and its scores, as a results row (without the env column)."""
    policy = get_policy(policy_name)
    ctx = SearchContext(problem, budget, max_evaluations)
    start = time.perf_counter()
    choices = np.asarray(policy.search(ctx, seed), dtype=np.int64)
    if choices.shape != (ctx.n_groups,):
        raise ValueError(f"policy {policy_name!r} returned shape {choices.shape}; expected ({ctx.n_groups},)")
    search_quality = ctx.quality(choices) if ctx.affordable([choices])[0] else float("nan")
    wall = time.perf_counter() - start
    config = problem.config(choices)
    costs = problem.cost_model.costs(config)
    return {
        "policy": policy_name, "seed": seed, "budget": budget.ratio, "budget_metric": budget.metric,
        "candidates": ",".join(map(str, problem.candidates)),
        "quality": problem.quality(config, report_split), "search_quality": search_quality,
        "fp32_quality": problem.quality(problem.uniform(FP32), report_split),
        "report_split": report_split, **{c: costs[c] for c in COST_COLUMNS},
        **{f"{c}_ratio": costs[f"{c}_ratio"] for c in COST_COLUMNS}, "within_budget": ctx.fits(choices),
        "exact_evaluations": ctx.evaluations, "surrogate_evaluations": ctx.surrogate_evaluations, "wall_s": wall,
        "choices": " ".join(map(str, choices.tolist())), "config": json.dumps(config_to_json(config)),
    }


def run_benchmark(spec: BenchSpec, out: str | Path, progress: bool = True, ray: str | None = None, workers: int = 2,
                  plugins: Sequence[str] = ()) -> Path:
    """Run every unfinished cell of ``spec``; returns the path of ``results.csv``.

    ``ray``: ``None`` runs the cells one after another; ``""`` on ``workers`` local Ray workers; an
    address on that Ray cluster. Cells are deterministic, so both give the same rows (in another order).
    """
    require_env_id(spec.env_id)
    for name in spec.policies:
        get_policy(name)  # fail on a bad name before hours of work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(out)
    results = out / "results.csv"
    if ray is None:
        problem, metric = make_problem(spec.env_id, spec.env_kwargs, progress)
        for cell in tqdm(_todo(spec, metric, results), desc="benchmark cells", disable=not progress):
            _append(results, {"env": spec.env_id, **run_cell(problem, **cell)})
        return results
    from mpq_gym.parallel import RayPool
    with RayPool(partial(problem_from_env, spec.env_id, spec.env_kwargs), workers, ray, plugins) as pool:
        # phase-1 rows and the surrogate's calibration points in parallel, once, here; the workers
        # then find both in the shared caches
        problem, metric = make_problem(spec.env_id, spec.env_kwargs, progress, pool)
        problem.surrogate  # noqa: B018
        todo = _todo(spec, metric, results)
        for row in tqdm(pool.run_cells(todo), desc="benchmark cells", total=len(todo), disable=not progress):
            _append(results, {"env": spec.env_id, **row})
    return results


def _todo(spec: BenchSpec, metric: str, results: Path) -> list[dict[str, Any]]:
    """The (budget, policy, seed) cells of ``spec`` not yet in ``results``, as :func:`run_cell` kwargs."""
    done = {(r["policy"], int(r["seed"]), float(r["budget"])) for r in read_results(results)}
    return [dict(budget=Budget(metric, b), policy_name=p, seed=s, max_evaluations=spec.max_evaluations,
                 report_split=spec.report_split)
            for b in spec.budgets for p in spec.policies
            for s in (range(spec.seeds) if get_policy(p).stochastic else [0]) if (p, s, float(b)) not in done]
