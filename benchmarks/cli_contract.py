"""The command-line contract on bad input: every case must exit with status 2, print one ``error:`` line
naming the fix, and never a traceback.

``python -m benchmarks.cli_contract [--out DIR]`` runs every case as a real subprocess
(``python -m mpq_gym COMMAND ...``, the ``mpq-gym`` command's module form) and prints a markdown
table; ``tests/test_cli_contract.py`` runs the same cases in-process.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpq_gym.bench.cells import COLUMNS

DIGITS = "MixedPrecision-DigitsCNN-v0"


@dataclass(frozen=True)
class Case:
    """One bad command line: ``{tmp}`` in an argument is replaced by the fixture folder."""

    name: str
    argv: tuple[str, ...]
    #: text the error line must contain (case-insensitive)
    expect: str


def _bench(*extra: str) -> tuple[str, ...]:
    return ("bench", "--env", DIGITS, "--policies", "uniform", "--budgets", "0.5", "--seeds", "1",
            "--out", "{tmp}/bench_out", "--quiet", *extra)


def _bench_kw(*pairs: str) -> tuple[str, ...]:
    return ("bench", "--env", DIGITS, "--policies", "uniform", "--budgets", "0.5", "--out", "{tmp}/bench_kw",
            "--quiet", "--env-kwargs", *pairs)


CASES: tuple[Case, ...] = (
    # ---------------------------------------------------------------- the tool itself
    Case("unknown command", ("evalute",), "unknown command"),
    # ---------------------------------------------------------------- evaluate
    Case("evaluate: no arguments", ("evaluate",), "required"),
    Case("evaluate: unknown workload", ("evaluate", "--workload", "nope"), "unknown workload"),
    Case("evaluate: unsupported bits", ("evaluate", "--workload", "digits_cnn", "--config", "uniform:W9A8"),
         "bit-width"),
    Case("evaluate: unparsable candidate", ("evaluate", "--workload", "digits_cnn", "--config", "uniform:WxA8"),
         "w<bits>a<bits>"),
    Case("evaluate: missing config file", ("evaluate", "--workload", "digits_cnn", "--config", "missing.json"),
         "neither"),
    Case("evaluate: garbage config file", ("evaluate", "--workload", "digits_cnn", "--config", "{tmp}/garbage.json"),
         "not valid json"),
    Case("evaluate: config of unknown layers", ("evaluate", "--workload", "digits_cnn", "--config",
                                                 "{tmp}/unknown_layer.json"), "does not have"),
    Case("evaluate: bad split", ("evaluate", "--workload", "digits_cnn", "--split", "train"), "invalid choice"),
    Case("evaluate: bad rounding", ("evaluate", "--workload", "digits_cnn", "--weight-rounding", "fancy"),
         "invalid choice"),
    Case("evaluate: unknown quantizer", ("evaluate", "--workload", "digits_cnn", "--quantizer", "v9"),
         "invalid choice"),
    Case("evaluate: missing data folder", ("evaluate", "--workload", "efficientnet_lite0", "--data-dir",
                                           "/nonexistent"), "not found"),
    Case("evaluate: missing weights file", ("evaluate", "--workload", "digits_cnn", "--weights", "/nonexistent.pt"),
         "nonexistent.pt"),
    Case("evaluate: garbage weights file", ("evaluate", "--workload", "digits_cnn", "--weights", "{tmp}/garbage.pt"),
         "garbage.pt"),
    Case("evaluate: weights of another model", ("evaluate", "--workload", "digits_cnn", "--weights",
                                                "{tmp}/wrong_state.pt"), "wrong_state.pt"),
    Case("evaluate: bare hf:", ("evaluate", "--workload", "hf:"), "hf:"),
    # ---------------------------------------------------------------- layers
    Case("layers: no arguments", ("layers",), "required"),
    Case("layers: unknown workload", ("layers", "--workload", "resnet51"), "unknown workload"),
    # ---------------------------------------------------------------- cost
    Case("cost: unsupported bits", ("cost", "--workload", "digits_cnn", "--config", "uniform:W1A8"), "bit-width"),
    Case("cost: missing LUT", ("cost", "--workload", "digits_cnn", "--lut", "{tmp}/missing.npy"), "missing.npy"),
    Case("cost: string LUT", ("cost", "--workload", "digits_cnn", "--lut", "{tmp}/lut_str.npy"), "float array"),
    Case("cost: npz LUT", ("cost", "--workload", "digits_cnn", "--lut", "{tmp}/lut.npz"), ".npz"),
    Case("cost: all-zero LUT", ("cost", "--workload", "digits_cnn", "--lut", "{tmp}/lut_zero.npy"), "all zeros"),
    Case("cost: complex LUT", ("cost", "--workload", "digits_cnn", "--lut", "{tmp}/lut_complex.npy"), "complex"),
    Case("cost: LUT of the wrong shape", ("cost", "--workload", "digits_cnn", "--lut", "{tmp}/lut_shape.npy"),
         "shape"),
    Case("cost: negative LUT", ("cost", "--workload", "digits_cnn", "--lut", "{tmp}/lut_negative.npy"), "negative"),
    Case("cost: garbage LUT", ("cost", "--workload", "digits_cnn", "--lut", "{tmp}/garbage.json"), "lookup table"),
    # ---------------------------------------------------------------- sensitivity
    Case("sensitivity: zero images", ("sensitivity", "--workload", "digits_cnn", "--images", "0"), ">= 1"),
    Case("sensitivity: images not a number", ("sensitivity", "--workload", "digits_cnn", "--images", "abc"),
         "whole number"),
    Case("sensitivity: bad candidate", ("sensitivity", "--workload", "digits_cnn", "--candidates", "W9A9"),
         "bit-width"),
    Case("sensitivity: empty candidates", ("sensitivity", "--workload", "digits_cnn", "--candidates", ","),
         "empty"),
    # ---------------------------------------------------------------- bench: arguments
    Case("bench: no arguments", ("bench",), "required"),
    Case("bench: unknown env id", ("bench", "--env", "Nope-v0", "--out", "{tmp}/b0"), "unknown env id"),
    Case("bench: budgets not numbers", _bench("--budgets", "abc"), "not a number"),
    Case("bench: negative budget", _bench("--budgets", "-0.5"), "> 0"),
    Case("bench: nan budget", _bench("--budgets", "nan"), "finite"),
    Case("bench: infinite budget", _bench("--budgets", "inf"), "finite"),
    Case("bench: empty budgets", _bench("--budgets", ""), "list of numbers"),
    Case("bench: budgets with a hole", _bench("--budgets", "0.5,,0.3"), "list of numbers"),
    Case("bench: zero evaluations", _bench("--max-evaluations", "0"), ">= 1"),
    Case("bench: train split", _bench("--report-split", "train"), "invalid choice"),
    Case("bench: a builtin as a policy", _bench("--policies", "os:system"), "search(ctx, seed)"),
    Case("bench: unknown policy", _bench("--policies", "nope"), "unknown policy"),
    Case("bench: unimportable policy", _bench("--policies", "no_such_module:f"), "cannot import"),
    Case("bench: empty policies", _bench("--policies", ""), "list of names"),
    Case("bench: zero seeds", _bench("--seeds", "0"), ">= 1"),
    Case("bench: negative seeds", _bench("--seeds", "-3"), ">= 1"),
    Case("bench: seeds not a number", _bench("--seeds", "abc"), "whole number"),
    Case("bench: zero workers", _bench("--workers", "0"), ">= 1"),
    Case("bench: missing plugin", _bench("--plugin", "no_such_plugin"), "cannot import plugin"),
    Case("bench: out is a file", ("bench", "--env", DIGITS, "--policies", "uniform", "--budgets", "0.5",
                                  "--out", "{tmp}/garbage.json", "--quiet"), "not a folder"),
    # ---------------------------------------------------------------- bench: env kwargs
    Case("bench: enforcement=wall", _bench_kw("enforcement=wall"), "enforcement"),
    Case("bench: budget=-1", _bench_kw("budget=-1"), "budget"),
    Case("bench: budget=nan", _bench_kw("budget=nan"), "budget"),
    Case("bench: budget=abc", _bench_kw("budget=abc"), "budget"),
    Case("bench: infeasible budget", ("bench", "--env", DIGITS, "--policies", "uniform", "--budgets", "1e-9",
                                      "--out", "{tmp}/b_infeasible", "--quiet"), "infeasible budget"),
    Case("bench: unknown kwarg", _bench_kw("foo=1"), "unknown keyword"),
    Case("bench: kwarg without value", _bench_kw("novalue"), "key=value"),
    Case("bench: kwarg given twice", _bench_kw("budget=0.5", "budget=0.4"), "twice"),
    Case("bench: bad candidates kwarg", _bench_kw("candidates=W9A9"), "bit-width"),
    Case("bench: reward_mode=fancy", _bench_kw("reward_mode=fancy"), "reward_mode"),
    Case("bench: sensitivity_images=0", _bench_kw("sensitivity_images=0"), "sensitivity_images"),
    Case("bench: weight_rounding=round", _bench_kw("weight_rounding=round"), "weight_rounding"),
    Case("bench: quantizer=v9", _bench_kw("quantizer=v9"), "quantizer"),
    Case("bench: tied=abc", _bench_kw("tied=abc"), "tied"),
    Case("bench: unknown budget metric", _bench_kw("budget_metric=watts"), "budget metric"),
    Case("bench: negative penalty", _bench_kw("penalty_coef=-1"), "penalty_coef"),
    Case("bench: continuous=maybe", _bench_kw("continuous=maybe"), "continuous"),
    Case("bench: unknown workload kwarg", _bench_kw("workload=nope"), "unknown workload"),
    Case("bench: reward_scale=nan", _bench_kw("reward_scale=nan"), "reward_scale"),
    # ---------------------------------------------------------------- validate
    Case("validate: missing results", ("validate", "{tmp}/nothing/results.csv"), "does not exist"),
    Case("validate: no bench.json", ("validate", "{tmp}/no_spec/results.csv"), "bench.json"),
    Case("validate: torn bench.json", ("validate", "{tmp}/torn_spec/results.csv"), "not valid json"),
    Case("validate: foreign results.csv", ("validate", "{tmp}/foreign/results.csv"), "columns"),
    # ---------------------------------------------------------------- train
    Case("train: no arguments", ("train",), "required"),
    Case("train: unknown algo", ("train", "--algo", "nope", "--env", DIGITS), "invalid choice"),
    Case("train: unknown env", ("train", "--algo", "ppo", "--env", "Nope-v0"), "unknown env id"),
    Case("train: zero episodes", ("train", "--algo", "ppo", "--env", DIGITS, "--episodes", "0"), ">= 1"),
    Case("train: negative episodes", ("train", "--algo", "ppo", "--env", DIGITS, "--episodes", "-1"), ">= 1"),
    Case("train: resume nothing", ("train", "--resume", "{tmp}/nothing"), "args.json"),
    Case("train: missing preset file", ("train", "--algo", "ppo", "--env", DIGITS, "--hyperparams",
                                        "{tmp}/missing.yml"), "does not exist"),
    Case("train: learning_rate abc", ("train", "--algo", "ppo", "--env", DIGITS, "--episodes", "1", "--hyperparams",
                                      "{tmp}/lr_abc.yml", "--runs-dir", "{tmp}/runs"), "learning_rate"),
    Case("train: unknown PPO hyperparameter", ("train", "--algo", "ppo", "--env", DIGITS, "--episodes", "1",
                                               "--hyperparams", "{tmp}/unknown_hp.yml", "--runs-dir", "{tmp}/runs"),
         "not_a_hyperparameter"),
    Case("train: budget=abc", ("train", "--algo", "ppo", "--env", DIGITS, "--episodes", "1", "--runs-dir",
                               "{tmp}/runs", "--env-kwargs", "budget=abc"), "budget"),
    Case("train: DDPG on a discrete id", ("train", "--algo", "ddpg", "--env", DIGITS, "--episodes", "1",
                                          "--runs-dir", "{tmp}/runs"), "continuous"),
    # ---------------------------------------------------------------- replay, curves, demo
    Case("replay: missing run", ("replay", "{tmp}/nothing"), "args.json"),
    Case("replay: bad split", ("replay", "{tmp}/nothing", "--split", "train"), "invalid choice"),
    Case("curves: zero seeds", ("curves", "--seeds", "0"), ">= 1"),
    Case("curves: setting without ratio", ("curves", "--setting", "hardware"), "candidates:ratio"),
    Case("curves: setting ratio abc", ("curves", "--setting", "hardware:abc"), "not a number"),
    Case("curves: zero episodes", ("curves", "--episodes", "0"), ">= 1"),
    Case("demo: negative budget", ("demo", "--budget", "-1"), "> 0"),
    Case("demo: zero episodes", ("demo", "--episodes", "0"), ">= 1"),
)


def make_fixtures(tmp: Path) -> None:
    """The files the cases name under ``{tmp}``."""
    import torch  # noqa: PLC0415 (only the fixtures need it)

    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "garbage.json").write_text("{ this is not json")
    (tmp / "unknown_layer.json").write_text(json.dumps({"no_such_layer": [4, 8]}))
    (tmp / "garbage.pt").write_bytes(b"\x00\x01garbage" * 100)
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp / "wrong_state.pt")
    np.save(tmp / "lut_str.npy", np.array([["a"] * 8] * 8))
    np.savez(tmp / "lut.npz", a=np.ones((4, 8, 8)))
    np.save(tmp / "lut_zero.npy", np.zeros((4, 8, 8)))
    np.save(tmp / "lut_complex.npy", np.ones((4, 8, 8)) * (1 + 1j))
    np.save(tmp / "lut_shape.npy", np.ones((8, 8)))
    np.save(tmp / "lut_negative.npy", -np.ones((4, 8, 8)))
    (tmp / "lr_abc.yml").write_text("learning_rate: abc\n")
    (tmp / "unknown_hp.yml").write_text("not_a_hyperparameter: 3\n")
    header = ",".join(COLUMNS) + "\n"
    (tmp / "no_spec").mkdir(exist_ok=True)
    (tmp / "no_spec" / "results.csv").write_text(header)
    (tmp / "torn_spec").mkdir(exist_ok=True)
    (tmp / "torn_spec" / "bench.json").write_text('{"env_id": "MixedPrecision-Dig')
    (tmp / "torn_spec" / "results.csv").write_text(header)
    (tmp / "foreign").mkdir(exist_ok=True)
    (tmp / "foreign" / "bench.json").write_text(json.dumps({"env_id": DIGITS}))
    (tmp / "foreign" / "results.csv").write_text("a,b,c\n1,2,3\n")


def resolve(case: Case, tmp: Path) -> list[str]:
    """The case's arguments with ``{tmp}`` filled in."""
    return [a.replace("{tmp}", str(tmp)) for a in case.argv]


