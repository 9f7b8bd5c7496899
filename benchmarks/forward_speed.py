"""Faster forward passes for the fake-quant model: memory layout and compilation, measured side by side.

    python -m benchmarks.forward_speed --workload efficientnet_lite0 --images 64 --out docs/data/forward_speed.json

Variants, each timed over the same images under the same configuration (alternating, ``--repeats`` times,
medians): ``eager`` (today), ``channels_last`` (model and inputs in NHWC), ``compile`` (``torch.compile``
of the fake-quant model, default inductor backend; its first call, which compiles, is reported apart, and
so is the first call after switching configuration, which may recompile). Reported: seconds per pass,
images/s, speed-up over eager, and whether the outputs are *identical* to eager's (the adoption rule:
>= 1.3x faster with identical results).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import peak_rss_gb, print_report
from mpq_gym.cli.common import add_workload_args, workload_from_args
from mpq_gym.config import Candidate, uniform_config
from mpq_gym.evaluate.exact import build_quantized_model

MODULE = "benchmarks.forward_speed"


@torch.inference_mode()
def run(model: torch.nn.Module, batches: list[torch.Tensor]) -> tuple[float, torch.Tensor]:
    """Seconds for one pass over ``batches`` and the concatenated outputs."""
    start = time.perf_counter()
    out = torch.cat([model(x).float() for x in batches])
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_args(parser)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    workload = workload_from_args(args)
    qmodel = build_quantized_model(workload, progress=False)
    names = qmodel.layer_names
    w8a8, mixed = uniform_config(names, Candidate(8, 8)), {**uniform_config(names, Candidate(8, 8)),
                                                          **{n: Candidate(4, 8) for n in names[::3]}}
    qmodel.set_config(w8a8)
    x = next(workload.split("search").batches(args.images))[0]
    batches = list(x.split(workload.batch_size))
    results = {}
    _, reference = run(qmodel, batches)
    compiled = torch.compile(qmodel)
    start = time.perf_counter()
    run(compiled, batches)
    first_compile = time.perf_counter() - start
    variants = {"eager": (qmodel, batches), "compile": (compiled, batches)}
    times: dict[str, list[float]] = {k: [] for k in (*variants, "channels_last")}
    outputs = {}
    for _ in range(args.repeats):
        for name, (model, inputs) in variants.items():
            seconds, outputs[name] = run(model, inputs)
            times[name].append(seconds)
        qmodel.model.to(memory_format=torch.channels_last)
        seconds, outputs["channels_last"] = run(qmodel, [b.contiguous(memory_format=torch.channels_last) for b in batches])
        times["channels_last"].append(seconds)
        qmodel.model.to(memory_format=torch.contiguous_format)
    qmodel.set_config(mixed)
    start = time.perf_counter()
    run(compiled, batches)
    switch = time.perf_counter() - start
    eager = statistics.median(times["eager"])
    for name, ts in times.items():
        t = statistics.median(ts)
        results[name] = {"seconds": t, "images_per_s": len(x) / t, "speedup": eager / t,
                         "identical": bool(torch.equal(outputs[name], reference)),
                         "max_abs_diff": float((outputs[name] - reference).abs().max())}
    rows = [[k, f"{v['seconds']:.2f}", f"{v['images_per_s']:.1f}", f"{v['speedup']:.2f}x",
             "yes" if v["identical"] else f"no ({v['max_abs_diff']:.2g})"] for k, v in results.items()]
    print_report(f"Forward speed, {workload.name}, W8A8 fake-quant, {len(x)} images, {torch.get_num_threads()} threads",
                 ["variant", "s per pass", "images/s", "vs eager", "identical to eager"], rows, started, MODULE, argv)
    print(f"torch.compile: first call {first_compile:.1f} s, first call after a configuration switch {switch:.1f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"workload": workload.name, "images": len(x), "results": results,
                                        "compile_first_call_s": first_compile, "compile_after_switch_s": switch,
                                        "threads": torch.get_num_threads(), "peak_rss_gb": peak_rss_gb()}, indent=1))


if __name__ == "__main__":
    main()
