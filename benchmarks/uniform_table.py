"""Exact evaluation of uniform configurations: ``python -m benchmarks.uniform_table``.

Prints a markdown table (every metric of the workload, Δ vs FP32, output SQNR) with wall time and
peak RSS. ``--configs`` takes number formats too (``W4A8-ant``, ``W4A4-olive``), and
``--weight-rounding nearest,adaround`` evaluates each configuration under each rounding (the time to
learn AdaRound is reported in its first row), ``--quantizer v2,v1`` under each quantizer version.
"""
from __future__ import annotations

import argparse
import sys
import time

from benchmarks.common import print_report
from mpq_gym.cli.common import add_workload_args, run_cli, workload_from_args
from mpq_gym.config import parse_config
from mpq_gym.evaluate.exact import ExactEvaluator, build_quantized_model
from mpq_gym.quant.quantizers import DEFAULT_QUANTIZER, QUANTIZERS, WEIGHT_ROUNDING, quantizer_settings
from mpq_gym.workloads.base import ALL_SPLITS, SPLITS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.uniform_table", description=__doc__)
    add_workload_args(parser)
    parser.add_argument("--split", default=ALL_SPLITS, choices=[*SPLITS, ALL_SPLITS])
    parser.add_argument("--configs", default="fp32,W8A16,W8A8,W6A8,W4A8",
                        help="comma-separated uniform candidates, e.g. fp32,W8A8,W4A8,W4A8-ant")
    parser.add_argument("--weight-rounding", default="nearest",
                        help=f"comma-separated weight roundings, each a row per config: {', '.join(WEIGHT_ROUNDING)}")
    parser.add_argument("--quantizer", default=DEFAULT_QUANTIZER,
                        help=f"comma-separated quantizer versions, each a row per config: {', '.join(sorted(QUANTIZERS))}")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    workload = workload_from_args(args)
    primary = workload.primary_metric
    rows, fp32_value, extra_names = [], None, None
    for quantizer, rounding in ((q, r) for q in args.quantizer.split(",") for r in args.weight_rounding.split(",")):
        settings = quantizer_settings(quantizer, weight_rounding=rounding)
        evaluator = ExactEvaluator(workload, build_quantized_model(workload, settings))
        for name in args.configs.split(","):
            spec = name if name.lower() == "fp32" else f"uniform:{name}"
            t0 = time.perf_counter()
            metrics = evaluator.evaluate(parse_config(spec, evaluator.qmodel.layer_names), args.split)
            fp32_value = metrics[primary] if name.lower() == "fp32" else fp32_value
            delta = metrics[primary] - fp32_value if fp32_value is not None else float("nan")
            extra_names = extra_names or sorted(k for k in metrics if k not in (primary, "sqnr_db"))
            tags = [t for t in (rounding if rounding != "nearest" else "", quantizer if quantizer != DEFAULT_QUANTIZER else "")
                    if t]
            label = name if not tags or name.lower() == "fp32" else f"{name} ({', '.join(tags)})"
            rows.append([label, metrics[primary], delta, *(metrics.get(k, float("nan")) for k in extra_names),
                         metrics["sqnr_db"], time.perf_counter() - t0])
            print(f"{label}: {primary} {metrics[primary]:.4g}", file=sys.stderr)
    header = ["config", primary, f"Δ{primary} vs FP32", *extra_names, "output SQNR dB", "seconds"]
    print_report(f"{workload.name} ({workload.weights}), split '{args.split}' ({len(workload.split(args.split))} samples)",
                 header, rows, start, "benchmarks.uniform_table", argv)
    return 0


if __name__ == "__main__":
    run_cli(main)
