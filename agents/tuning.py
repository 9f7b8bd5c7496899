"""Hyperparameter search for the agents with Optuna (what rl-baselines3-zoo uses).

Each trial samples a preset from the algorithm's search space, trains it from scratch in surrogate mode
on one shared problem for a fixed allowance (episodes and/or minutes), and scores it by the best
configuration's normalized score (:mod:`mpq_gym.scores`), minus a small charge for the time it took to
get within 0.01 of its final score, so that among presets that reach the optimum the fastest wins.
Trials report the best normalized score so far as they train, and Optuna's median pruner stops the
unpromising ones early. The study lives in an SQLite file, so an interrupted search resumes; the best
preset is written as a YAML file in the layout of ``agents/hyperparams``.
"""
from __future__ import annotations

import csv
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from mpq_gym.agents.recording import read_episodes
from mpq_gym.agents.training import ALGOS, PPO_ALGOS, env_on_problem, load_hyperparams, train
from mpq_gym.budget import Budget
from mpq_gym.errors import ConfigError
from mpq_gym.problem import Problem

#: objective = best normalized score - TIME_CHARGE x (fraction of the allowance used to get there)
TIME_CHARGE = 0.01
#: trials stopped by the clock report every this many seconds (the pruner's step is the elapsed time)
REPORT_SECONDS = 5


def sample_hyperparams(trial: Any, algo: str) -> dict[str, Any]:
    """One point of ``algo``'s search space (Optuna ``trial.suggest_*``), as preset overrides."""
    if algo in PPO_ALGOS:
        width = trial.suggest_categorical("width", [64, 128, 256])
        hp = {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
              "n_epochs": trial.suggest_categorical("n_epochs", [4, 10, 20]),
              "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256, 512]),
              "ent_coef": trial.suggest_float("ent_coef", 1e-4, 5e-2, log=True),
              "clip_range": trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3]),
              "gae_lambda": trial.suggest_categorical("gae_lambda", [0.9, 0.95, 0.99, 1.0]),
              "rollout_episodes": trial.suggest_categorical("rollout_episodes", [1, 2, 4, 8]),
              "n_envs": trial.suggest_categorical("n_envs", [4, 8, 16])}
        hp["policy_kwargs"] = ({"lstm_hidden_size": width, "net_arch": [width]} if algo == "recurrent_ppo"
                               else {"net_arch": [width, width]})
        return hp
    if algo == "reinforce":  # the batched preset: one update per rollout of n_envs copies, RLOO baseline
        # the policy net, up to 256 copies, entropy up to 0.5: the first study's space (LSTM only, <= 32 copies,
        # <= 0.05) missed the MLP at 64 copies and 0.05 that a later grid found, and on MiniLM entropy 0.1 at
        # 64 copies stops at a local optimum three groups from the optimum (docs/benchmarks.md)
        return {"policy": trial.suggest_categorical("policy", ["lstm", "mlp"]),
                "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
                "hidden_size": trial.suggest_categorical("hidden_size", [64, 128, 300]),
                "entropy_coef": trial.suggest_float("entropy_coef", 1e-3, 5e-1, log=True),
                "n_envs": trial.suggest_categorical("n_envs", [8, 16, 32, 64, 128, 256])}
    if algo == "ddpg":
        # slower σ decays (HAQ's 0.99 leaves σ < 0.01 after 400 episodes, a fifth of a 10-minute run), fewer
        # gradient steps per episode (more episodes per minute) and the network's width
        width = trial.suggest_categorical("width", [64, 128, 300])
        return {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True),
                "critic_learning_rate": trial.suggest_float("critic_learning_rate", 1e-4, 1e-2, log=True),
                "tau": trial.suggest_categorical("tau", [0.005, 0.01, 0.05]),
                "sigma": trial.suggest_float("sigma", 0.1, 1.0),
                "sigma_decay": trial.suggest_categorical("sigma_decay", [0.95, 0.99, 0.995, 0.998, 0.999]),
                "warmup_episodes": trial.suggest_categorical("warmup_episodes", [5, 20, 50]),
                "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256]),
                "gradient_steps": trial.suggest_categorical("gradient_steps", [-1, 16, 4]),
                "policy_kwargs": {"net_arch": {"pi": [width, width], "qf": [width, width]}}}
    raise ConfigError(f"unknown algo {algo!r}; choose one of {ALGOS}")


