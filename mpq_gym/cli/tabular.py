"""``mpq-gym tabular``: the problem tables that let surrogate mode start without the network or the data.

``build`` computes the tables of the shipped env ids and kwargs (all, or those of ``--workload``) on the
real workloads (phase 1, surrogate calibration, FP32 quality, costs) and writes them to ``--out`` (default:
the package's copy, ``mpq_gym/data/tabular/``), removing files there that no shipped entry names.
``check`` compares the shipped tables with what this code computes: fully (``--full``: every value
recomputed), else the fingerprint of the weights and data and ``--rows`` sampled phase-1 rows.
``list`` shows the shipped entries and their files.

Example::

    mpq-gym tabular build --workload digits_cnn
    mpq-gym tabular check --workload efficientnet_lite0 --rows 1
"""
from __future__ import annotations

from pathlib import Path

from mpq_gym.cli.common import add_device_arg, make_parser, names, positive_int, run_cli


def label(env_id: str, kwargs: dict) -> str:
    """An entry as printed: the env id and its kwargs, if any."""
    return f"{env_id} {kwargs}" if kwargs else env_id


def main(argv: list[str] | None = None) -> int:
    import dataclasses

    import numpy as np

    from mpq_gym.devices import with_device
    from mpq_gym.envs.env import split_env_kwargs
    from mpq_gym.markdown import markdown_table
    from mpq_gym.tabular import (SHIPPED, TABLE_DIR, check_rows, diff_tables, find_table, save_table,
                                 table_from_problem, table_key, table_name)

    parser = make_parser("tabular", __doc__, "build --workload digits_cnn", "check --full --workload digits_cnn")
    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build", help="compute the shipped tables on the real workloads and write them")
    build.add_argument("--out", type=Path, default=TABLE_DIR, help="folder (default: the package's copy)")
    check = sub.add_parser("check", help="compare the shipped tables with what this code computes")
    check.add_argument("--full", action="store_true", help="recompute every value (minutes on the ImageNet models)")
    check.add_argument("--rows", type=positive_int, default=1, help="phase-1 rows to recompute per table")
    sub.add_parser("list", help="the shipped entries and their files")
    for p in (build, check):
        p.add_argument("--workload", type=names, default=None, help="only these workloads (comma-separated)")
        add_device_arg(p)
        p.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    entries = [(env_id, kwargs, split_env_kwargs(env_id, kwargs)[0]) for env_id, kwargs in SHIPPED]
    # computed from the workload (not the shipped table), on --device (the tables' keys do not name it)
    computed = with_device({"tabular": False}, getattr(args, "device", None))
    chosen = [e for e in entries if getattr(args, "workload", None) is None or e[2].workload in args.workload]
    if args.action == "list":
        rows = []
        for env_id, kwargs, spec in entries:
            path = TABLE_DIR / table_name(table_key(spec))
            rows.append([env_id, kwargs or "defaults", path.name,
                         f"{path.stat().st_size / 1024:.1f} KB" if path.exists() else "not built"])
        print(markdown_table(["env id", "kwargs", "file", "size"], rows))
        return 0
    if args.action == "build":
        for env_id, kwargs, spec in chosen:
            problem = dataclasses.replace(spec, **computed).build(progress=not args.quiet)
            path = save_table(table_from_problem(problem, table_key(spec)), args.out)
            print(f"{label(env_id, kwargs)}: {path} ({path.stat().st_size / 1024:.1f} KB)")
        named = {table_name(table_key(spec)) for _, _, spec in entries}
        for stale in sorted(Path(args.out).glob("*.json.gz")):
            if stale.name not in named:
                stale.unlink()
                print(f"removed {stale} (no shipped entry names it)")
        return 0
    failed, problems_of = 0, {}  # workload -> the problem computed on it (shared by its tables' row checks)
    rng = np.random.default_rng(0)
    for env_id, kwargs, spec in chosen:
        table = find_table(spec)
        if table is None:
            print(f"{label(env_id, kwargs)}: no usable table (run `mpq-gym tabular build`)")
            failed += 1
            continue
        if args.full:
            problem = dataclasses.replace(spec, **computed).build(progress=not args.quiet)
            problems = diff_tables(table, table_from_problem(problem, table.key))
        else:
            if spec.workload not in problems_of:
                problems_of[spec.workload] = dataclasses.replace(spec, **computed).build(progress=not args.quiet)
            rows = sorted(int(g) for g in rng.choice(len(table.groups), min(args.rows, len(table.groups)), replace=False))
            problems = check_rows(table, problems_of[spec.workload], rows)
        failed += bool(problems)
        print(f"{label(env_id, kwargs)}: " + ("agrees" if not problems else "DIFFERS: " + "; ".join(problems)))
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)
