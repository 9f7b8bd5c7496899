"""``python -m mpq_gym.layers --workload NAME [--random-weights]``: per-layer statistics as JSON."""
from __future__ import annotations

import argparse
import copy

from mpq_gym.cli import add_workload_args, print_json, run_cli, workload_from_args
from mpq_gym.quant.graph import LayerInfo, discover_layers, fold_batchnorm
from mpq_gym.workloads import Workload


def workload_layers(workload: Workload, fold_bn: bool = True) -> list[LayerInfo]:
    """The quantizable layers of a workload's model (after BN folding, as they are quantized)."""
    model = copy.deepcopy(workload.model).eval()
    example = workload.example_input()
    if fold_bn:
        fold_batchnorm(model, example)
    return discover_layers(model, example)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq_gym.layers", description=__doc__)
    add_workload_args(parser)
    args = parser.parse_args(argv)
    print_json([layer.to_json() for layer in workload_layers(workload_from_args(args))])
    return 0


if __name__ == "__main__":
    run_cli(main)
