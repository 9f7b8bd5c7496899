"""``mpq-gym compare DIR/results.csv --baseline ilp``: every policy's configuration against the baseline's
at the same budget, on the same held-out samples: the difference of the quality metric with a paired
bootstrap 95 % interval ("ahead" / "behind" only when the interval excludes 0). ``--pool-seeds``: one line
per policy and budget, the mean over its seeds (all scored on each resample of the samples).

Example::

    mpq-gym compare runs/bench/results.csv --baseline ilp
"""
from __future__ import annotations

from pathlib import Path

from mpq_gym.bench.paired import compare_results
from mpq_gym.cli.common import make_parser, print_json, run_cli
from mpq_gym.errors import ConfigError
from mpq_gym.markdown import markdown_table


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("compare", __doc__, "runs/bench_digits/results.csv --baseline ilp")
    parser.add_argument("results", type=Path, help="results.csv written by mpq-gym bench")
    parser.add_argument("--baseline", default="ilp", help="the policy every row is compared with (default ilp)")
    parser.add_argument("--pool-seeds", action="store_true",
                        help="one line per policy and budget: its seeds' mean lead, with a joint paired interval")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if not args.results.exists():
        raise ConfigError(f"{args.results} does not exist; give the results.csv of a `mpq-gym bench --out` folder")
    rows = compare_results(args.results, args.baseline, not args.quiet, args.pool_seeds)
    if args.json:
        print_json(rows)
        return 0
    def fmt(value: float, scale: float) -> str:  # 4 decimals for metrics in [-1, 1] (Spearman), else 2
        return f"{value:+.4f}" if abs(scale) <= 1 else f"{value:+.2f}"

    print(markdown_table(["budget", "policy", "seed", "quality", args.baseline, "difference [95 % paired CI]", "verdict"],
                         [[r["budget"], r["policy"], r["seed"], r["quality"], r["baseline_quality"],
                           f"{fmt(r['difference'], r['baseline_quality'])} [{fmt(r['low'], r['baseline_quality'])}, "
                           f"{fmt(r['high'], r['baseline_quality'])}]", r["verdict"]] for r in rows]))
    return 0


if __name__ == "__main__":
    run_cli(main)
