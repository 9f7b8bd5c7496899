"""glibc's default allocator against :func:`mpq_gym.allocator.tune_allocator`, side by side.

    python -m benchmarks.allocator --workload efficientnet_lite0 --repeats 3

Each measurement is a fresh child process (``MPQ_GYM_MALLOC=system`` for the default), alternating
default / tuned ``--repeats`` times, with the same work: build the quantized model from the warm cache,
then time one FP32 and one W8A8 forward pass over the search split (``--threads`` torch threads). Reported
per mode: median wall time, kernel CPU time, minor page faults and the child's peak RSS; and the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

CHILD = "--child"


def child(workload_name: str, threads: int) -> dict:
    """One measurement in this process."""
    import torch

    from mpq_gym.config import FP32, Candidate, uniform_config
    from mpq_gym.evaluate.exact import build_quantized_model
    from mpq_gym.workloads import get_workload
    torch.set_num_threads(threads)
    workload = get_workload(workload_name)
    qmodel = build_quantized_model(workload, progress=False)
    data = workload.split("search")
    out = {}
    for name, candidate in (("fp32", FP32), ("W8A8", Candidate(8, 8))):
        qmodel.set_config(uniform_config(qmodel.layer_names, candidate))
        for x, _ in data.batches(workload.batch_size):  # warm-up: calibration, weight quantization
            qmodel(x[:2])
            break
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        with torch.inference_mode():
            for x, _ in data.batches(workload.batch_size):
                qmodel(x)
        after = resource.getrusage(resource.RUSAGE_SELF)
        out[name] = {"wall_s": time.perf_counter() - start, "sys_s": after.ru_stime - before.ru_stime,
                     "minor_faults": after.ru_minflt - before.ru_minflt}
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="efficientnet_lite0")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(CHILD, action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.workload, args.threads)))
        return 0
    runs: dict[str, list[dict]] = {"default": [], "tuned": []}
    for _ in range(args.repeats):
        for mode in runs:
            env = {**os.environ, "MPQ_GYM_MALLOC": "system" if mode == "default" else "tuned"}
            proc = subprocess.run([sys.executable, "-m", "benchmarks.allocator", CHILD, "--workload", args.workload,
                                   "--threads", str(args.threads)], env=env, capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("| pass | allocator | wall s (median) | kernel CPU s | minor page faults | peak RSS GB |")
    print("|---|---|---|---|---|---|")
    for name in ("fp32", "W8A8"):
        for mode, rs in runs.items():
            med = lambda key: float(np.median([r[name][key] for r in rs]))  # noqa: E731
            print(f"| {name} | {mode} | {med('wall_s'):.2f} | {med('sys_s'):.2f} | {med('minor_faults'):.0f} | "
                  f"{max(r['peak_rss_gb'] for r in rs):.2f} |")
        ratio = np.median([r[name]["wall_s"] for r in runs["default"]]) / np.median([r[name]["wall_s"] for r in runs["tuned"]])
        print(f"| {name} | **default ÷ tuned** | **{ratio:.2f}×** | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
