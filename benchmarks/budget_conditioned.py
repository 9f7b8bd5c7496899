"""One policy for a range of budgets: train budget-conditioned, score it at budgets it never trained on.

    python -m benchmarks.budget_conditioned --env MixedPrecision-EfficientNetLite0-v0 \
        --env-kwargs candidates=hardware sensitivity_images=64 --algo ppo --train-range 0.255 0.595 \
        --eval-budgets 0.3 0.45 0.375 0.255 0.595 --seeds 0 1 2 3 4 --minutes 3 \
        --out docs/data/budget_conditioned_lite0_hw.json

Each seed trains one agent from scratch in surrogate mode with ``budget_range=(lo, hi)``: every episode
draws its budget from lo, lo + 0.01, … ≤ hi (:class:`~mpq_gym.envs.env.MixedPrecisionEnv`), so with
``--train-range 0.255 0.595`` the budgets 0.3 and 0.45 are never drawn (they lie between grid points).
After training, no further learning: the policy's deterministic episode at each ``--eval-budgets`` value
(``reset(options={"budget": r})``) is scored by its normalized score at that budget (1 = the surrogate
optimum, 0 = random feasible configurations; :mod:`mpq_gym.scores`). ``--samples K`` also scores the best
of that episode and K *sampled* episodes of the same frozen policy at each budget (inference-time
sampling, as in neural combinatorial optimization: K surrogate evaluations, no learning). Results go to
``--out`` after every seed (an interrupted job resumes), then a markdown table (IQM with a 95 % bootstrap
CI over seeds).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.type_aliases import PolicyPredictor

from benchmarks.agents_table import preset
from mpq_gym.agents.training import env_on_problem, train
from mpq_gym.bench.aggregate import iqm_interval
from mpq_gym.budget import Budget
from mpq_gym.cli.common import parse_env_kwargs
from mpq_gym.cli.replay import rollout
from mpq_gym.envs.env import budget_grid, problem_from_env
from mpq_gym.markdown import markdown_table


def episode_score(info: dict) -> dict:
    """What a results file keeps of one evaluation episode's final ``info``."""
    return {"normalized": info["normalized_score"], "surrogate_quality": info["surrogate_quality"],
            "budget_used": info["budget_used"], "choices": info["choices"]}


def best_of_samples(agent: PolicyPredictor, env: gym.Env, budget: float, samples: int, seed: int) -> dict:
    """The best of ``samples`` stochastic episodes of a frozen ``agent`` at ``budget`` (torch seeded: the
    same seed, the same samples)."""
    torch.manual_seed(seed)
    infos = [rollout(agent, env, deterministic=False, seed=seed + i, options={"budget": budget})
             for i in range(samples)]
    return {**episode_score(max(infos, key=lambda info: info["normalized_score"])), "samples": samples}


def run_seed(algo: str, seed: int, problem, train_range: list[float], eval_budgets: list[float],
             minutes: float | None, episodes: int | None, overrides: dict, samples: int = 0) -> dict:
    """Train one budget-conditioned agent and score its deterministic episode at every evaluation budget."""
    hp = preset(algo, {**overrides, "env_kwargs": {**overrides.get("env_kwargs", {}), "budget_range": train_range}})
    budget = Budget("bops", train_range[0])
    env = env_on_problem(algo, problem, budget, hp)
    with tempfile.TemporaryDirectory() as run_dir:
        result = train(algo, env, episodes, seed, hp, run_dir, checkpoint_every=0, progress=False, minutes=minutes)
    single = env_on_problem(algo, problem, budget, {**hp, "n_envs": 1})
    scores = {}
    for r in eval_budgets:
        info = rollout(result.agent, single, deterministic=True, seed=seed, options={"budget": r})
        scores[f"{r:g}"] = episode_score(info)
        if samples:
            scores[f"{r:g}"]["sampled"] = best_of_samples(result.agent, single, r, samples, seed)
    return {"algo": algo, "seed": seed, "episodes": result.episodes, "wall_s": result.wall_s, "scores": scores}


def table(runs: list[dict], budgets: list[float], trained: set[float]) -> str:
    """Per evaluation budget: whether training drew it, IQM normalized [95 % CI] over seeds, the worst seed;
    the same for the best of the deterministic and the sampled episodes where the runs have samples."""
    sampled = all("sampled" in run["scores"][f"{r:g}"] for run in runs for r in budgets)
    rows = []
    for r in budgets:
        cells = [run["scores"][f"{r:g}"] for run in runs]
        row = [f"{r:g}", "yes" if round(r, 6) in trained else "**no**", len(cells)]
        for values in [np.array([c["normalized"] for c in cells])] + (
                [np.array([max(c["normalized"], c["sampled"]["normalized"]) for c in cells])] if sampled else []):
            point, low, high = iqm_interval(values)
            row += [f"{point:.4f} [{low:.4f}, {high:.4f}]", f"{values.min():.4f}"]
        rows.append(row)
    header = ["budget r", "drawn in training", "seeds", "normalized IQM [95 % CI]", "worst seed"]
    if sampled:
        k = runs[0]["scores"][f"{budgets[0]:g}"]["sampled"]["samples"]
        header += [f"best of it and {k} samples: IQM [95 % CI]", "worst seed"]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True)
    ap.add_argument("--env-kwargs", nargs="*", default=[])
    ap.add_argument("--algo", default="ppo")
    ap.add_argument("--train-range", nargs=2, type=float, required=True, metavar=("LO", "HI"))
    ap.add_argument("--eval-budgets", nargs="+", type=float, required=True)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--minutes", type=float, default=None, help="training time per seed")
    ap.add_argument("--episodes", type=int, default=None, help="also stop after this many episodes")
    ap.add_argument("--hp", default="{}", help="JSON merged into the preset")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=0,
                    help="also score the best of this many sampled episodes per budget (no learning)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.minutes is None and args.episodes is None:
        ap.error("give --minutes or --episodes")
    if args.samples < 0:
        ap.error(f"--samples must be 0 (none) or a positive number of episodes, not {args.samples}")
    torch.set_num_threads(args.threads)
    start = time.time()
    out = Path(args.out)
    store = json.loads(out.read_text()) if out.exists() else {"runs": []}
    kwargs = parse_env_kwargs(args.env_kwargs)
    problem = problem_from_env(args.env, kwargs, progress=True)
    trained = set(budget_grid(args.train_range).round(6).tolist())
    store.update(env=args.env, env_kwargs=kwargs, algo=args.algo, train_range=args.train_range,
                 minutes=args.minutes, command=" ".join(["python -m benchmarks.budget_conditioned"] + sys.argv[1:]))
    done = {run["seed"] for run in store["runs"] if run["algo"] == args.algo}
    for seed in args.seeds:
        if seed in done:
            continue
        run = run_seed(args.algo, seed, problem, args.train_range, args.eval_budgets, args.minutes, args.episodes,
                       json.loads(args.hp), args.samples)
        store["runs"].append(run)
        out.write_text(json.dumps(store, indent=1))
        print(f"seed {seed}: {run['episodes']} episodes, {run['wall_s']:.0f} s: "
              + ", ".join(f"r={k} {v['normalized']:.4f}" for k, v in run["scores"].items()), flush=True)
    mine = [run for run in store["runs"] if run["algo"] == args.algo]
    print(table(mine, args.eval_budgets, trained))
    print(f"total {time.time() - start:.0f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
