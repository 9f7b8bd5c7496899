"""``python -m mpq_gym.cost --workload NAME --config uniform:W8A8``: every cost of a configuration as JSON."""
from __future__ import annotations

import argparse

from mpq_gym.cli import add_workload_args, print_json, run_cli, workload_from_args
from mpq_gym.config import parse_config
from mpq_gym.cost import CostModel, LookupTableCost
from mpq_gym.layers import workload_layers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq_gym.cost", description=__doc__)
    add_workload_args(parser)
    parser.add_argument("--config", default="uniform:W8A8", help="'fp32', 'uniform:W<w>A<a>' or a JSON file")
    parser.add_argument("--lut", default=None, help="HAQ-format lookup table (.npy, [layer, w_bits-1, a_bits-1])")
    args = parser.parse_args(argv)
    workload = workload_from_args(args)
    layers = workload_layers(workload)
    lut = LookupTableCost.load(args.lut, layers) if args.lut else None
    model = CostModel(layers, sum(p.numel() for p in workload.model.parameters()), lut)
    config = parse_config(args.config, [layer.name for layer in layers])
    print_json({"workload": workload.name, "config": args.config, "reference": "uniform W8A16",
                **model.costs(config)})
    return 0


if __name__ == "__main__":
    run_cli(main)
