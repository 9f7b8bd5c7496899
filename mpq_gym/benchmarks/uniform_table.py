"""Exact evaluation of uniform configurations: ``python -m mpq_gym.benchmarks.uniform_table``.

Prints a markdown table (metrics vs FP32) with wall time and peak RSS; this is also ``make demo``.
"""
from __future__ import annotations

import argparse
import sys
import time

from mpq_gym.benchmarks.common import markdown_table, peak_rss_gb, reproduce_command
from mpq_gym.cli import add_workload_args, run_cli, workload_from_args
from mpq_gym.config import parse_config
from mpq_gym.evaluate.exact import ExactEvaluator
from mpq_gym.workloads.base import ALL_SPLITS, SPLITS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq_gym.benchmarks.uniform_table", description=__doc__)
    add_workload_args(parser)
    parser.add_argument("--split", default=ALL_SPLITS, choices=[*SPLITS, ALL_SPLITS])
    parser.add_argument("--configs", default="fp32,W8A16,W8A8,W6A8,W4A8",
                        help="comma-separated uniform candidates, e.g. fp32,W8A8,W4A8")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    workload = workload_from_args(args)
    evaluator = ExactEvaluator(workload)
    primary = workload.primary_metric
    rows, fp32_value = [], None
    for name in args.configs.split(","):
        spec = name if name.lower() == "fp32" else f"uniform:{name}"
        t0 = time.perf_counter()
        metrics = evaluator.evaluate(parse_config(spec, evaluator.qmodel.layer_names), args.split)
        fp32_value = metrics[primary] if name.lower() == "fp32" else fp32_value
        delta = metrics[primary] - fp32_value if fp32_value is not None else float("nan")
        extra = [metrics.get("top5", float("nan")), metrics.get("agreement", float("nan"))]
        rows.append([name, metrics[primary], delta, *extra, metrics["sqnr_db"], time.perf_counter() - t0])
        print(f"{name}: {primary} {metrics[primary]:.2f}", file=sys.stderr)
    header = ["config", primary, f"Δ{primary} vs FP32", "top5", "agreement", "output SQNR dB", "seconds"]
    print(f"\n{workload.name} ({workload.weights}), split '{args.split}' ({len(workload.split(args.split))} samples)\n")
    print(markdown_table(header, rows))
    print(f"\ntotal {time.perf_counter() - start:.1f} s, peak RSS {peak_rss_gb():.2f} GB")
    print("reproduce: " + reproduce_command("mpq_gym.benchmarks.uniform_table", argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