class _TrialReporter:
    """Takes the per-episode metrics a training run logs (the MLflow tracker's interface) and reports the
    best normalized score so far to the Optuna trial, pruning when told to: every ``every`` episodes, or,
    for a trial stopped by the clock (``seconds``), every ``seconds`` of training, with the elapsed time as
    Optuna's step. Trials of presets that run 8 or 256 episodes per update compare at equal time then, not
    at equal episodes, where the pruner would stop the large batches before their first few updates."""

    def __init__(self, trial: Any, every: int, seconds: float | None = None) -> None:
        self.trial, self.every, self.seconds = trial, every, seconds
        self.start, self.last = time.monotonic(), 0

    def _step(self, episode: int | None) -> int | None:
        """The step to report at now (None: not yet)."""
        if self.seconds is None:
            return None if episode is None or episode % self.every else episode
        bucket = int((time.monotonic() - self.start) // self.seconds)
        if bucket <= self.last:
            return None
        self.last = bucket
        return int(bucket * self.seconds)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import optuna
        at = self._step(step)
        if at is None:
            return
        value = metrics.get("episode/best_normalized", math.nan)
        if math.isfinite(value):
            self.trial.report(value, at)
            if self.trial.should_prune():
                raise optuna.TrialPruned()

    def log_artifact(self, path: str | Path) -> None:
        """Artifacts stay in the trial's temporary folder."""


def _base(algo: str, base: Mapping[str, Any] | None) -> dict[str, Any]:
    """The preset trials are sampled over: ``base``, else the algorithm's preset."""
    return dict(load_hyperparams(algo) if base is None else base)


def objective(algo: str, problem: Problem, budget: Budget, episodes: int | None, minutes: float | None,
              seed: int = 0, report_every: int = 50, base: Mapping[str, Any] | None = None) -> Callable[[Any], float]:
    """The Optuna objective: train one sampled preset (over ``base``, default the algorithm's preset), return
    its (time-charged) normalized score."""
    base = _base(algo, base)

    def run(trial: Any) -> float:
        hp = {**base, **sample_hyperparams(trial, algo)}
        env = env_on_problem(algo, problem, budget, hp)
        with tempfile.TemporaryDirectory() as run_dir:
            result = train(algo, env, episodes, seed, hp, run_dir, checkpoint_every=0, progress=False,
                           tracker=_TrialReporter(trial, report_every, REPORT_SECONDS if minutes else None),
                           minutes=minutes)
            rows = read_episodes(Path(run_dir) / "episodes.csv")
        if result.best is None:
            return -1.0
        final = float(result.best["normalized_score"])
        first = next(int(r["episode"]) for r in rows if float(r["best_normalized"]) >= final - 0.01)
        trial.set_user_attr("normalized", final)
        trial.set_user_attr("episodes", result.episodes)
        trial.set_user_attr("wall_s", result.wall_s)
        return final - TIME_CHARGE * first / max(result.episodes, 1)
    return run


def _warmup(minutes: float | None) -> int:
    """The pruner's warm-up in report steps: 200 episodes, or a third of a clock-stopped trial (seconds)."""
    return 200 if minutes is None else int(minutes * 60 / 3)


def tune(algo: str, problem: Problem, budget: Budget, trials: int, storage: Path, study_name: str,
         episodes: int | None = 2000, minutes: float | None = None, seed: int = 0,
         base: Mapping[str, Any] | None = None) -> Any:
    """Run (or resume) the study, each trial's preset sampled over ``base`` (default the algorithm's preset);
    returns it."""
    import optuna
    storage.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=study_name, storage=f"sqlite:///{storage}", direction="maximize",
                                load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=_warmup(minutes)))
    remaining = trials - len([t for t in study.trials if t.state.is_finished()])
    if remaining > 0:
        study.optimize(objective(algo, problem, budget, episodes, minutes, seed, base=base), n_trials=remaining)
    return study


def write_trials(study: Any, path: Path) -> Path:
    """Every trial of ``study`` as CSV: number, state, objective, normalized score, episodes, seconds, params."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "objective", "normalized", "episodes", "duration_s", "params"])
        for t in study.trials:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
            writer.writerow([t.number, t.state.name, t.value, t.user_attrs.get("normalized", ""),
                             t.user_attrs.get("episodes", ""), "" if seconds is None else round(seconds, 1),
                             json.dumps(t.params)])
    return path


def write_preset(study: Any, algo: str, env_id: str, path: Path, command: str,
                 base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The best trial's preset (over ``base``, default the algorithm's preset) as ``agents/hyperparams`` YAML
    (``default`` section), with the study's command."""
    import optuna
    best = study.best_trial
    hp = {**_base(algo, base), **sample_hyperparams(optuna.trial.FixedTrial(best.params), algo)}
    header = (f"# {algo} preset found by Optuna on {env_id}: normalized {best.user_attrs.get('normalized')}, "
              f"objective {best.value:.4f}, trial {best.number} of {len(study.trials)}\n# {command}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump({"default": hp}, sort_keys=True))
    return hp
