"""Surrogate-mode training speed with 1 vs 2 torch threads, side by side (alternating runs, one process).

    python -m benchmarks.agent_threads --env MixedPrecision-EfficientNetLite0-v0 \
        --env-kwargs candidates=hardware sensitivity_images=128 budget=0.375 --episodes 600 --repeats 2
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch

from mpq_gym.agents import training
from mpq_gym.agents.training import env_on_problem, load_hyperparams, train
from mpq_gym.cli.common import parse_env_kwargs
from mpq_gym.envs.env import check_env_kwargs, problem_from_env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True)
    ap.add_argument("--env-kwargs", nargs="*", default=[])
    ap.add_argument("--algo", default="ppo")
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    kwargs = parse_env_kwargs(args.env_kwargs)
    budget = check_env_kwargs(args.env, kwargs).budget_spec
    problem = problem_from_env(args.env, kwargs, progress=True)
    hp = load_hyperparams(args.algo)
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for threads in (1, 2):
            original = training.torch_threads
            training.torch_threads = lambda n, t=threads, o=original: o(t)  # force this thread count
            try:
                with tempfile.TemporaryDirectory() as run_dir:
                    start = time.perf_counter()
                    result = train(args.algo, env_on_problem(args.algo, problem, budget, hp), args.episodes, 0, hp,
                                   run_dir, checkpoint_every=0, progress=False)
                    rates[threads].append(result.episodes / (time.perf_counter() - start))
            finally:
                training.torch_threads = original
            print(f"{threads} thread(s): {rates[threads][-1]:.1f} episodes/s", flush=True)
    print("| torch threads | episodes/s (runs) | mean |\n|---|---|---|")
    for threads, values in rates.items():
        print(f"| {threads} | {', '.join(f'{v:.1f}' for v in values)} | {sum(values) / len(values):.1f} |")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB, "
          f"torch default threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
