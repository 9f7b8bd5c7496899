"""``mpq-gym curves``: learning curves of agents vs random search, and the exact quality of what
each found.

For each setting (candidate set : budget ratio), every algorithm trains for ``--episodes`` per seed in
surrogate-reward mode on one shared problem; random search takes as many episodes of uniformly random
actions (under the same action wall). Afterwards the best configuration of every run is scored exactly
on the held-out split, next to the best uniform configuration within the same budget.
Outputs ``curves.png``, ``curves.md`` and ``curves.json`` in ``--out``; runs live in
``--out/<setting>/<algo>_<seed>`` and an interrupted invocation resumes from their checkpoints.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from mpq_gym.agents.recording import EpisodeLog, read_episodes
from mpq_gym.agents.training import env_on_problem, load_hyperparams, train
from mpq_gym.baselines.uniform import uniform_search
from mpq_gym.bench.cells import make_problem
from mpq_gym.cli.common import (add_device_arg, env_kwargs_and_device, make_parser, names, positive_float,
                                positive_int, run_cli)
from mpq_gym.devices import with_device
from mpq_gym.config import FP32
from mpq_gym.budget import Budget
from mpq_gym.envs.env import MixedPrecisionEnv
from mpq_gym.markdown import markdown_table
from mpq_gym.problem import Problem
from mpq_gym.search import SearchContext


def random_run(env: MixedPrecisionEnv, episodes: int, seed: int, run_dir: Path) -> dict[str, Any] | None:
    """Random search through the env: uniformly random (mask-respecting) actions for ``episodes`` episodes."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = EpisodeLog(run_dir, episodes, env.n_groups, progress=False)
    rng = np.random.default_rng(seed)
    while not log.finished:
        env.reset(seed=seed)
        done = False
        while not done:
            action = rng.choice(np.flatnonzero(env.action_masks()))
            if env.continuous:
                action = np.array([(action + 0.5) / env.n_candidates * 2 - 1], dtype=np.float32)
            _, reward, done, _, info = env.step(action)
        log.record(reward, info)
    log.close()
    return log.best


def run_setting(problem: Problem, ratio: float, metric: str, algos: list[str], seeds: int, episodes: int,
                out: Path, progress: bool) -> dict[str, Any]:
    """Train every algo x seed plus random search on one (problem, budget); score the bests exactly."""
    runs: dict[str, list[Path]] = {}
    for algo in [*algos, "random"]:
        for seed in range(seeds):
            run_dir = out / f"{algo}_{seed}"
            hyperparams = {} if algo == "random" else load_hyperparams(algo)
            env = env_on_problem(algo, problem, Budget(metric, ratio), hyperparams)
            if algo == "random":
                random_run(env, episodes, seed, run_dir)
            else:
                train(algo, env, episodes, seed, hyperparams, run_dir, checkpoint_every=50, progress=progress)
            runs.setdefault(algo, []).append(run_dir)
    ctx = SearchContext(problem, Budget(metric, ratio))
    uniform = uniform_search(ctx)
    result: dict[str, Any] = {
        "budget": ratio, "candidates": [str(c) for c in problem.candidates], "episodes": episodes,
        "fp32_test": problem.quality(problem.uniform(FP32), "test"),
        "uniform": {"config": str(problem.candidates[int(uniform[0])]), "test": problem.quality(problem.config(uniform), "test"),
                    "bops_ratio": ctx.total_cost(uniform) / ctx.budget_table.reference_cost}, "algos": {}}
    for algo, dirs in runs.items():
        rows = [read_episodes(d / "episodes.csv") for d in dirs]
        bests = [json.loads((d / "best_config.json").read_text()) for d in dirs]
        result["algos"][algo] = {
            "best_surrogate": [b["quality"] for b in bests],
            "test": [problem.quality(problem.config(b["choices"]), "test") for b in bests],
            "bops_ratio": [b["costs"]["bops_ratio"] for b in bests],
            "best_curve": [[float(r["best_quality"]) for r in rs] for rs in rows],
            "episode_curve": [[float(r["quality"]) for r in rs] for rs in rows]}
    return result


