"""Environment throughput: ``python -m benchmarks.env_throughput``.

Surrogate-mode steps per second with random actions in one process (sensitivity table and surrogate
built first, not timed), on EfficientNet-Lite0 and on the ResNet50 structure (random weights, a few
images: only the mechanics are timed); and exact-mode episode time ÷ one exact evaluation of the
same split, measured side by side on configurations not seen before.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import gymnasium as gym
import numpy as np

import mpq_gym  # noqa: F401  (registers the ids)
from benchmarks.common import peak_rss_gb, reproduce_command
from mpq_gym.cli.common import print_json, run_cli
from mpq_gym.problem import graded_random_choices
from mpq_gym.workloads import SplitSizes


def steps_per_second(env: gym.Env, steps: int, seed: int = 0) -> float:
    """Random-action steps per second, resets included."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    n = env.unwrapped.n_candidates
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(n)))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def exact_episode_ratio(env: gym.Env, episodes: int, seed: int = 0) -> dict:
    """Median exact-mode episode time ÷ median direct exact evaluation, on fresh configurations."""
    problem = env.unwrapped.problem
    rng = np.random.default_rng(seed)
    choices = graded_random_choices(rng, 2 * episodes, len(problem.groups), len(problem.candidates))
    episode_times, eval_times = [], []
    for i in range(episodes):
        env.reset(seed=seed)
        start = time.perf_counter()
        for action in choices[2 * i]:
            env.step(int(action))
        episode_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        problem.evaluator.outputs(problem.config(choices[2 * i + 1]), problem.split)
        eval_times.append(time.perf_counter() - start)
    return {"episode_s": round(statistics.median(episode_times), 2), "exact_eval_s": round(statistics.median(eval_times), 2),
            "ratio": round(statistics.median(episode_times) / statistics.median(eval_times), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.env_throughput", description=__doc__)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--exact-episodes", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    effnet = gym.make("MixedPrecision-EfficientNetLite0-v0", budget=0.375, sensitivity_images=64)
    resnet = gym.make("MixedPrecision-ResNet50-v0", random_weights=True, sensitivity_images=2, surrogate_points=3,
                      workload_kwargs={"split_sizes": SplitSizes(4, 4, 4)})
    for env in (effnet, resnet):
        _ = env.unwrapped.problem.surrogate  # built before timing
    result = {
        "surrogate_steps_per_s": {
            "EfficientNetLite0 (50 steps/episode)": round(steps_per_second(effnet, args.steps)),
            "ResNet50 structure (54 steps/episode)": round(steps_per_second(resnet, args.steps))},
        "exact_mode_EfficientNetLite0_search_split": exact_episode_ratio(
            gym.make("MixedPrecision-EfficientNetLite0-v0", budget=8.0, reward_mode="exact",
                     problem=effnet.unwrapped.problem), args.exact_episodes),
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "command": reproduce_command("benchmarks.env_throughput", argv),
    }
    print_json(result)
    return 0


if __name__ == "__main__":
    run_cli(main)
