"""``mpq-gym demo``: the main job on the embedded default.

EfficientNet-Lite0 on the ImageNet sample (found via ``MPQ_GYM_DATA`` or ../shared/data, else
downloaded when online; with no image data at all, DigitsCNN with a printed notice): trains a PPO
agent (3,000 episodes) in surrogate mode, runs the baselines at the same budget, prints the comparison table
and writes the Pareto plot, all under ``--out`` (a rerun resumes there).
"""
from __future__ import annotations

import time
from functools import partial

from mpq_gym.bench.policies import register_policy
from mpq_gym.bench.report import write_report
from mpq_gym.bench.runner import BenchSpec, run_benchmark
from mpq_gym.cli.common import add_device_arg, make_parser, positive_float, positive_int, run_cli
from mpq_gym.errors import MissingDataError
from mpq_gym.workloads.imagenet import find_imagenet_dir
from mpq_gym.workloads.imagenet_sample import download_imagenet_sample

MAIN_ENV = "MixedPrecision-EfficientNetLite0-v0"
FALLBACK_ENV = "MixedPrecision-DigitsCNN-v0"


def choose_env(data_dir: str | None = None) -> tuple[str, dict]:
    """The demo's env id and kwargs: EfficientNet-Lite0 when image data can be found or fetched."""
    try:
        return MAIN_ENV, {"data_dir": str(find_imagenet_dir(data_dir))}
    except MissingDataError as missing:
        try:
            return MAIN_ENV, {"data_dir": str(download_imagenet_sample())}
        except MissingDataError as failed:
            print(f"NOTICE: no ImageNet images ({missing}; {failed}).\n"
                  f"NOTICE: falling back to {FALLBACK_ENV} (sklearn digits): same pipeline, small model.")
            return FALLBACK_ENV, {}


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("demo", __doc__, "--out runs/demo")
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--budget", type=positive_float, default=0.375, help="BOPs budget, ratio of uniform W8A16")
    parser.add_argument("--episodes", type=positive_int, default=3000,
                        help="PPO training episodes (surrogate mode, 8 vector copies; ~45 s on 2 cores)")
    parser.add_argument("--minutes", type=positive_float, default=None,
                        help="also stop PPO after this long (results then depend on the machine's speed)")
    parser.add_argument("--max-evaluations", type=positive_int, default=4, help="exact evaluations per search")
    add_device_arg(parser)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    env_id, env_kwargs = choose_env(args.data_dir)
    env_kwargs.update(candidates="hardware", sensitivity_images=64)
    from mpq_gym.agents.agent_search import agent_search  # agents/ ships with the package
    register_policy("ppo", partial(agent_search, "ppo", episodes=args.episodes, minutes=args.minutes))
    spec = BenchSpec(env_id, env_kwargs, ["uniform", "greedy", "ilp", "evolution", "random", "ppo"], [args.budget],
                     seeds=1, max_evaluations=args.max_evaluations)
    paths = write_report(run_benchmark(spec, args.out, device=args.device))
    print(f"\n{env_id}, candidates W4A8/W8A8/W8A16, BOPs budget {args.budget:g} x W8A16, quality on the test split:\n")
    print(paths["table"].read_text())
    print(f"Pareto plot: {paths['plot']}\nresults: {paths['table'].parent / 'results.csv'}\n"
          f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    run_cli(main)
