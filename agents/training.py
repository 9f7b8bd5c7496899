"""Train any agent on a mixed-precision env: presets, run folders, checkpoints, resume.

A run folder ``runs/<env>/<algo>_<seed>_<timestamp>/`` holds ``args.json`` (how to rebuild the run),
``tb/`` (TensorBoard), ``episodes.csv`` (one row per episode), ``best_config.json`` (best
configuration within budget so far), ``checkpoints/`` (latest resumable state) and the final model
(``model.zip`` for SB3 agents, ``model.pt`` for REINFORCE).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor

import mpq_gym  # noqa: F401  (registers the env ids)
from agents.haq_ddpg import HaqDDPG
from agents.recording import EpisodeCallback, EpisodeLog
from agents.reinforce import ReinforceConfig, ReinforceLSTM
from mpq_gym.envs.budget import Budget
from mpq_gym.envs.env import MixedPrecisionEnv
from mpq_gym.errors import ConfigError
from mpq_gym.problem import Problem
from mpq_gym.tracking import MlflowTracker

ALGOS = ("reinforce", "ddpg", "ppo", "maskable_ppo")
PRESETS = Path(__file__).parent / "hyperparams"
#: preset keys that are this project's, translated to SB3 arguments by :func:`build_agent`
EPISODE_KEYS = ("warmup_episodes", "rollout_episodes")


def _check_algo(algo: str) -> None:
    if algo not in ALGOS:
        raise ConfigError(f"unknown algo {algo!r}; choose one of {ALGOS}")


def load_hyperparams(algo: str, env_id: str | None = None, path: str | Path | None = None) -> dict[str, Any]:
    """The preset for ``algo`` ("default" then ``env_id``'s section), overridden by a user YAML file
    (same layout, or a flat mapping of hyperparameters)."""
    _check_algo(algo)
    hyperparams: dict[str, Any] = {}
    sources = [PRESETS / f"{algo}.yml"] + ([Path(path)] if path else [])
    for source in sources:
        if not source.exists():
            raise ConfigError(f"hyperparameter file {source} does not exist")
        try:
            data = yaml.safe_load(source.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must hold a mapping of hyperparameters")
        sections = [data.get("default", {}), data.get(env_id, {})] if ("default" in data or env_id in data) else [data]
        for section in sections:
            hyperparams.update(section or {})
    return hyperparams


def steps_per_episode(env: gym.Env) -> int:
    """Quantizer groups of the env (its fixed episode length)."""
    return int(env.unwrapped.n_groups)


def build_agent(algo: str, env: gym.Env, hyperparams: dict[str, Any], seed: int) -> BaseAlgorithm | ReinforceLSTM:
    """A fresh agent for ``env`` from resolved hyperparameters."""
    _check_algo(algo)
    hp = {k: v for k, v in hyperparams.items() if k != "env_kwargs"}
    steps = steps_per_episode(env)
    if algo == "reinforce":
        known = {f.name for f in fields(ReinforceConfig)}
        unknown = set(hp) - known
        if unknown:
            raise ConfigError(f"unknown REINFORCE hyperparameters {sorted(unknown)}; known: {sorted(known)}")
        return ReinforceLSTM(env, ReinforceConfig(**hp), seed)
    policy = hp.pop("policy", "MlpPolicy")
    if algo == "ddpg":
        if not isinstance(env.action_space, gym.spaces.Box):
            raise ConfigError("DDPG needs continuous actions: use a MixedPrecisionContinuous-* id")
        hp["learning_starts"] = int(hp.pop("warmup_episodes", 20)) * steps
        if "train_freq" in hp:
            hp["train_freq"] = tuple(hp["train_freq"]) if isinstance(hp["train_freq"], list) else hp["train_freq"]
        return HaqDDPG(policy, env, seed=seed, verbose=0, **hp)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ConfigError(f"{algo} here uses discrete actions: use a MixedPrecision-* id, not MixedPrecisionContinuous-*")
    hp["n_steps"] = int(hp.pop("rollout_episodes", 8)) * steps
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO
        if env.unwrapped.enforcement != "mask":
            raise ConfigError("maskable_ppo needs the env's mask enforcement: pass enforcement=mask")
        return MaskablePPO(policy, env, seed=seed, verbose=0, **hp)
    return PPO(policy, env, seed=seed, verbose=0, **hp)


def env_on_problem(algo: str, problem: Problem, budget: Budget, hyperparams: dict[str, Any]) -> MixedPrecisionEnv:
    """An env for ``algo`` on a shared, already built problem (continuous actions for DDPG, the preset's
    env kwargs), so several runs share one phase-1 table and surrogate."""
    return MixedPrecisionEnv(problem=problem, budget=budget.ratio, budget_metric=budget.metric,
                             budget_absolute=budget.absolute, continuous=algo == "ddpg",
                             **hyperparams.get("env_kwargs", {}))


def agent_class(algo: str) -> type:
    """The class that loads a saved ``algo`` agent."""
    _check_algo(algo)
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO
        return MaskablePPO
    return {"reinforce": ReinforceLSTM, "ddpg": HaqDDPG, "ppo": PPO}[algo]


def model_path(run_dir: Path, algo: str, checkpoint: bool = False) -> Path:
    """Where a run's final (or checkpointed) agent lives."""
    folder = run_dir / "checkpoints" if checkpoint else run_dir
    return folder / ("model.pt" if algo == "reinforce" else "model.zip")


def load_agent(algo: str, path: Path, env: gym.Env) -> BaseAlgorithm | ReinforceLSTM:
    """Load a saved agent onto ``env``."""
    if not path.exists():
        raise ConfigError(f"no saved agent at {path}: did the run finish or checkpoint?")
    cls = agent_class(algo)
    return cls.load(path, env) if algo == "reinforce" else cls.load(path, env=env)


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    agent: Any
    episodes: int
    best: dict[str, Any] | None


def _save(agent: Any, algo: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("tmp_" + path.name)
    agent.save(tmp)
    tmp.replace(path)


def train(algo: str, env: gym.Env, episodes: int, seed: int, hyperparams: dict[str, Any], run_dir: str | Path,
          checkpoint_every: int = 25, progress: bool = True, tracker: MlflowTracker | None = None) -> TrainResult:
    """Train (or resume, when ``run_dir`` holds a checkpoint) until ``episodes`` episodes in all; with a
    ``tracker``, per-episode metrics and the best configuration also go to MLflow."""
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = env if isinstance(env, Monitor) else Monitor(env)
    state_path = run_dir / "checkpoints" / "state.json"
    done = json.loads(state_path.read_text())["episodes"] if state_path.exists() else 0
    agent = (load_agent(algo, model_path(run_dir, algo, checkpoint=True), env) if done
             else build_agent(algo, env, hyperparams, seed))
    if algo == "ddpg" and done:
        agent.load_replay_buffer(run_dir / "checkpoints" / "replay_buffer.pkl")
    logger = configure(str(run_dir / "tb"), ["tensorboard"])
    steps = steps_per_episode(env)
    log = EpisodeLog(run_dir, episodes, steps, logger, episodes_done=done, progress=progress, tracker=tracker)

    def checkpoint(n: int) -> None:
        _save(agent, algo, model_path(run_dir, algo, checkpoint=True))
        if algo == "ddpg":
            agent.save_replay_buffer(run_dir / "checkpoints" / "replay_buffer.pkl")
        state_path.write_text(json.dumps({"episodes": n, "time": time.time()}))

    try:
        if not log.finished:
            if algo == "reinforce":
                every = max(checkpoint_every // agent.config.episodes_per_update, 1) * agent.config.episodes_per_update

                def on_episode(reward: float, info: dict) -> bool:
                    go_on = log.record(reward, info)
                    if checkpoint_every and (log.episodes % every == 0 or log.finished):
                        checkpoint(log.episodes)
                    return go_on

                agent.learn(episodes - done, on_episode, lambda stats: [logger.record(k, v) for k, v in stats.items()])
            else:
                agent.set_logger(logger)
                callback = EpisodeCallback(log, checkpoint, checkpoint_every)
                # SB3 rolls out whole rollouts; the callback stops at exactly ``episodes`` episodes
                agent.learn(total_timesteps=(episodes - done + 1) * steps * 64, callback=callback,
                            reset_num_timesteps=not done, progress_bar=False)
    finally:
        log.close()
    _save(agent, algo, model_path(run_dir, algo))
    if tracker is not None:
        for artifact in ("best_config.json", "episodes.csv", "args.json"):
            tracker.log_artifact(run_dir / artifact)
    return TrainResult(run_dir, agent, log.episodes, log.best)
