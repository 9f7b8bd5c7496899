"""Exact-evaluation overhead: one quantized evaluation ÷ the FP32 forward of the same images.

``python -m benchmarks.eval_overhead --workload efficientnet_lite0 --split search``
Both are timed side by side in this process, alternating, ``--repeats`` times; medians are compared.
The FP32 side is the original, unwrapped model (BN not folded, no hooks); the quantized side is
``ExactEvaluator.outputs`` (set_config + fake-quant forward). One-time work (activation calibration,
weight quantization, both cached on disk) is reported separately, and so is the median time of a
repeated (memoised) configuration.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from benchmarks.common import peak_rss_gb, reproduce_command, time_forward
from mpq_gym.cli.common import add_device_arg, add_workload_args, print_json, run_cli, workload_from_args
from mpq_gym.config import FP32, parse_config, uniform_config
from mpq_gym.devices import batch_size_for, resolve_device
from mpq_gym.provenance import device_name as device_label
from mpq_gym.evaluate.exact import ExactEvaluator, StageInputCache, build_quantized_model
from mpq_gym.workloads.base import SPLITS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_overhead", description=__doc__)
    add_workload_args(parser)
    parser.add_argument("--split", default="search", choices=SPLITS)
    parser.add_argument("--config", default="uniform:W8A8")
    parser.add_argument("--repeats", type=int, default=3)
    add_device_arg(parser)
    args = parser.parse_args(argv)
    workload = workload_from_args(args)
    device = resolve_device(args.device or "cpu")
    t0 = time.perf_counter()
    evaluator = ExactEvaluator(workload, build_quantized_model(workload, progress=False, device=device),
                               progress=False)
    evaluator.stage_inputs = StageInputCache(0)  # every pass a full forward (reuse is benchmarks.activation_reuse)
    config = parse_config(args.config, evaluator.qmodel.layer_names)
    evaluator.qmodel.set_config(config)  # calibration + weight quantization (cached afterwards)
    evaluator.qmodel.set_config(uniform_config(evaluator.qmodel.layer_names, FP32))
    setup = time.perf_counter() - t0
    batches = [x for x, _ in workload.split(args.split).batches(batch_size_for(device, workload.batch_size))]
    fp32_model = copy.deepcopy(workload.model).eval().to(device)
    fp32_times, quant_times = [], []
    for _ in range(args.repeats):
        fp32_times.append(time_forward(fp32_model, batches, device))
        start = time.perf_counter()
        evaluator.outputs(config, args.split)
        quant_times.append(time.perf_counter() - start)
    fp32, quant = statistics.median(fp32_times), statistics.median(quant_times)
    evaluator.evaluate(config, args.split)  # computes once; every call below is a memo hit
    lookups = []
    for _ in range(200):
        start = time.perf_counter()
        evaluator.evaluate(config, args.split)
        lookups.append(time.perf_counter() - start)
    print_json({"workload": workload.name, "split": args.split, "images": len(workload.split(args.split)),
                "config": args.config, "threads": torch.get_num_threads(), "device": device_label(device),
                "fp32_forward_s": round(fp32, 3), "quantized_eval_s": round(quant, 3),
                "ratio": round(quant / fp32, 3), "fp32_runs_s": [round(t, 2) for t in fp32_times],
                "quantized_runs_s": [round(t, 2) for t in quant_times],
                "repeated_config_ms": round(statistics.median(lookups) * 1e3, 4),
                "one_time_setup_s": round(setup, 1), "peak_rss_gb": round(peak_rss_gb(), 2),
                "command": reproduce_command("benchmarks.eval_overhead", argv)})
    return 0


if __name__ == "__main__":
    run_cli(main)
