"""``mpq-gym replay RUN_DIR``: replay a trained agent and its best configuration, exactly.

Prints JSON: for the agent's deterministic episode and for the run's best configuration, the exact
metrics on ``--split`` (default test) and every cost.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.type_aliases import PolicyPredictor

from mpq_gym.agents.training import load_agent, make_env, model_path, policy_device, read_run_args, require_trusted
from mpq_gym.cli.common import add_device_arg, make_parser, print_json, run_cli
from mpq_gym.config import FP32
from mpq_gym.devices import with_device
from mpq_gym.errors import InputFileError
from mpq_gym.workloads.base import ALL_SPLITS, SPLITS


def rollout(agent: PolicyPredictor, env: gym.Env, deterministic: bool = True, seed: int = 0,
            options: dict | None = None) -> dict[str, Any]:
    """One episode of ``agent`` on ``env`` (hidden state and action masks handled; ``options`` go to
    ``reset``, e.g. ``{"budget": 0.3}`` on a budget-conditioned env); the final info."""
    obs, info = env.reset(seed=seed, options=options)
    takes_masks = "action_masks" in inspect.signature(agent.predict).parameters
    state, start, done = None, np.array([True]), False
    while not done:
        kwargs = {"action_masks": env.unwrapped.action_masks()} if takes_masks else {}
        action, state = agent.predict(obs, state=state, episode_start=start, deterministic=deterministic, **kwargs)
        obs, _, terminated, truncated, info = env.step(action)
        start, done = np.array([False]), terminated or truncated
    return info


def evaluate_run(run_dir: str | Path, split: str = "test", trust: bool = False,
                 device: str | None = None) -> dict[str, Any]:
    """Exact metrics and costs of the agent's greedy configuration and of the run's best one, the network on
    ``device`` (default: the run's env kwargs, else auto).

    A PPO/DDPG run folder not created on this machine is refused unless ``trust`` (its model is a pickle)."""
    run_dir = Path(run_dir)
    args = read_run_args(run_dir, "mpq-gym replay")
    require_trusted(run_dir, args["algo"], trust, "replaying it")
    env = make_env(args["env_id"], with_device(args["env_kwargs"], device), args["hyperparams"], args["algo"],
                   single=True)
    path = model_path(run_dir, args["algo"])
    if not path.exists():
        path = model_path(run_dir, args["algo"], checkpoint=True)
    agent = load_agent(args["algo"], path, env, policy_device(args["hyperparams"]))
    problem = env.unwrapped.problem
    out: dict[str, Any] = {"run_dir": str(run_dir), "algo": args["algo"], "env_id": args["env_id"], "split": split,
                           "fp32": problem.evaluate(problem.uniform(FP32), split)}
    final = rollout(agent, env)
    entries = {"agent": final["choices"]}
    best_path = run_dir / "best_config.json"
    if best_path.exists():
        try:
            best = json.loads(best_path.read_text())["choices"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise InputFileError(f"{best_path} is damaged ({type(exc).__name__}); restore it or delete it") from exc
        if not isinstance(best, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in best):
            raise InputFileError(f"{best_path} is damaged (choices is not a list of integers); restore it or delete it")
        entries["best"] = best
    for name, choices in entries.items():
        config = problem.config(choices)
        out[name] = {"choices": list(map(int, choices)), "metrics": problem.evaluate(config, split),
                     "costs": problem.cost_model.costs(config),
                     "within_budget": env.unwrapped.budget_table.fits(np.asarray(choices))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("replay", __doc__, "runs/MixedPrecision-DigitsCNN-v0/ppo_0_20261125-120000 --split test")
    parser.add_argument("run_dir")
    parser.add_argument("--split", default="test", choices=[*SPLITS, ALL_SPLITS])
    parser.add_argument("--trust", action="store_true",
                        help="replay a PPO/DDPG run folder made elsewhere (its model is a pickle: it can run code)")
    add_device_arg(parser)
    args = parser.parse_args(argv)
    print_json(evaluate_run(args.run_dir, args.split, args.trust, args.device))
    return 0


if __name__ == "__main__":
    run_cli(main)
