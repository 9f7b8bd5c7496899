"""Phase-1 sensitivity cost: ``python -m benchmarks.phase1 --workload efficientnet_lite0``.

Wall time of the table, and that time ÷ (cells × one FP32 forward over the same images), both
measured in this run. Calibration and weight quantization for the candidates' bit-widths are done
first and reported separately (they are cached and shared with every other evaluator).
"""
from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.common import peak_rss_gb, reproduce_command, time_forward
from mpq_gym.cli.common import add_workload_args, print_json, run_cli, workload_from_args
from mpq_gym.config import FP32, uniform_config
from mpq_gym.evaluate.sensitivity import compute_sensitivity
from mpq_gym.quant.stages import StageChain
from mpq_gym.problem import Problem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.phase1", description=__doc__)
    add_workload_args(parser)
    parser.add_argument("--candidates", default="hardware")
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args(argv)
    workload = workload_from_args(args)
    problem = Problem(workload, args.candidates, progress=False)
    qm = problem.evaluator.qmodel
    inputs = next(workload.split("calibration").batches(args.images))[0]

    start = time.perf_counter()
    for candidate in problem.candidates:  # one-time: calibration + weight quantization
        qm.set_config(problem.uniform(candidate))
    qm.set_config(uniform_config(qm.layer_names, FP32))
    setup = time.perf_counter() - start

    batches = list(inputs.split(workload.batch_size))
    fp32 = statistics.median(time_forward(workload.model.eval(), batches) for _ in range(3))

    start = time.perf_counter()
    table = compute_sensitivity(qm, inputs, problem.groups, problem.candidates, cache_key=None,
                                batch_size=workload.batch_size)
    phase1 = time.perf_counter() - start
    cells = table.sqnr_db.size
    print_json({"workload": workload.name, "candidates": [str(c) for c in problem.candidates],
                "images": len(inputs), "groups": len(problem.groups), "cells": cells,
                "stages": len(StageChain.build(qm.model, inputs[:1])),
                "phase1_s": round(phase1, 1), "fp32_forward_s": round(fp32, 3),
                "ratio_vs_cells_x_fp32_forward": round(phase1 / (cells * fp32), 3),
                "one_time_setup_s": round(setup, 1), "peak_rss_gb": round(peak_rss_gb(), 2),
                "command": reproduce_command("benchmarks.phase1", argv)})
    return 0


if __name__ == "__main__":
    run_cli(main)
