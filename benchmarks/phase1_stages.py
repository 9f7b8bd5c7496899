"""Phase 1 on models that are no ``nn.Sequential`` chain: ``python -m benchmarks.phase1_stages``.

For MobileNetV2 (random weights, ImageNet-sample images), MiniLM (real weights, STS-B pairs; its wrapper
declares its stages, passing (hidden states, mask) tuples per batch) and :class:`BlockLoopNet` (a loop over
an ``nn.ModuleList`` with functional ops between; random weights and inputs): how
:class:`~mpq_gym.quant.stages.StageChain` cut the network (stages, method, the reason for a fallback),
the phase-1 wall time, and that time ÷ (cells × one FP32 forward of the original model over
the same inputs), measured side by side in this run. ``ratio_folded`` divides by the forward of the
quantized model's own FP32 network instead (BN folded, hooks in place), which is faster where there is
BN to fold. ``mac_floor`` is the ratio the stages allow at best: each group's suffix MACs (quantizable
layers only) over groups × the network's MACs; ``time_floor`` the same in measured FP32 time per suffix,
so it counts the ops between layers (pooling, activations) too. Calibration and weight quantization
are done before the timer, as in ``benchmarks.phase1``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import peak_rss_gb, print_report, reproduce_command, time_forward
from mpq_gym.candidates import make_groups, parse_candidates
from mpq_gym.cli.common import run_cli
from mpq_gym.config import FP32, uniform_config
from mpq_gym.evaluate.sensitivity import compute_sensitivity
from mpq_gym.quant.model import QuantizedModel
from mpq_gym.quant.quantizers import QuantSettings
from mpq_gym.quant.stages import StageChain
from mpq_gym.workloads import get_workload

MODELS = ("mobilenet_v2", "minilm", "block_loop")


class ConvBlock(nn.Module):
    """Two convolutions with a functional GELU between them."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.gelu(self.conv1(x)))


class BlockLoopNet(nn.Module):
    """The common hand-written style: a stem, a loop over an ``nn.ModuleList`` of residual conv blocks
    (downsampling functionally every second block), functional pooling, a loop over MLP blocks with a
    functional layer norm, and a head. Its top-level modules are not a chain (a ModuleList is not callable)."""

    def __init__(self, width: int = 16, conv_blocks: int = 4, mlp_blocks: int = 2, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(ConvBlock(width) for _ in range(conv_blocks))
        self.mlp = nn.ModuleList(nn.Linear(width, width) for _ in range(mlp_blocks))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        for i, block in enumerate(self.blocks):
            x = F.relu(x + block(x))
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        for linear in self.mlp:
            x = x + F.gelu(linear(F.layer_norm(x, x.shape[-1:])))
        return self.head(x)


def _inputs(name: str, images: int, size: int) -> tuple[nn.Module, torch.Tensor, int, str]:
    """(FP32 model, phase-1 inputs, batch size, where the weights came from) of one benchmarked model."""
    if name == "block_loop":
        torch.manual_seed(0)
        model = BlockLoopNet(width=64, conv_blocks=4, mlp_blocks=2).eval()
        return model, torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(1)), 32, "random"
    workload = get_workload(name, random_weights=name == "mobilenet_v2")
    inputs = next(workload.split("calibration").batches(images))[0]
    return workload.model.eval(), inputs, workload.batch_size, workload.weights


def _median_forward(model: nn.Module, batches: list[torch.Tensor], repeats: int) -> float:
    return statistics.median(time_forward(model, batches) for _ in range(repeats))


def mac_floor(qm: QuantizedModel, chain: StageChain, groups: list) -> float:
    """The ratio phase 1 would have if its time were the MACs of the quantizable layers it re-runs: each
    group's suffix from its stage, over groups x the whole network's MACs (no overhead, no other ops)."""
    macs = {layer.name: layer.macs for layer in qm.layers}
    stage = {name: chain.stage_of(name) for name in macs}
    suffix = [sum(m for n, m in macs.items() if stage[n] >= min(stage[l] for l in g.layers)) for g in groups]
    return sum(suffix) / (len(groups) * sum(macs.values()))


