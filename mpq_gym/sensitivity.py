"""``python -m mpq_gym.sensitivity --workload NAME --candidates W4A8,W8A8,W8A16``: phase-1 table.

Writes the table as JSON (``--out``, default ``runs/sensitivity/<workload>-<candidates>.json``) and
prints it as a markdown table. Cached and resumable: rerun the same command after an interruption.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mpq_gym.benchmarks.common import markdown_table
from mpq_gym.cli import add_workload_args, run_cli, workload_from_args
from mpq_gym.problem import Problem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq_gym.sensitivity", description=__doc__)
    add_workload_args(parser)
    parser.add_argument("--candidates", default="W4A8,W8A8,W8A16",
                        help="comma-separated W<w>A<a>, or 'hardware' / 'expanded'")
    parser.add_argument("--images", type=int, default=256, help="calibration images to use (at most the split)")
    parser.add_argument("--out", default=None, help="JSON output path")
    args = parser.parse_args(argv)
    workload = workload_from_args(args)
    problem = Problem(workload, args.candidates, sensitivity_images=args.images)
    table = problem.sensitivity
    out = Path(args.out or f"runs/sensitivity/{workload.name}-{'_'.join(map(str, problem.candidates))}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.save_json(out)
    rows = [[g, *[f"{v:.2f}" for v in row]] for g, row in zip(table.groups, table.sqnr_db)]
    print(markdown_table(["group", *[str(c) for c in table.candidates]], rows))
    print(f"\noutput SQNR (dB) with only that group quantized, {table.images} calibration images; written to {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
