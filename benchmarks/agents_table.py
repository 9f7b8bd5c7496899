"""Agents against the known surrogate optimum: normalized score after a fixed training time.

    python -m benchmarks.agents_table --env MixedPrecision-EfficientNetLite0-v0 \
        --env-kwargs candidates=hardware sensitivity_images=64 --budget 0.375 \
        --algos ppo maskable_ppo reinforce --seeds 0 1 2 --episodes 3000 --out docs/data/agents_lite0_hw.json

Every run trains from scratch in surrogate mode (the presets in agents/hyperparams) on one shared problem
(one phase-1 table, one calibrated surrogate) for ``--episodes`` (deterministic: same seed, same run) and/or
``--minutes`` of wall time, and records the best configuration within budget as it goes (episodes.csv). The normalized score is
``(S(best) - S(random)) / (S(opt) - S(random))`` (:mod:`mpq_gym.scores`). Results go to ``--out`` (JSON,
one entry per (algo, seed), written after every run: an interrupted job resumes), then a markdown table
(IQM with a 95 % bootstrap CI over seeds, time to 0.99) and learning curves against wall time and
episodes (``--plot``).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mpq_gym.agents.training import load_hyperparams, train_on_problem
from mpq_gym.bench.aggregate import iqm_interval
from mpq_gym.budget import Budget
from mpq_gym.cli.common import parse_env_kwargs
from mpq_gym.envs.env import problem_from_env
from mpq_gym.markdown import markdown_table
from mpq_gym.search import SearchContext

TARGET = 0.99


def preset(algo: str, overrides: dict | None = None) -> dict:
    """``algo``'s preset with ``overrides`` on top (``env_kwargs`` merged key by key)."""
    hp = load_hyperparams(algo)
    for key, value in (overrides or {}).items():
        hp[key] = {**hp.get(key, {}), **value} if isinstance(value, dict) and key == "env_kwargs" else value
    return hp


def run_one(algo: str, seed: int, problem, budget: Budget, minutes: float, episodes: int | None,
            overrides: dict | None = None, tag: str = "") -> dict:
    """Train one agent; its curve (episode, wall s, best normalized) and final numbers."""
    hp = preset(algo, overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        result, rows = train_on_problem(algo, problem, budget, hp, episodes, seed, run_dir, minutes)
    curve = [(int(r["episode"]), float(r["wall_s"]), float(r["best_normalized"])) for r in rows]
    reached = next((c for c in curve if c[2] >= TARGET), None)
    return {"algo": algo + tag, "seed": seed, "overrides": overrides or {}, "episodes": result.episodes, "wall_s": result.wall_s,
            "best_normalized": result.best["normalized_score"] if result.best else float("nan"),
            "best_quality": result.best["quality"] if result.best else float("nan"),
            "best_choices": result.best["choices"] if result.best else None,
            "time_to_target_s": reached[1] if reached else None,
            "episodes_to_target": reached[0] if reached else None,
            "curve": curve[:: max(1, len(curve) // 400)] + curve[-1:]}


def table(runs: list[dict], algos: list[str]) -> str:
    """Per algorithm: IQM normalized [95 % CI], seeds reaching the target, median time / episodes to it."""
    rows = []
    for algo in algos:
        mine = [r for r in runs if r["algo"] == algo]
        if not mine:
            continue
        point, low, high = iqm_interval(np.array([r["best_normalized"] for r in mine]))
        hit = [r for r in mine if r["time_to_target_s"] is not None]
        rows.append([algo, len(mine), f"{point:.4f} [{low:.4f}, {high:.4f}]", f"{len(hit)}/{len(mine)}",
                     f"{np.median([r['time_to_target_s'] for r in hit]):.0f}" if hit else "-",
                     f"{np.median([r['episodes_to_target'] for r in hit]):.0f}" if hit else "-",
                     f"{np.mean([r['episodes'] for r in mine]):.0f}", f"{np.mean([r['wall_s'] for r in mine]):.0f}"])
    return markdown_table(["algo", "seeds", "normalized IQM [95 % CI]", f"seeds ≥ {TARGET}", f"median s to {TARGET}",
                           f"median episodes to {TARGET}", "episodes", "wall s"], rows)


def plot(runs: list[dict], algos: list[str], path: Path, title: str, ymin: float | None = None) -> None:
    """Best normalized score so far against wall time and against episodes, one line per run (``ymin``: the
    lower end of the score axis, to see the last percent)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, algo in enumerate(algos):
        for i, run in enumerate(r for r in runs if r["algo"] == algo):
            ep, wall, score = np.array(run["curve"]).T
            for ax, x in zip(axes, (wall, ep)):
                ax.plot(x, np.clip(score, -1, 1), color=colours[k % len(colours)], alpha=0.8,
                        label=algo if i == 0 else None)
    for ax, label in zip(axes, ("training wall time (s)", "episodes")):
        ax.axhline(TARGET, color="k", ls=":", lw=1)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    if ymin is not None:
        axes[0].set_ylim(ymin, 1.0 + (1.0 - ymin) * 0.05)
    axes[0].set_ylabel("best normalized score so far")
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True)
    ap.add_argument("--env-kwargs", nargs="*", default=[])
    ap.add_argument("--budget", type=float, required=True)
    ap.add_argument("--algos", nargs="+", default=["ppo", "maskable_ppo", "reinforce"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--minutes", type=float, default=None, help="stop a run after this long (machine-dependent)")
    ap.add_argument("--episodes", type=int, default=None, help="also stop after this many episodes")
    ap.add_argument("--out", required=True)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--hp", default="{}", help="JSON merged into every preset, e.g. '{\"env_kwargs\": "
                                               "{\"observation\": \"knapsack\"}}'")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: several jobs share the cores)")
    ap.add_argument("--tag", default="", help="suffix of the algorithm names in the results (e.g. +knapsack)")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    start = time.time()
    out = Path(args.out)
    store = json.loads(out.read_text()) if out.exists() else {"runs": []}
    kwargs = parse_env_kwargs(args.env_kwargs)
    problem = problem_from_env(args.env, kwargs, progress=True)
    budget = Budget("bops", args.budget)
    scale = SearchContext(problem, budget).score_scale
    store.update(env=args.env, env_kwargs=kwargs, budget=args.budget, minutes=args.minutes,
                 s_random=scale.random, s_opt=scale.optimum, command=" ".join(["python -m benchmarks.agents_table"]
                                                                              + sys.argv[1:]))
    done = {(r["algo"], r["seed"]) for r in store["runs"]}
    overrides = json.loads(args.hp)
    for algo in args.algos:
        for seed in args.seeds:
            if (algo + args.tag, seed) in done:
                continue
            run = run_one(algo, seed, problem, budget, args.minutes, args.episodes, overrides, args.tag)
            store["runs"].append(run)
            out.write_text(json.dumps(store, indent=1))
            print(f"{algo}{args.tag} seed {seed}: normalized {run['best_normalized']:.4f} after {run['episodes']} episodes, "
                  f"{run['wall_s']:.0f} s (0.99 at {run['time_to_target_s']})", flush=True)
    names = list(dict.fromkeys(r["algo"] for r in store["runs"]))
    print(table(store["runs"], names))
    if args.plot:
        plot(store["runs"], names, Path(args.plot), f"{args.env}, r = {args.budget:g}")
    print(f"S(random) {scale.random:.3f}, S(opt) {scale.optimum:.3f}; total {time.time() - start:.0f} s, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
