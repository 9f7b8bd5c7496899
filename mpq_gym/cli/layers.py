"""``mpq-gym layers --workload NAME [--random-weights]``: per-layer statistics as JSON."""
from __future__ import annotations


from mpq_gym.cli.common import add_workload_args, make_parser, print_json, run_cli, workload_from_args
from mpq_gym.quant.graph import quantizable_layers


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("layers", __doc__, "--workload resnet50 --random-weights")
    add_workload_args(parser)
    args = parser.parse_args(argv)
    workload = workload_from_args(args)
    print_json([layer.to_json() for layer in quantizable_layers(workload.model, workload.example_input())])
    return 0


if __name__ == "__main__":
    run_cli(main)
