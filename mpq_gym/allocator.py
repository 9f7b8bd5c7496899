"""Keep large freed tensors in glibc's heap, so a forward pass does not pay the kernel for every activation.

PyTorch's CPU allocator takes each tensor from ``malloc``. glibc serves a block above its mmap threshold
(adaptive, at most 32 MiB by default) with a fresh ``mmap`` and unmaps it on ``free``, so every large
activation of every batch (EfficientNet-Lite0, batch 64: 100 MB after the stem) is a new zero-filled
mapping, touched page by page: one page fault per 4 KiB. On the project's 2-core machine that was 40 % of
all CPU time in the kernel during an exact evaluation. :func:`tune_allocator` raises the mmap and trim
thresholds with ``mallopt`` so freed blocks stay in the heap for the next batch (measured by
``python -m benchmarks.allocator``; docs/benchmarks.md). Numerics are untouched. It is glibc-only (elsewhere
a no-op) and is switched off with ``MPQ_GYM_MALLOC=system``.

Written by hand because no library does it: jemalloc or tcmalloc need ``LD_PRELOAD`` before Python starts,
which a package cannot arrange for its users.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV = "MPQ_GYM_MALLOC"
#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: blocks below this come from the heap; freed heap memory above the trim threshold goes back to the kernel
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 1 << 30

_state: dict[str, bool] = {}


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; whether they are raised (False off Linux/glibc
    or with ``MPQ_GYM_MALLOC=system``)."""
    if "tuned" not in _state:
        _state["tuned"] = _tune()
    return _state["tuned"]


def _tune() -> bool:
    if os.environ.get(ENV, "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
