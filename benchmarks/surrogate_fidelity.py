"""Surrogate fidelity: Kendall τ between surrogate and exact quality over random configurations.

``python -m benchmarks.surrogate_fidelity --workload efficientnet_lite0 --candidates expanded``
Random configurations are *graded*: each draws a rate p ~ U(0, 1) and quantizes each group to a
uniformly random candidate with probability p (else the widest), so the sample spans near-FP32 to
fully mixed; the surrogate is calibrated on different configurations than it is tested on.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau
from tqdm.auto import tqdm

from benchmarks.common import peak_rss_gb, reproduce_command
from mpq_gym.cli.common import add_workload_args, print_json, run_cli, workload_from_args
from mpq_gym.problem import Problem, graded_random_choices


def _plot(path: Path, predicted: np.ndarray, exact: np.ndarray, metric: str, tau: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(exact, predicted, s=14)
    lo, hi = min(exact.min(), predicted.min()), max(exact.max(), predicted.max())
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax.set_xlabel(f"exact {metric}")
    ax.set_ylabel(f"surrogate {metric}")
    ax.set_title(f"surrogate vs exact (Kendall τ = {tau:.2f})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.surrogate_fidelity", description=__doc__)
    add_workload_args(parser)
    parser.add_argument("--candidates", default="expanded")
    parser.add_argument("--images", type=int, default=64, help="calibration images for the phase-1 table")
    parser.add_argument("--calibration-points", type=int, default=16, help="exact evaluations to fit the surrogate")
    parser.add_argument("--configs", type=int, default=50, help="random test configurations")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plot", default="runs/benchmarks/surrogate_fidelity.png")
    args = parser.parse_args(argv)
    workload = workload_from_args(args)
    problem = Problem(workload, args.candidates, sensitivity_images=args.images,
                      surrogate_points=args.calibration_points)
    start = time.perf_counter()
    surrogate = problem.surrogate
    build = time.perf_counter() - start
    metric = workload.primary_metric
    rng = np.random.default_rng(args.seed)
    choices = graded_random_choices(rng, args.configs, len(problem.groups), len(problem.candidates))
    exact = [problem.evaluate(problem.config(c)) for c in tqdm(choices, desc="exact evaluations")]
    exact_metric = np.array([e[metric] for e in exact])
    exact_sqnr = np.array([e["sqnr_db"] for e in exact])
    predicted = surrogate.predict(choices)
    tau, _ = kendalltau(predicted, exact_metric)
    tau_sqnr, _ = kendalltau(surrogate.predicted_sqnr(choices), exact_sqnr)
    batch = graded_random_choices(rng, 100_000, len(problem.groups), len(problem.candidates))
    start = time.perf_counter()
    surrogate.predict(batch)
    per_config_ms = (time.perf_counter() - start) / len(batch) * 1e3
    start = time.perf_counter()
    for row in batch[:2000]:
        surrogate.predict(row)
    single_ms = (time.perf_counter() - start) / 2000 * 1e3
    _plot(Path(args.plot), predicted, exact_metric, metric, tau)
    print_json({"workload": workload.name, "candidates": [str(c) for c in problem.candidates],
                "split": problem.split, "phase1_images": args.images,
                "calibration_points": len(problem.surrogate_calibration_choices()), "test_configs": args.configs,
                f"kendall_tau_{metric}": round(float(tau), 3), "kendall_tau_sqnr": round(float(tau_sqnr), 3),
                f"mean_abs_error_{metric}": round(float(np.abs(predicted - exact_metric).mean()), 2),
                f"exact_{metric}_range": [round(float(exact_metric.min()), 1), round(float(exact_metric.max()), 1)],
                "surrogate_ms_per_config_batched": round(per_config_ms, 5),
                "surrogate_ms_per_config_single": round(single_ms, 4),
                "surrogate_build_s": round(build, 1), "exact_evaluations": problem.exact_evaluations,
                "fit": vars(surrogate.metric_fit), "plot": args.plot, "peak_rss_gb": round(peak_rss_gb(), 2),
                "command": reproduce_command("benchmarks.surrogate_fidelity", argv)})
    return 0


if __name__ == "__main__":
    run_cli(main)
