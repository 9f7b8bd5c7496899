"""``mpq-gym cost --workload NAME --config uniform:W8A8``: every cost of a configuration as JSON."""
from __future__ import annotations


from mpq_gym.cli.common import add_workload_args, make_parser, print_json, run_cli, workload_from_args
from mpq_gym.config import parse_config
from mpq_gym.cost import CostModel, LookupTableCost
from mpq_gym.quant.graph import quantizable_layers


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("cost", __doc__,
                         "--workload efficientnet_lite0 --config uniform:W4A8",
                         "--workload resnet18 --random-weights --lut haq_lut.npy")
    add_workload_args(parser)
    parser.add_argument("--config", default="uniform:W8A8", help="'fp32', 'uniform:W<w>A<a>' or a JSON file")
    parser.add_argument("--lut", default=None, help="HAQ-format lookup table (.npy, [layer, w_bits-1, a_bits-1])")
    args = parser.parse_args(argv)
    workload = workload_from_args(args)
    layers = quantizable_layers(workload.model, workload.example_input())
    lut = LookupTableCost.load(args.lut, layers) if args.lut else None
    model = CostModel.for_model(layers, workload.model, lut)
    config = parse_config(args.config, [layer.name for layer in layers])
    print_json({"workload": workload.name, "config": args.config, "reference": "uniform W8A16",
                **model.costs(config)})
    return 0


if __name__ == "__main__":
    run_cli(main)
