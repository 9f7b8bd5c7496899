"""Size, BOPs, latency and energy of uniform configurations: ``python -m benchmarks.costs``."""
from __future__ import annotations

import argparse

from benchmarks.common import markdown_table, reproduce_command
from mpq_gym.cli.common import run_cli
from mpq_gym.config import parse_config
from mpq_gym.cost import CostModel
from mpq_gym.quant.graph import quantizable_layers
from mpq_gym.workloads import get_workload

RANDOM_OK = {"resnet18", "resnet50", "mobilenet_v2"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.costs", description=__doc__)
    parser.add_argument("--workloads", default="resnet50,efficientnet_lite0")
    parser.add_argument("--configs", default="fp32,W8A16,W8A8,W4A8")
    args = parser.parse_args(argv)
    rows = []
    for name in args.workloads.split(","):
        workload = get_workload(name, random_weights=name in RANDOM_OK)  # costs depend on structure only
        layers = quantizable_layers(workload.model, workload.example_input())
        model = CostModel.for_model(layers, workload.model)
        for spec in args.configs.split(","):
            config = parse_config(spec if spec == "fp32" else f"uniform:{spec}", [l.name for l in layers])
            c = model.costs(config)
            rows.append([name, spec, f"{c['size_mb']:.2f}", f"{c['bops'] / 1e9:.1f}", f"{c['bops_ratio']:.3f}",
                         f"{c['latency'] * 1e3:.3f}", f"{c['energy'] / 1e9:.2f}"])
    print(markdown_table(["workload", "config", "size MB", "GBOPs", "BOPs / W8A16", "latency ms (analytic)",
                          "energy mJ"], rows))
    print("\nreproduce: " + reproduce_command("benchmarks.costs", argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
