"""Helpers shared by the benchmark scripts: peak memory, timing, and the report format."""
from __future__ import annotations

import resource
import sys
import time
from typing import Sequence

import torch

from mpq_gym.markdown import markdown_table


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024 ** 3 if sys.platform == "darwin" else 1024 ** 2)


def reproduce_command(module: str, argv: Sequence[str] | None) -> str:
    """The shell command that reruns ``python -m module`` with these arguments."""
    return " ".join(["python -m", module, *(argv if argv is not None else sys.argv[1:])])


@torch.inference_mode()
def time_forward(model: torch.nn.Module, batches: Sequence[torch.Tensor],
                 device: torch.device = torch.device("cpu")) -> float:
    """Seconds for one forward pass of ``model`` (already on ``device``) over ``batches`` (moved there, and the
    outputs brought back to the CPU, as the quantized side does)."""
    start = time.perf_counter()
    for x in batches:
        model(x.to(device)).cpu()
    return time.perf_counter() - start


def print_report(title: str, header: Sequence[str], rows: Sequence[Sequence[object]], started: float,
                 module: str, argv: Sequence[str] | None) -> None:
    """A benchmark's output: title, markdown table, wall time since ``started``, peak RSS, reproduce command."""
    print(f"\n{title}\n")
    print(markdown_table(header, rows))
    print(f"\ntotal {time.perf_counter() - started:.1f} s, peak RSS {peak_rss_gb():.2f} GB")
    print("reproduce: " + reproduce_command(module, argv))
