"""``mpq-gym validate DIR/results.csv``: replay every configuration of a benchmark and flag any row whose
quality, FP32 reference, normalized score or cost does not reproduce (exit status 1 when any row is
flagged). The libraries whose versions differ from those recorded (in bench.json or in a row's provenance)
are named: the likely cause of a flagged row. The replay runs on ``--device`` (default: ``bench.json``'s
env kwargs, else auto), whatever device the rows were computed on; when the rows record another type of
device (their provenance's ``torch_device``), ``device_differences`` says so (an accelerator's float
results differ from the CPU's in the last bits).

Example::

    mpq-gym validate runs/bench/results.csv
"""
from __future__ import annotations

from pathlib import Path

from mpq_gym.bench.runner import BenchSpec, read_results
from mpq_gym.bench.validate import recorded_device_differences, recorded_library_differences, validate
from mpq_gym.cli.common import add_device_arg, make_parser, positive_float, print_json, run_cli
from mpq_gym.devices import resolve_device
from mpq_gym.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("validate", __doc__, "runs/bench_digits/results.csv")
    parser.add_argument("results", type=Path, help="results.csv written by mpq-gym bench")
    parser.add_argument("--tolerance", type=positive_float, default=1e-6, help="allowed absolute quality difference")
    add_device_arg(parser)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if not args.results.exists():
        raise ConfigError(f"{args.results} does not exist; give the results.csv of a `mpq-gym bench --out` folder")
    flagged = validate(args.results, args.tolerance, not args.quiet, device=args.device)
    rows = read_results(args.results)
    out = {"rows": len(rows), "flagged": flagged}
    spec = BenchSpec.load(args.results.parent)
    differences = recorded_library_differences(spec, rows)
    if differences:  # the likely cause of flagged rows, said up front
        out["library_differences"] = differences
    replay_device = resolve_device(args.device or spec.env_kwargs.get("device", "auto"))
    devices = recorded_device_differences(rows, str(replay_device))
    if devices:
        out["device_differences"] = devices
    print_json(out)
    return 1 if flagged else 0


if __name__ == "__main__":
    run_cli(main)
