"""``mpq-gym evaluate --workload NAME --config uniform:W8A8 [--split test]``: metrics as JSON."""
from __future__ import annotations

import time

from mpq_gym.cli.common import (add_device_arg, add_quantizer_args, add_workload_args, make_parser, print_json,
                                quantizer_from_args, run_cli, workload_from_args)
from mpq_gym.config import parse_config
from mpq_gym.evaluate.exact import ExactEvaluator, build_quantized_model
from mpq_gym.workloads.base import ALL_SPLITS, SPLITS


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("evaluate", __doc__,
                         "--workload efficientnet_lite0 --config uniform:W8A8 --split test",
                         "--workload digits_cnn --config my_config.json")
    add_workload_args(parser)
    parser.add_argument("--config", default="uniform:W8A8",
                        help="'fp32', 'uniform:W<w>A<a>[-<format>]' or a JSON file {layer: [w_bits, a_bits(, format)]} "
                             "('*' = default)")
    parser.add_argument("--split", default="test", choices=[*SPLITS, ALL_SPLITS])
    add_quantizer_args(parser)
    add_device_arg(parser)
    args = parser.parse_args(argv)
    workload = workload_from_args(args)
    qmodel = build_quantized_model(workload, quantizer_from_args(args), device=args.device or "auto")
    evaluator = ExactEvaluator(workload, qmodel)
    config = parse_config(args.config, evaluator.qmodel.layer_names)
    start = time.perf_counter()
    metrics = evaluator.evaluate(config, args.split)
    print_json({"workload": workload.name, "weights": workload.weights, "config": args.config, "split": args.split,
                "quantizer": args.quantizer, "weight_rounding": args.weight_rounding, "device": str(qmodel.device),
                "images": len(workload.split(args.split)), **metrics,
                "seconds": round(time.perf_counter() - start, 3)})
    return 0


if __name__ == "__main__":
    run_cli(main)
