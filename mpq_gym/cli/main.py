"""``mpq-gym COMMAND ...`` (or ``python -m mpq_gym COMMAND ...``): every command-line tool of mpq-gym.

Each command is a module of :mod:`mpq_gym.cli` with a ``main(argv) -> int``; it is imported only when
run, so ``mpq-gym --help`` is instant. Every command turns a bad input into one line on stderr and exit
status 2 (see :func:`mpq_gym.cli.common.run_cli`).
"""
from __future__ import annotations

import importlib
import sys

from mpq_gym import __version__
from mpq_gym.cli.common import run_cli

#: command -> (module under mpq_gym.cli, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("evaluate", "exact metrics of one configuration on a workload's split"),
    "layers": ("layers", "the quantizable layers of a workload (params, MACs, shapes) as JSON"),
    "cost": ("cost", "every hardware cost of a configuration (size, BOPs, latency, energy, LUT)"),
    "sensitivity": ("sensitivity", "the phase-1 sensitivity table of a workload and candidate set"),
    "bench": ("bench", "benchmark policies x budgets x seeds on an env id (table, Pareto plot)"),
    "validate": ("validate", "replay a benchmark's results.csv and flag rows that do not reproduce"),
    "compare": ("compare", "each policy vs a baseline on the same held-out samples, with paired bootstrap CIs"),
    "leaderboard": ("leaderboard", "replay every MPQ-Bench submission, rebuild LEADERBOARD.md (or submit one)"),
    "groundtruth": ("groundtruth", "the ground-truth table near the front: build it, or read its fidelity numbers"),
    "tabular": ("tabular", "the shipped problem tables (surrogate mode without network or data): build, check, list"),
    "train": ("train", "train an RL agent on an env id (run folder, checkpoints, resume)"),
    "tune": ("tune", "search an agent's hyperparameters with Optuna and write the best preset"),
    "replay": ("replay", "run a trained agent's policy and score its configuration exactly"),
    "curves": ("curves", "learning curves of agents against the baselines (the docs' figure)"),
    "demo": ("demo", "the main job: a PPO agent vs the baselines on EfficientNet-Lite0"),
}


def usage() -> str:
    """The top-level help text."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return ("usage: mpq-gym COMMAND [ARGS ...]   (or: python -m mpq_gym COMMAND ...)\n\n"
            "Mixed-precision quantization as a standard problem.\n\ncommands:\n" + "\n".join(lines) +
            "\n\n'mpq-gym COMMAND --help' shows a command's options and an example.")


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command's ``main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"mpq-gym {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of {', '.join(COMMANDS)} (mpq-gym --help)",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"mpq_gym.cli.{COMMANDS[name][0]}")
    return module.main(rest)


def run() -> None:
    """Console-script entry point (``mpq-gym``)."""
    run_cli(main)
