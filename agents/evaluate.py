"""``python -m agents.evaluate RUN_DIR``: replay a trained agent and its best configuration, exactly.

Prints JSON: for the agent's deterministic episode and for the run's best configuration, the exact
metrics on ``--split`` (default test) and every cost.
"""
from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.type_aliases import PolicyPredictor

from agents.train import make_env
from agents.training import load_agent, model_path
from mpq_gym.cli import print_json, run_cli
from mpq_gym.config import FP32
from mpq_gym.errors import ConfigError


def rollout(agent: PolicyPredictor, env: gym.Env, deterministic: bool = True, seed: int = 0) -> dict[str, Any]:
    """One episode of ``agent`` on ``env`` (hidden state and action masks handled); the final info."""
    obs, info = env.reset(seed=seed)
    takes_masks = "action_masks" in inspect.signature(agent.predict).parameters
    state, start, done = None, np.array([True]), False
    while not done:
        kwargs = {"action_masks": env.unwrapped.action_masks()} if takes_masks else {}
        action, state = agent.predict(obs, state=state, episode_start=start, deterministic=deterministic, **kwargs)
        obs, _, terminated, truncated, info = env.step(action)
        start, done = np.array([False]), terminated or truncated
    return info


def evaluate_run(run_dir: str | Path, split: str = "test") -> dict[str, Any]:
    """Exact metrics and costs of the agent's greedy configuration and of the run's best one."""
    run_dir = Path(run_dir)
    args_path = run_dir / "args.json"
    if not args_path.exists():
        raise ConfigError(f"{args_path} is missing: give a run folder written by python -m agents.train")
    args = json.loads(args_path.read_text())
    env = make_env(args["algo"], args["env_id"], args["env_kwargs"], args["hyperparams"])
    path = model_path(run_dir, args["algo"])
    if not path.exists():
        path = model_path(run_dir, args["algo"], checkpoint=True)
    agent = load_agent(args["algo"], path, env)
    problem = env.unwrapped.problem
    out: dict[str, Any] = {"run_dir": str(run_dir), "algo": args["algo"], "env_id": args["env_id"], "split": split,
                           "fp32": problem.evaluate(problem.uniform(FP32), split)}
    final = rollout(agent, env)
    entries = {"agent": final["choices"]}
    best_path = run_dir / "best_config.json"
    if best_path.exists():
        entries["best"] = json.loads(best_path.read_text())["choices"]
    for name, choices in entries.items():
        config = problem.config(choices)
        out[name] = {"choices": list(map(int, choices)), "metrics": problem.evaluate(config, split),
                     "costs": problem.cost_model.costs(config),
                     "within_budget": env.unwrapped.costs.fits(np.asarray(choices))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.evaluate", description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    print_json(evaluate_run(args.run_dir, args.split))
    return 0


if __name__ == "__main__":
    run_cli(main)
