"""``python -m agents.train``: train an agent on a mixed-precision env id.

Example::

    python -m agents.train --algo ppo --env MixedPrecision-EfficientNetLite0-v0 --episodes 300 --seed 0 \\
        --env-kwargs budget=0.375 candidates=hardware sensitivity_images=64

Writes runs/<env>/<algo>_<seed>_<timestamp>/ (see :mod:`agents.training`); ``--resume RUN_DIR``
continues an interrupted run from its last checkpoint (``--episodes`` may raise its total).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

from agents.training import ALGOS, TrainResult, load_hyperparams, train
from mpq_gym.cli import parse_env_kwargs, print_json, run_cli
from mpq_gym.envs.registration import require_env_id
from mpq_gym.errors import ConfigError
from mpq_gym.tracking import MlflowTracker


def make_env(algo: str, env_id: str, env_kwargs: dict[str, Any], hyperparams: dict[str, Any]) -> gym.Env:
    """The env of a run: the preset's env kwargs, overridden by the user's."""
    require_env_id(env_id)
    return gym.make(env_id, **{**hyperparams.get("env_kwargs", {}), **env_kwargs})


def new_run_dir(runs_dir: Path, env_id: str, algo: str, seed: int) -> Path:
    """runs/<env>/<algo>_<seed>_<timestamp>/ (a fresh folder)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = runs_dir / env_id / f"{algo}_{seed}_{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = runs_dir / env_id / f"{algo}_{seed}_{stamp}-{suffix}"
    return run_dir


def train_run(algo: str, env_id: str, episodes: int, seed: int, env_kwargs: dict[str, Any] | None = None,
              hyperparams_file: str | None = None, runs_dir: str | Path = "runs", resume: str | Path | None = None,
              checkpoint_every: int = 25, progress: bool = True, mlflow: str | None = None) -> TrainResult:
    """Start a run in a new folder, or resume the run in ``resume`` with its recorded arguments.

    ``mlflow``: ``None`` for TensorBoard only; ``""`` for the local MLflow store; else a store or server URI.
    """
    if resume is not None:
        run_dir = Path(resume)
        args_path = run_dir / "args.json"
        if not args_path.exists():
            raise ConfigError(f"{args_path} is missing: --resume takes a run folder written by agents.train")
        saved = json.loads(args_path.read_text())
        algo, env_id, seed = saved["algo"], saved["env_id"], saved["seed"]
        env_kwargs, hyperparams = saved["env_kwargs"], saved["hyperparams"]
        episodes = max(episodes or 0, saved["episodes"])
    else:
        hyperparams = load_hyperparams(algo, env_id, hyperparams_file)
        env_kwargs = dict(env_kwargs or {})
        run_dir = new_run_dir(Path(runs_dir), env_id, algo, seed)
        run_dir.mkdir(parents=True)
    (run_dir / "args.json").write_text(json.dumps(
        {"algo": algo, "env_id": env_id, "episodes": episodes, "seed": seed, "env_kwargs": env_kwargs,
         "hyperparams": hyperparams}, indent=2))
    env = make_env(algo, env_id, env_kwargs, hyperparams)
    if mlflow is None:
        return train(algo, env, episodes, seed, hyperparams, run_dir, checkpoint_every, progress)
    params = {"algo": algo, "env_id": env_id, "seed": seed, "episodes": episodes, "env_kwargs": env_kwargs,
              "hyperparams": hyperparams, "run_dir": str(run_dir)}
    with MlflowTracker(mlflow, f"mpq-gym/{env_id}", run_dir.name, params) as tracker:
        return train(algo, env, episodes, seed, hyperparams, run_dir, checkpoint_every, progress, tracker)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=ALGOS)
    parser.add_argument("--env", help="env id, e.g. MixedPrecision-DigitsCNN-v0 (DDPG: MixedPrecisionContinuous-*)")
    parser.add_argument("--episodes", type=int, default=None, help="episodes in all (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hyperparams", default=None, help="YAML file overriding the preset")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="K=V", help="e.g. budget=0.375 candidates=expanded")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue this run from its checkpoint")
    parser.add_argument("--checkpoint-every", type=int, default=25, help="episodes between checkpoints")
    parser.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                        help="also log to MLflow: local SQLite store runs/mlflow.db, or the given store / server URI")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.resume is None and (args.algo is None or args.env is None):
        parser.error("--algo and --env are required (or --resume RUN_DIR)")
    result = train_run(args.algo, args.env, args.episodes or (None if args.resume else 300), args.seed,
                       parse_env_kwargs(args.env_kwargs), args.hyperparams, args.runs_dir, args.resume,
                       args.checkpoint_every, not args.quiet, args.mlflow)
    print_json({"run_dir": str(result.run_dir), "episodes": result.episodes, "best": result.best})
    return 0


if __name__ == "__main__":
    run_cli(main)
