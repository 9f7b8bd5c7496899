"""``mpq-gym bench``: compare policies on one env across budgets and seeds, or on a named suite
(``--suite mpqbench-v1-lite``: its tasks fix the envs, budgets, seeds, evaluation allowance, report
split and track; one sub-folder per task, then the cross-task scores in suite.md). ``--device`` is where
the network runs: recorded in each row's provenance, not in ``bench.json``, so a folder resumes and
``mpq-gym validate`` replays on any device."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from mpq_gym.bench.policies import BUILTIN, import_plugin
from mpq_gym.bench.report import write_report
from mpq_gym.bench.runner import REPORT_SPLITS, BenchSpec, run_benchmark
from mpq_gym.bench.suite_runner import plan_suite, run_suite, write_suite_report
from mpq_gym.bench.suites import SUITES, get_suite
from mpq_gym.cli.common import (add_device_arg, env_kwargs_and_device, make_parser, names, positive_floats,
                                positive_int, print_json, run_cli)
from mpq_gym.errors import ConfigError
from mpq_gym.tracking import MlflowTracker

#: options a suite fixes (None = not given), with their defaults outside a suite
SUITE_FIXED = {"budgets": [0.25, 0.375, 0.5], "seeds": 5, "max_evaluations": None, "report_split": "test"}


def log_to_mlflow(uri: str, spec: BenchSpec, paths: dict[str, Path]) -> None:
    """One MLflow run per benchmark folder: the spec, each cell's aggregates, the table, CSV and plot."""
    summary = json.loads(paths["summary"].read_text())
    with MlflowTracker(uri, f"mpq-gym-bench/{spec.env_id}", paths["table"].parent.name, asdict(spec)) as tracker:
        for cell in summary:
            prefix = f"{cell['policy']}/r{cell['budget']:g}"
            tracker.log_metrics({f"{prefix}/{k}": cell[k] for k in ("quality_iqm", "ci_low", "ci_high", "bops_ratio",
                                                                     "exact_evaluations", "wall_s")})
        for path in (*paths.values(), paths["table"].parent / "results.csv"):
            tracker.log_artifact(path)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("bench", __doc__, "--env MixedPrecision-DigitsCNN-v0 --policies uniform,greedy,ilp "
                         "--budgets 0.375 --seeds 2 --out runs/bench_digits",
                         "--suite mpqbench-v1-lite --policies uniform,random,greedy,ilp,evolution,ppo --out runs/lite")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--env", help="env id, e.g. MixedPrecision-EfficientNetLite0-v0")
    target.add_argument("--suite", choices=sorted(SUITES),
                        help="a named MPQ-Bench suite (it fixes envs, budgets, seeds, allowance, split)")
    parser.add_argument("--tasks", type=names, default=None,
                        help="with --suite: run only these tasks (comma-separated)")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="K=V",
                        help="env keyword arguments, e.g. candidates=expanded sensitivity_images=64 "
                             "(with --suite only data_dir=...)")
    parser.add_argument("--policies", type=names, default="uniform,greedy,ilp,evolution,random",
                        help=f"comma-separated; built-in: {','.join(BUILTIN)}; or package.module:function")
    parser.add_argument("--plugin", action="append", default=[], help="module to import first (registers policies)")
    parser.add_argument("--budgets", type=positive_floats, default=None,
                        help="budget ratios of the reference (W8A16) cost (default 0.25,0.375,0.5)")
    parser.add_argument("--seeds", type=positive_int, default=None,
                        help="seeds 0..N-1 for stochastic policies (default 5)")
    parser.add_argument("--max-evaluations", type=positive_int, default=None,
                        help="exact evaluations allowed per search")
    parser.add_argument("--report-split", default=None, choices=REPORT_SPLITS,
                        help="held-out split the table reports (default test)")
    parser.add_argument("--out", required=True, help="results folder (reruns resume in it)")
    parser.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                        help="also log to MLflow: local SQLite store runs/mlflow.db, or the given store / server URI")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run the cells in parallel on Ray: a local instance, or the cluster at ADDRESS")
    parser.add_argument("--workers", type=positive_int, default=2, help="Ray workers (one CPU each)")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --suite: validate every task's kwargs and weights and print the plan; run nothing")
    add_device_arg(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    for module in args.plugin:
        import_plugin(module)
    if args.suite:
        return _run_suite(args)
    if args.tasks or args.dry_run:
        raise ConfigError("--tasks and --dry-run apply to a suite; give --suite NAME too, or drop them")
    fixed = {k: SUITE_FIXED[k] if getattr(args, k) is None else getattr(args, k) for k in SUITE_FIXED}
    kwargs, device = env_kwargs_and_device(args)
    spec = BenchSpec(args.env, kwargs, args.policies, fixed["budgets"], fixed["seeds"], fixed["max_evaluations"],
                     fixed["report_split"])
    results = run_benchmark(spec, args.out, progress=not args.quiet, ray=args.ray, workers=args.workers,
                            plugins=args.plugin, device=device)
    paths = write_report(results)
    if args.mlflow is not None:
        log_to_mlflow(args.mlflow, spec, paths)
    print(paths["table"].read_text())
    print(f"results: {results}\nplot: {paths['plot']}\nsummary: {paths['summary']}")
    return 0


def _run_suite(args) -> int:
    """``--suite``: every (selected) task in its sub-folder of ``--out``, then the cross-task report."""
    given = sorted(f"--{k.replace('_', '-')}" for k in SUITE_FIXED if getattr(args, k) is not None)
    if given:
        raise ConfigError(f"suite {args.suite} fixes {', '.join(given)}; drop them (or run --env without --suite)")
    suite = get_suite(args.suite)
    if args.dry_run:
        plan = plan_suite(suite, args.policies, args.tasks)
        print_json({**suite.identity(), "policies": args.policies, "tasks": plan,
                    "cells": sum(t["cells"] for t in plan)})
        return 0 if all(t["weights"] == "ok" for t in plan) else 1
    overrides, device = env_kwargs_and_device(args)
    results = run_suite(suite, args.policies, args.out, args.tasks, overrides, progress=not args.quiet, ray=args.ray,
                        workers=args.workers, plugins=args.plugin, device=device)
    paths = write_suite_report(args.out, suite)
    if args.mlflow is not None:
        for path in results.values():
            log_to_mlflow(args.mlflow, BenchSpec.load(path.parent), {"summary": path.parent / "summary.json",
                                                                     "table": path.parent / "results.md",
                                                                     "plot": path.parent / "pareto.png"})
    print(paths["table"].read_text())
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


if __name__ == "__main__":
    run_cli(main)
