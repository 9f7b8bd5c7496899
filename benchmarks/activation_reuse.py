"""Reused activations in exact evaluation: the same searches with stage-input reuse off and on.

Each search runs twice in this process on one problem, first with reuse off (``StageInputCache`` of 0
bytes), then on, each time with an empty in-memory result store so no evaluation is memoised across the
runs. Reported: wall time of each, the speed-up, whether both runs chose the same configuration with the
same exact qualities, the reuse hits, and the peak RSS of the whole process.

    python -m benchmarks.activation_reuse --out docs/data/activation_reuse.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.common import peak_rss_gb, print_report
from mpq_gym.baselines.evolution import evolutionary_search
from mpq_gym.baselines.greedy_sqnr import flip_path, greedy_sqnr_search
from mpq_gym.bench.cells import make_problem
from mpq_gym.budget import Budget
from mpq_gym.evaluate.exact import StageInputCache, reuse_bytes
from mpq_gym.evaluate.store import ResultStore
from mpq_gym.problem import Problem
from mpq_gym.search import SearchContext

MODULE = "benchmarks.activation_reuse"


def _greedy_binary(ctx: SearchContext) -> np.ndarray:
    return greedy_sqnr_search(ctx, 0, accuracy_drop=1.0, method="binary")


def _greedy_sequential(ctx: SearchContext, steps: int) -> np.ndarray:
    """The first ``steps`` points of greedy's path, one flip at a time (AIMET's sequential search)."""
    path = flip_path(np.asarray(ctx.sensitivity.sqnr_db, dtype=np.float64), ctx.budget_table.table)
    for point in path[:steps]:
        ctx.quality(point)
    return path[min(steps, len(path)) - 1]


def _evolution(ctx: SearchContext) -> np.ndarray:
    return evolutionary_search(ctx, 0, population=30, fitness="exact")


def _uniform_sweep(ctx: SearchContext) -> np.ndarray:
    for c in range(ctx.n_candidates):
        ctx.quality([c] * ctx.n_groups)
    return np.full(ctx.n_groups, ctx.n_candidates - 1)


def timed(problem: Problem, budget: Budget, search: Callable[[SearchContext], np.ndarray], reuse: bool,
          max_evaluations: int | None) -> dict:
    """One search with reuse on or off, from an empty result store; its time, choice and qualities."""
    evaluator = problem.evaluator
    evaluator.store = ResultStore(None)
    evaluator.stage_inputs = StageInputCache(reuse_bytes() if reuse else 0)
    ctx = SearchContext(problem, budget, max_evaluations)
    start = time.perf_counter()
    choices = search(ctx)
    return {"seconds": time.perf_counter() - start, "choices": choices.tolist(), "evaluations": ctx.evaluations,
            "qualities": [ctx.evaluated[k] for k in sorted(ctx.evaluated)],
            "hits": evaluator.stage_inputs.hits, "misses": evaluator.stage_inputs.misses}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="MixedPrecision-EfficientNetLite0-v0")
    parser.add_argument("--candidates", default="hardware")
    parser.add_argument("--budget", type=float, default=0.375)
    parser.add_argument("--sensitivity-images", type=int, default=64)
    parser.add_argument("--evolution-evaluations", type=int, default=60)
    parser.add_argument("--sequential-steps", type=int, default=12)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    problem, metric = make_problem(args.env, {"candidates": args.candidates,
                                              "sensitivity_images": args.sensitivity_images}, progress=False)
    problem.evaluator.progress = False
    problem.sensitivity  # noqa: B018 (phase 1 before any timing)
    problem.evaluator.fp32_outputs("search")
    budget = Budget(metric, args.budget)
    searches = {
        "greedy, binary search on its path (1 point of FP32)": (_greedy_binary, None),
        f"greedy, its path one flip at a time ({args.sequential_steps} points)":
            (lambda ctx: _greedy_sequential(ctx, args.sequential_steps), None),
        f"evolution, exact fitness (30 individuals, {args.evolution_evaluations} evaluations)":
            (_evolution, args.evolution_evaluations),
        "uniform sweep": (_uniform_sweep, None),
    }
    results = []
    for name, (search, limit) in searches.items():
        off = timed(problem, budget, search, False, limit)
        on = timed(problem, budget, search, True, limit)
        results.append({"search": name, "off": off, "on": on, "speedup": off["seconds"] / on["seconds"],
                        "same": off["choices"] == on["choices"] and off["qualities"] == on["qualities"]})
        print(f"{name}: {off['seconds']:.1f} s -> {on['seconds']:.1f} s", flush=True)
    rows = [[r["search"], r["off"]["evaluations"], f"{r['off']['seconds']:.1f}", f"{r['on']['seconds']:.1f}",
             f"{r['speedup']:.2f}x", r["on"]["hits"], "yes" if r["same"] else "NO"] for r in results]
    print_report(f"Reused activations, {args.env} {args.candidates} r = {args.budget}, search split "
                 f"({len(problem.workload.split('search'))} samples), reuse budget {reuse_bytes() / 2**30:.1f} GiB",
                 ["search", "exact evaluations", "reuse off (s)", "reuse on (s)", "speed-up", "reuse hits",
                  "same results"], rows, started, MODULE, argv)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"results": results, "peak_rss_gb": peak_rss_gb(),
                                        "chain_stages": len(problem.evaluator.chain),
                                        "total_seconds": time.perf_counter() - started}, indent=1))


if __name__ == "__main__":
    main()