def check(case: Case, status: int, stderr: str) -> str:
    """'' when the case kept the contract, else what broke."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    if "Traceback" in stderr:
        return "traceback"
    if status != 2:
        return f"exit status {status}"
    if len(errors) != 1:
        return f"{len(errors)} error lines"
    if case.expect.lower() not in errors[0].lower():
        return f"message lacks {case.expect!r}: {errors[0]}"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli_contract", description=__doc__)
    parser.add_argument("--out", default=None, help="fixture folder (default: a temporary one)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as default:
        tmp = Path(args.out or default)
        make_fixtures(tmp)
        rows, kept = [], 0
        for case in CASES:
            proc = subprocess.run([sys.executable, "-m", "mpq_gym", *resolve(case, tmp)], capture_output=True,
                                  text=True, timeout=900)
            broken = check(case, proc.returncode, proc.stderr)
            kept += not broken
            last = (proc.stderr.strip().splitlines() or [""])[-1][:110].replace("|", "\\|")
            rows.append(f"| {case.name} | {proc.returncode} | {'yes' if not broken else 'NO: ' + broken} | {last} |")
    print("| case | exit | kept the contract | error line |\n|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{kept}/{len(CASES)} keep the contract; {time.perf_counter() - started:.0f} s")
    print("reproduce: python -m benchmarks.cli_contract")
    return 0 if kept == len(CASES) else 1


if __name__ == "__main__":
    sys.exit(main())
