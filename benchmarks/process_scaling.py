"""Two single-thread processes against one two-thread process: what a second worker can win on this machine.

``python -m benchmarks.process_scaling [--model resnet50] [--batch 32] [--repeats 3]``

Times a plain torchvision forward (random weights, no quantization) three ways, each in a fresh process:
one process with 2 torch threads, one with 1, and two 1-thread processes side by side. Prints images/s of
each and the ratio of the pair's combined throughput to the 2-thread process's (docs/benchmarks.md,
"Worker processes").
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def child(model: str, threads: int, batch: int, repeats: int) -> float:
    """Seconds per batch of ``batch`` images (mean of ``repeats`` after one warm-up)."""
    import torch
    import torchvision
    torch.set_num_threads(threads)
    net = getattr(torchvision.models, model)().eval()
    x = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        net(x[:4])
        start = time.perf_counter()
        for _ in range(repeats):
            net(x)
    return (time.perf_counter() - start) / repeats


def spawn(args: argparse.Namespace, threads: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.process_scaling", "--child", str(threads),
                             "--model", args.model, "--batch", str(args.batch), "--repeats", str(args.repeats)],
                            stdout=subprocess.PIPE, text=True)


def seconds(proc: subprocess.Popen) -> float:
    out, _ = proc.communicate()
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.process_scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(child(args.model, args.child, args.batch, args.repeats))
        return 0
    two_threads = seconds(spawn(args, 2))
    one_thread = seconds(spawn(args, 1))
    pair = [spawn(args, 1), spawn(args, 1)]
    pair_s = [seconds(p) for p in pair]
    rate = {"one process, 2 threads": args.batch / two_threads, "one process, 1 thread": args.batch / one_thread,
            "two processes, 1 thread each": sum(args.batch / s for s in pair_s)}
    print(json.dumps({"model": args.model, "batch": args.batch, "images_per_s": {k: round(v, 1) for k, v in rate.items()},
                      "pair_vs_two_threads": round(rate["two processes, 1 thread each"] / rate["one process, 2 threads"], 3),
                      "command": " ".join(["python -m benchmarks.process_scaling", *(argv or sys.argv[1:])])}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
