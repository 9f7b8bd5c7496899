"""``mpq-gym sensitivity --workload NAME --candidates W4A8,W8A8,W8A16``: phase-1 table.

Writes the table as JSON (``--out``, default ``runs/sensitivity/<workload>-<candidates>.json``) and
prints it as a markdown table. Cached and resumable: rerun the same command after an interruption.
"""
from __future__ import annotations

from pathlib import Path

from mpq_gym.markdown import markdown_table
from mpq_gym.cli.common import add_device_arg, add_workload_args, make_parser, positive_int, run_cli, workload_from_args
from mpq_gym.problem import Problem


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("sensitivity", __doc__, "--workload efficientnet_lite0 --candidates hardware --images 64")
    add_workload_args(parser)
    parser.add_argument("--candidates", default="W4A8,W8A8,W8A16",
                        help="comma-separated W<w>A<a>, or 'hardware' / 'expanded'")
    parser.add_argument("--images", type=positive_int, default=256, help="calibration images to use (at most the split)")
    parser.add_argument("--out", default=None, help="JSON output path")
    add_device_arg(parser)
    args = parser.parse_args(argv)
    workload = workload_from_args(args)
    problem = Problem(workload, args.candidates, sensitivity_images=args.images, device=args.device or "auto")
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
