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
from pathlib import Path
from functools import partial
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

import mpq_gym  # noqa: F401  (registers the env ids)
from mpq_gym.bench.policies import get_policy
from mpq_gym.config import FP32, config_to_json
from mpq_gym.envs.budget import Budget
from mpq_gym.errors import ConfigError
from mpq_gym.problem import Problem
from mpq_gym.search import SearchContext

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


def make_problem(env_id: str, env_kwargs: dict[str, Any], progress: bool = True) -> tuple[Problem, str]:
    """The env's problem (its phase-1 table computed) and its budget metric."""
    try:
        env = gym.make(env_id, progress=progress, **env_kwargs).unwrapped
    except gym.error.Error as exc:
        raise ConfigError(f"{exc}; registered ids: {sorted(i for i in gym.registry if 'MixedPrecision' in i)}") from exc
    return env.problem, env.budget.metric


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
    search_quality = ctx.quality(choices) if (tuple(choices) in ctx.evaluated or ctx.remaining > 0) else float("nan")
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
    if spec.env_id not in gym.registry:
        raise ConfigError(f"unknown env id {spec.env_id!r}; registered ids: "
                          f"{sorted(i for i in gym.registry if 'MixedPrecision' in i)}")
    for name in spec.policies:
        get_policy(name)  # fail on a bad name before hours of work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(out)
    results = out / "results.csv"
    done = {(r["policy"], int(r["seed"]), float(r["budget"])) for r in read_results(results)}
    metric = {**gym.spec(spec.env_id).kwargs, **spec.env_kwargs}.get("budget_metric", "bops")
    cells = [dict(budget=Budget(metric, b), policy_name=p, seed=s, max_evaluations=spec.max_evaluations,
                  report_split=spec.report_split)
             for b in spec.budgets for p in spec.policies for s in (range(spec.seeds) if get_policy(p).stochastic else [0])]
    todo = [c for c in cells if (c["policy_name"], c["seed"], float(c["budget"].ratio)) not in done]
    bar = dict(desc="benchmark cells", total=len(todo), disable=not progress or not todo)
    if ray is None:
        problem, _ = make_problem(spec.env_id, spec.env_kwargs, progress)
        for cell in tqdm(todo, **bar):
            _append(results, {"env": spec.env_id, **run_cell(problem, **cell)})
        return results
    from mpq_gym.parallel import RayPool, problem_from_env
    problem = problem_from_env(spec.env_id, spec.env_kwargs, progress)
    with RayPool(partial(problem_from_env, spec.env_id, spec.env_kwargs), workers, ray, plugins) as pool:
        problem.pool = pool  # phase-1 rows and the surrogate's calibration points in parallel, once, here
        problem.surrogate  # noqa: B018  (the workers then find both in the shared caches)
        make_problem(spec.env_id, spec.env_kwargs, progress=False)  # the env's own checks of the kwargs
        for row in tqdm(pool.run_cells(todo), **bar):
            _append(results, {"env": spec.env_id, **row})
    return results
