"""Number formats side by side: ``python -m benchmarks.formats --workload minilm``.

For each uniform configuration (``--configs``, e.g. W4A32 = weights only) in each format (``--formats``):
the task metric and output SQNR of the whole network on ``--split``, the mean SQNR of the quantized
weight tensors over layers, the mean SQNR of the quantized layer inputs (one batch of the search
split, each layer fed FP32 activations) and, for ``ant``, which type each layer's tensors chose.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
import torch

from benchmarks.common import print_report
from mpq_gym.cli.common import add_workload_args, run_cli, workload_from_args
from mpq_gym.config import FLOAT_BITS, FP32, parse_candidate, uniform_config
from mpq_gym.evaluate.exact import ExactEvaluator
from mpq_gym.quant.formats import tensor_sqnr_db
from mpq_gym.quant.model import QuantizedModel
from mpq_gym.workloads.base import ALL_SPLITS, SPLITS


@torch.inference_mode()
def layer_inputs(qmodel: QuantizedModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every quantizable layer's FP32 input on the batch ``x``."""
    qmodel.set_config(uniform_config(qmodel.layer_names, FP32))
    captured: dict[str, torch.Tensor] = {}
    handles = [qmodel.model.get_submodule(n).register_forward_pre_hook(
        lambda m, inp, n=n: captured.setdefault(n, inp[0].detach().clone())) for n in qmodel.layer_names]
    try:
        qmodel(x)
    finally:
        for h in handles:
            h.remove()
    return captured


def tensor_quality(qmodel: QuantizedModel, inputs: dict[str, torch.Tensor], w_bits: int, a_bits: int,
                   fmt: str) -> tuple[float, float, Counter]:
    """(mean weight SQNR, mean input SQNR over layers, resolved types of weights and inputs)."""
    weight_sqnr, act_sqnr, types = [], [], Counter()
    for name in qmodel.layer_names:
        if w_bits != FLOAT_BITS:
            fp32 = qmodel.quantized_weight(name, FLOAT_BITS)
            weight_sqnr.append(tensor_sqnr_db(fp32, qmodel.quantized_weight(name, w_bits, fmt)))
            types[f"w:{qmodel.weight_quantizer(name, w_bits, fmt).fmt}"] += 1
        if a_bits != FLOAT_BITS:
            quantizer = qmodel.activation_quantizer(name, a_bits, fmt)
            act_sqnr.append(tensor_sqnr_db(inputs[name], quantizer(inputs[name])))
            types[f"a:{quantizer.fmt}"] += 1
    mean = lambda v: float(np.mean(v)) if v else float("nan")
    return mean(weight_sqnr), mean(act_sqnr), types


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.formats", description=__doc__)
    add_workload_args(parser)
    parser.add_argument("--split", default="test", choices=[*SPLITS, ALL_SPLITS])
    parser.add_argument("--configs", default="W8A32,W4A32,W32A8,W32A4,W8A8,W4A8,W4A4",
                        help="comma-separated uniform candidates (int); each is run in every format")
    parser.add_argument("--formats", default="int,olive,ant", help="comma-separated number formats")
    parser.add_argument("--act-batch", type=int, default=32, help="search-split samples for the input SQNR")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    workload = workload_from_args(args)
    evaluator = ExactEvaluator(workload)
    qmodel, primary = evaluator.qmodel, workload.primary_metric
    fp32 = evaluator.evaluate(uniform_config(qmodel.layer_names, FP32), args.split)
    extra = sorted(k for k in fp32 if k not in (primary, "sqnr_db"))
    inputs = layer_inputs(qmodel, next(workload.split("search").batches(args.act_batch))[0])
    rows = [["FP32", "", fp32[primary], 0.0, *(fp32[k] for k in extra), fp32["sqnr_db"], "", "", "", ""]]
    for text in args.configs.split(","):
        for fmt in args.formats.split(","):
            candidate = parse_candidate(text)._replace(fmt=fmt)
            t0 = time.perf_counter()
            metrics = evaluator.evaluate(uniform_config(qmodel.layer_names, candidate), args.split)
            w_sqnr, a_sqnr, types = tensor_quality(qmodel, inputs, candidate.w_bits, candidate.a_bits, fmt)
            chosen = " ".join(f"{k}×{v}" for k, v in sorted(types.items())) if fmt == "ant" else ""
            rows.append([text, fmt, metrics[primary], metrics[primary] - fp32[primary], *(metrics[k] for k in extra),
                         metrics["sqnr_db"], w_sqnr, a_sqnr, chosen, time.perf_counter() - t0])
            print(f"{candidate}: {primary} {metrics[primary]:.4f}", flush=True)
    header = ["config", "format", primary, f"Δ{primary}", *extra, "output SQNR dB", "weight SQNR dB",
              "input SQNR dB", "ANT types (layers)", "seconds"]
    print_report(f"{workload.name} ({workload.weights}), split '{args.split}' ({len(workload.split(args.split))} "
                 f"samples); tensor SQNRs are means over layers, inputs on {args.act_batch} search samples",
                 header, rows, start, "benchmarks.formats", argv)
    return 0


if __name__ == "__main__":
    run_cli(main)
