"""``mpq-gym groundtruth``: the ground-truth table of exact evaluations near the front.

``build --task NAME`` evaluates the task's configurations (ILP and its next knapsack solutions, greedy,
evolution, k-swap neighbours of the ILP answer, random feasible ones) on the search and test splits and
writes them as they finish; run it again to resume. ``fidelity TABLE`` prints, per budget slice, how well
the additive surrogate ranks and values them (Kendall τ, MAE, regret) and the headroom over the ILP.
``list`` shows the tasks and the tables that ship with the package.

Example::

    mpq-gym groundtruth build --task digits-low --out runs/gt/digits.csv.gz
    mpq-gym groundtruth fidelity runs/gt/digits.csv.gz
"""
from __future__ import annotations

from pathlib import Path

from mpq_gym.bench.groundtruth import TASKS, build_groundtruth, default_path, fidelity_report, get_task
from mpq_gym.cli.common import add_device_arg, make_parser, print_json, run_cli
from mpq_gym.evaluate.groundtruth import load_groundtruth
from mpq_gym.markdown import markdown_table


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("groundtruth", __doc__, "build --task digits-low --out runs/gt/digits.csv.gz")
    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build", help="build or resume a task's table")
    build.add_argument("--task", required=True, help=f"one of {sorted(TASKS)}")
    build.add_argument("--out", type=Path, help="the table (default: the package's copy, mpq_gym/data/groundtruth/)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--limit", type=int, help="stop after this many new rows")
    add_device_arg(build)
    fidelity = sub.add_parser("fidelity", help="the additive surrogate's fidelity and the headroom, per slice")
    fidelity.add_argument("table", type=Path)
    fidelity.add_argument("--json", action="store_true")
    sub.add_parser("list", help="the tasks and the shipped tables")
    for p in (build, fidelity):
        p.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.action == "build":
        get_task(args.task)
        print(build_groundtruth(args.task, args.out, args.seed, not args.quiet, limit=args.limit, device=args.device))
    elif args.action == "fidelity":
        report = fidelity_report(load_groundtruth(args.table))
        if args.json:
            print_json(report)
            return 0

        def ci(entry: dict, label: str) -> str:
            low_high = entry.get(f"headroom_{label}_ci")
            text = f"{entry[f'headroom_{label}']:+.2f}"
            return text + (f" [{low_high[0]:+.2f}, {low_high[1]:+.2f}]" if low_high else "")
        print(markdown_table(
            ["budget", "rows", "Kendall τ", "Spearman", "MAE", "regret (search)", "regret (test)", "ILP test",
             "headroom: best test", "headroom: best search"],
            [[e["budget"], e["rows"], f"{e['kendall_tau']:.3f}", f"{e['spearman']:.3f}", f"{e['mae']:.3f}",
              f"{e['regret']:.3f}", f"{e['test_regret']:.3f}", f"{e['ilp_test']:.2f}", ci(e, "best_test"),
              ci(e, "best_search")] for e in report]))
    else:
        rows = []
        for name, task in TASKS.items():
            path = default_path(name)
            shipped = load_groundtruth(path).header["rows"] if path.exists() else "not built"
            rows.append([name, task.env_id, task.env_kwargs, list(task.budgets), shipped])
        print(markdown_table(["task", "env", "kwargs", "budgets", "rows shipped"], rows))
    return 0


if __name__ == "__main__":
    run_cli(main)
