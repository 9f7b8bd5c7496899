"""Wall time of one benchmark grid run serially and on local Ray workers, side by side in one process.

Both runs start from a copy of the same warm cache (models, quantization, phase-1 table, surrogate
calibration), each with its own copy of the result store, so neither can reuse the other's
evaluations. Reports both times, the speed-up, and whether the rows are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from mpq_gym.bench.runner import BenchSpec, read_results, run_benchmark
from benchmarks.common import peak_rss_gb, reproduce_command
from mpq_gym.cache import CACHE_ENV, cache_dir
from mpq_gym.cli.common import parse_env_kwargs

VOLATILE = ("wall_s",)


def _rows(path: Path) -> list[tuple]:
    return sorted(tuple((k, v) for k, v in r.items() if k not in VOLATILE) for r in read_results(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default="MixedPrecision-EfficientNetLite0-v0")
    parser.add_argument("--env-kwargs", nargs="*", default=["candidates=hardware", "sensitivity_images=64"])
    parser.add_argument("--policies", default="random")
    parser.add_argument("--budgets", default="0.45,0.3")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--max-evaluations", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    spec = BenchSpec(args.env, parse_env_kwargs(args.env_kwargs), args.policies.split(","),
                     [float(b) for b in args.budgets.split(",")], args.seeds, args.max_evaluations)
    warm = cache_dir()
    times, outs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("serial", "ray"):
            cache = Path(tmp) / f"cache_{mode}"
            shutil.copytree(warm, cache)
            os.environ[CACHE_ENV] = str(cache)
            start = time.perf_counter()
            outs[mode] = run_benchmark(spec, Path(tmp) / mode, progress=False,
                                       ray="" if mode == "ray" else None, workers=args.workers)
            times[mode] = time.perf_counter() - start
        identical = _rows(outs["serial"]) == _rows(outs["ray"])
        cells = len(read_results(outs["serial"]))
    os.environ[CACHE_ENV] = str(warm)
    print(json.dumps({"cells": cells, "serial_s": round(times["serial"], 1), "ray_s": round(times["ray"], 1),
                      "workers": args.workers, "speedup": round(times["serial"] / times["ray"], 2),
                      "identical_rows": identical, "peak_rss_gb_driver": round(peak_rss_gb(), 2),
                      "command": reproduce_command("benchmarks.ray_speedup", argv)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
