"""``mpq-gym leaderboard``: the MPQ-Bench leaderboard.

``build`` (the default) replays every entry under ``leaderboard/<suite>/<entry>/`` and rewrites
``leaderboard/LEADERBOARD.md``: one table per suite, ranked by the IQM of the normalized score (then of
Δ vs FP32) with stratified-bootstrap intervals; entries that fail a check or whose rows do not reproduce
are listed as failing, not ranked (exit status 1 when any fails). ``submit`` cuts one policy's rows out of
a suite run (``mpq-gym bench --suite NAME --out RUN``) into a new entry folder (``--tasks``: a partial entry of
the tasks that were run, ranked only against entries of the same tasks).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from mpq_gym.bench.leaderboard import BOARD, build_leaderboard, submit
from mpq_gym.bench.suites import SUITES, get_suite
from mpq_gym.cli.common import add_device_arg, env_kwargs_and_device, make_parser, names, run_cli
from mpq_gym.devices import with_device
from mpq_gym.errors import ConfigError

SUBCOMMANDS = ("build", "submit")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help"):
        argv = ["build", *argv]
    parser = make_parser("leaderboard", __doc__, "build", "submit runs/lite --suite mpqbench-v1-lite --policy ilp "
                         "--entry ilp --method 'HAWQ-V3 ILP' --link https://arxiv.org/abs/2011.10680")
    commands = parser.add_subparsers(dest="subcommand", required=True)
    build = commands.add_parser("build", help="replay every entry and rewrite LEADERBOARD.md")
    build.add_argument("--root", type=Path, default=Path("leaderboard"), help="the leaderboard folder")
    build.add_argument("--env-kwargs", nargs="*", default=[], metavar="K=V",
                       help="where this machine keeps the data, e.g. data_dir=/data/imagenet")
    add_device_arg(build)
    build.add_argument("--quiet", action="store_true")
    sub = commands.add_parser("submit", help="make an entry from a suite run")
    sub.add_argument("run", type=Path, help="the --out folder of `mpq-gym bench --suite NAME`")
    sub.add_argument("--suite", required=True, choices=sorted(SUITES))
    sub.add_argument("--policy", required=True, help="the policy whose rows make the entry")
    sub.add_argument("--entry", required=True, help="entry folder name (leaderboard/<suite>/<entry>)")
    sub.add_argument("--method", default="", help="method name shown on the board")
    sub.add_argument("--link", default="", help="paper or code URL")
    sub.add_argument("--command", default="", help="the command that produced the run (default: the bench command)")
    sub.add_argument("--tasks", type=names, default=None,
                     help="a partial entry of only these tasks (comma-separated), e.g. where the others' weights "
                          "are missing; ranked against entries of the same tasks")
    sub.add_argument("--root", type=Path, default=Path("leaderboard"))
    args = parser.parse_args(argv)
    if args.subcommand == "submit":
        entry = args.root / args.suite / args.entry
        if entry.exists():
            raise ConfigError(f"{entry} exists; choose another --entry name or delete the folder")
        submit(args.run, get_suite(args.suite), args.policy, entry, args.method, args.link, args.command,
               args.tasks)
        print(f"entry: {entry}\nnext: mpq-gym leaderboard build --root {args.root}")
        return 0
    overrides = with_device(*env_kwargs_and_device(args))  # the replay's data and device: this machine's
    suites = {name: get_suite(name) for name in SUITES}
    board = build_leaderboard(args.root, suites, overrides, progress=not args.quiet)
    data = json.loads((args.root / "leaderboard.json").read_text())
    failing = {s: sorted(d["failing"]) for s, d in data.items() if d["failing"]}
    print(f"{BOARD}: {board}")
    for name, summary in data.items():
        partial = "".join(f", partial ({', '.join(g['tasks'])}) {[e['name'] for e in g['ranked']]}"
                          for g in summary.get("partial", []))
        print(f"{name}: ranked {[e['name'] for e in summary['ranked']]}{partial}, failing {sorted(summary['failing'])}")
    return 1 if failing else 0


if __name__ == "__main__":
    run_cli(main)
