"""Per-model structure: quantizable layers, parameters and MACs at the workload's input size.

``python -m benchmarks.structure`` (torchvision models use random weights: structure only).
"""
from __future__ import annotations

import argparse

from benchmarks.common import markdown_table, reproduce_command
from mpq_gym.cli.common import run_cli
from mpq_gym.quant.graph import quantizable_layers
from mpq_gym.workloads import get_workload

RANDOM_OK = {"resnet18", "resnet50", "mobilenet_v2"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.structure", description=__doc__)
    parser.add_argument("--workloads", default="resnet18,resnet50,mobilenet_v2,efficientnet_lite0,digits_cnn")
    args = parser.parse_args(argv)
    rows = []
    for name in args.workloads.split(","):
        workload = get_workload(name, random_weights=name in RANDOM_OK)
        layers = quantizable_layers(workload.model, workload.example_input())
        rows.append([name, "random" if workload.random_weights else "pretrained",
                     "x".join(map(str, workload.input_shape)), len(layers),
                     sum(l.depthwise for l in layers),
                     f"{sum(p.numel() for p in workload.model.parameters()) / 1e6:.3f} M",
                     f"{sum(l.params for l in layers) / 1e6:.3f} M",
                     f"{sum(l.macs for l in layers) / 1e9:.4f} G"])
    print(markdown_table(["workload", "weights", "input", "quantizable layers", "depthwise", "params (model)",
                          "params in quantizable layers (BN folded)",
                          "MACs / image"], rows))
    print("\nreproduce: " + reproduce_command("benchmarks.structure", argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
