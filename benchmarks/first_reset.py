"""Time to the first reset: ``python -m benchmarks.first_reset [--out docs/data/first_reset.json]``.

Each case runs in a fresh subprocess, which times ``import mpq_gym`` -> ``gym.make(ID, reward_mode=
"surrogate")`` -> the first ``reset()`` (``reset_s``), then one episode of random actions to its reward
(``first_reward_s``: the surrogate's calibration is part of it when nothing ships), and reports its peak
RSS (``resource.getrusage`` in the child):

- ``cold``: an empty ``MPQ_GYM_CACHE`` and ``tabular=False``: images decoded, quantizers fitted, phase 1
  and the surrogate's exact evaluations computed (minutes);
- ``warm``: the cache the cold case filled, ``tabular=False``;
- ``tabular``: the shipped table, an empty cache and ``MPQ_GYM_DATA`` pointing at a folder that does not
  exist (the network and the images are never loaded).

``--workers 1 2`` runs the ``cold`` case once per worker count (``gym.make(ID, workers=N)``), each from its own
empty cache; ``--env-kwargs`` adds kwargs to every case, e.g. a large network's cold start::

    python -m benchmarks.first_reset --env MixedPrecision-ResNet50-v0 --cases cold --workers 1 2 \
        --env-kwargs random_weights=true sensitivity_images=64
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV_ID = "MixedPrecision-EfficientNetLite0-v0"
CASES = ("cold", "warm", "tabular")


def child(env_id: str, tabular: bool, env_kwargs: dict) -> dict:
    """Run in the subprocess: the timings and peak RSS of one start."""
    import resource
    start = time.perf_counter()
    import gymnasium as gym

    import mpq_gym  # noqa: F401  (registers the ids)
    imported = time.perf_counter()
    env = gym.make(env_id, reward_mode="surrogate", tabular=tabular, **env_kwargs)
    env.reset(seed=0)
    reset = time.perf_counter()
    done, reward = False, 0.0
    while not done:
        _, reward, done, _, _ = env.step(env.action_space.sample())
    rewarded = time.perf_counter()
    problem = env.unwrapped.problem
    return {"import_s": round(imported - start, 2), "reset_s": round(reset - start, 2),
            "first_reward_s": round(rewarded - start, 2), "reward": float(reward),
            "from_table": problem.table is not None, "network_loaded": problem._workload is not None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def run_case(case: str, env_id: str, cache: Path, empty_cache: Path, env_kwargs: dict) -> dict:
    """One case in a fresh interpreter (see the module docstring for what each sets)."""
    env = {**os.environ, "MPQ_GYM_CACHE": str(cache)}
    if case == "tabular":
        env.update(MPQ_GYM_CACHE=str(empty_cache), MPQ_GYM_DATA=str(empty_cache / "no-data-here"))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.first_reset", "--child", case, "--env", env_id,
                           "--child-kwargs", json.dumps(env_kwargs)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = round(time.perf_counter() - started, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_reset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=ENV_ID)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES))
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="added to every case")
    parser.add_argument("--workers", nargs="*", type=int, default=None,
                        help="run the cold case once per worker count, each from an empty cache")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--child-kwargs", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.env, args.child == "tabular", json.loads(args.child_kwargs))))
        return 0
    from mpq_gym.cli.common import parse_env_kwargs  # here, not at the top: each child times `import mpq_gym` itself
    kwargs = parse_env_kwargs(args.env_kwargs)
    cases = [c.strip() for c in args.cases.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as empty:
        for case in cases:
            if case == "cold" and args.workers:
                for n in args.workers:  # each from its own empty cache
                    with tempfile.TemporaryDirectory() as own:
                        results[f"cold, workers={n}"] = run_case(case, args.env, Path(own), Path(empty),
                                                                 {**kwargs, "workers": n})
            else:
                results[case] = run_case(case, args.env, Path(cache), Path(empty), kwargs)
    report = {"env_id": args.env, "cases": results,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "load_avg_1min": os.getloadavg()[0]},
              "command": " ".join(["python -m benchmarks.first_reset", *(argv if argv is not None else sys.argv[1:])])}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