def plot(results: list[dict[str, Any]], path: Path, window: int = 20) -> None:
    """Two rows per setting: moving average of episode quality, and best-so-far, mean and range over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(6 * len(results), 7), squeeze=False)
    for col, res in enumerate(results):
        for algo, data in res["algos"].items():
            for row, key in enumerate(("episode_curve", "best_curve")):
                curves = np.array(data[key])
                if key == "episode_curve":
                    kernel = np.ones(window) / window
                    curves = np.array([np.convolve(c, kernel, mode="valid") for c in curves])
                x = np.arange(curves.shape[1]) + (window if key == "episode_curve" else 1)
                ax = axes[row, col]
                line, = ax.plot(x, curves.mean(axis=0), label=algo, linestyle="--" if algo == "random" else "-")
                ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), alpha=0.15, color=line.get_color())
        for row, label in enumerate((f"episode top-1 (surrogate), mean of {window}", "best so far (surrogate)")):
            ax = axes[row, col]
            ax.axhline(res["fp32_test"], color="gray", linewidth=0.8, linestyle=":")
            ax.set_ylabel(label)
            ax.set_xlabel("episode")
            ax.grid(alpha=0.3)
        axes[0, col].set_title(f"{'/'.join(res['candidates'])}, r = {res['budget']:g}", fontsize=9)
        axes[1, col].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: list[dict[str, Any]]) -> str:
    """Per setting and algorithm: best surrogate, exact test top-1 of the best configurations, uniform."""
    lines = []
    for res in results:
        lines += [f"**{','.join(res['candidates'])} at r = {res['budget']:g}** ({res['episodes']} episodes per run; "
                  f"FP32 {res['fp32_test']:.2f}; uniform {res['uniform']['config']} "
                  f"(BOPs ratio {res['uniform']['bops_ratio']:.3f}) {res['uniform']['test']:.2f} on test)", "",
                  ]
        rows = []
        for algo, d in res["algos"].items():
            test = np.array(d["test"])
            rows.append([algo, len(test), f"{np.mean(d['best_surrogate']):.2f}", ", ".join(f"{t:.2f}" for t in test),
                         f"{test.mean():.2f}", f"{test.mean() - res['uniform']['test']:+.2f}",
                         f"{np.mean(d['bops_ratio']):.3f}"])
        lines.append(markdown_table(["policy", "seeds", "best surrogate top-1 (mean)",
                                     "exact test top-1 of best, per seed", "mean", "vs uniform", "BOPs ratio"], rows))
        lines.append("")
    return "\n".join(lines)


def setting(text: str) -> tuple[str, float]:
    """``CANDIDATES:RATIO`` (e.g. ``hardware:0.375``)."""
    candidates, sep, ratio = text.rpartition(":")
    if not sep or not candidates:
        raise argparse.ArgumentTypeError(f"{text!r} is not CANDIDATES:RATIO, e.g. hardware:0.375")
    return candidates, positive_float(ratio)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("curves", __doc__,
                         "--env MixedPrecision-DigitsCNN-v0 --algos reinforce,ppo --episodes 60 --seeds 2 --out runs/curves_digits")
    parser.add_argument("--env", default="MixedPrecision-EfficientNetLite0-v0")
    parser.add_argument("--algos", type=names, default="reinforce,ppo,ddpg")
    parser.add_argument("--seeds", type=positive_int, default=3)
    parser.add_argument("--episodes", type=positive_int, default=300)
    parser.add_argument("--setting", type=setting, action="append", default=None, metavar="CANDIDATES:RATIO",
                        help="repeatable; default hardware:0.375 and expanded:0.25")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="K=V")
    parser.add_argument("--out", default="runs/curves")
    add_device_arg(parser)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    kwargs = with_device(*env_kwargs_and_device(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for candidates, ratio in args.setting or [("hardware", 0.375), ("expanded", 0.25)]:
        problem, metric = make_problem(args.env, {**kwargs, "candidates": candidates, "budget": ratio},
                                       progress=not args.quiet)
        results.append(run_setting(problem, ratio, metric, args.algos, args.seeds, args.episodes,
                                   out / f"{candidates}_{ratio}", not args.quiet))
    (out / "curves.json").write_text(json.dumps(results))
    plot(results, out / "curves.png")
    (out / "curves.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    run_cli(main)