@torch.inference_mode()
def time_floor(chain: StageChain, inputs: torch.Tensor, batch: int, starts: list[int]) -> float:
    """The same bound in time: each group's FP32 suffix from its stage (timed once per stage, on the kept
    stage input) over groups x the chain's whole FP32 forward; includes the ops between layers."""
    seconds, x = {}, inputs
    for s in range(len(chain)):
        start = time.perf_counter()
        chain.run_batched(x, batch, s)
        seconds[s] = time.perf_counter() - start
        x = chain.run_batched(x, batch, s, s + 1)
    return sum(seconds[s] for s in starts) / (len(starts) * seconds[0])


def measure(name: str, images: int, size: int, candidates: str, repeats: int,
            log: Callable[[str], None] = print) -> dict:
    """One model's row: stages, phase-1 time and the ratios (see the module docstring)."""
    model, inputs, batch, weights = _inputs(name, images, size)
    batches = list(inputs.split(batch))
    qm = QuantizedModel(model, inputs[:1], calibration_batches=lambda: batches, settings=QuantSettings(),
                        progress=False)
    groups, cands = make_groups(qm.layer_names), parse_candidates(candidates)
    for candidate in cands:  # one-time: calibration + weight quantization, outside the timer
        qm.set_config(uniform_config(qm.layer_names, candidate))
    qm.set_config(uniform_config(qm.layer_names, FP32))
    chain = StageChain.build(qm.model, inputs[:1])
    fp32 = _median_forward(model, batches, repeats)
    folded = _median_forward(qm.model, batches, repeats)
    starts = [min(chain.stage_of(layer) for layer in g.layers) for g in groups]
    floor = time_floor(chain, inputs, batch, starts)
    log(f"{name}: {len(chain)} stages ({chain.method}), FP32 forward {fp32:.3f} s; phase 1 ...")
    start = time.perf_counter()
    table = compute_sensitivity(qm, inputs, groups, cands, cache_key=None, batch_size=batch, progress=False)
    phase1 = time.perf_counter() - start
    cells = table.sqnr_db.size
    return {"model": name, "weights": weights, "inputs": list(inputs.shape), "groups": len(groups), "cells": cells,
            "stages": len(chain), "method": chain.method, "fallback_reason": chain.fallback_reason,
            "phase1_s": round(phase1, 2), "fp32_forward_s": round(fp32, 4), "fp32_folded_forward_s": round(folded, 4),
            "ratio": round(phase1 / (cells * fp32), 3), "ratio_folded": round(phase1 / (cells * folded), 3),
            "mac_floor": round(mac_floor(qm, chain, groups), 3), "time_floor": round(floor, 3),
            "peak_rss_gb_so_far": round(peak_rss_gb(), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.phase1_stages", description=__doc__)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {MODELS}")
    parser.add_argument("--candidates", default="hardware")
    parser.add_argument("--images", type=int, default=32, help="phase-1 inputs per model (MiniLM: pairs)")
    parser.add_argument("--size", type=int, default=64, help="BlockLoopNet's input size")
    parser.add_argument("--repeats", type=int, default=3, help="FP32 forward timings (median)")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load_before = os.getloadavg()
    rows = [measure(name, args.images, args.size, args.candidates, args.repeats) for name in args.models.split(",")]
    header = ["model", "stages", "method", "cells", "phase-1 s", "FP32 forward s", "ratio", "ratio (folded FP32)",
              "MAC floor", "time floor"]
    table = [[r["model"], r["stages"], r["method"], r["cells"], r["phase1_s"], r["fp32_forward_s"], r["ratio"],
              r["ratio_folded"], r["mac_floor"], r["time_floor"]] for r in rows]
    load_after = os.getloadavg()
    print_report("Phase 1 with stages (declared by the model, or cut from the fx graph)", header, table, started, "benchmarks.phase1_stages", argv)
    print(f"load average (1, 5, 15 min) before: {load_before}, after: {load_after}")
    for r in rows:
        if r["fallback_reason"]:
            print(f"{r['model']} falls back to one stage: {r['fallback_reason']}")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "rows": rows, "candidates": args.candidates, "torch_threads": torch.get_num_threads(),
            "total_s": round(time.perf_counter() - started, 1), "peak_rss_gb": round(peak_rss_gb(), 2),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in load_after], "cpu_count": os.cpu_count(),
            "command": reproduce_command("benchmarks.phase1_stages", argv)}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
