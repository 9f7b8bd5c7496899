"""Where the network runs: ``device="auto" | "cpu" | "cuda[:N]" | "mps"``, validated once, with a clear error.

The fake-quant core fits every quantizer on the CPU (ranges, scales: the caches stay device-independent),
learns AdaRound on the chosen device (its result stored on the CPU, under a key with :func:`device_tag`) and
runs the forward passes -- exact evaluation, phase 1, calibration -- on the chosen device; outputs come back
to the CPU. On the CPU nothing changes, bit for bit. The command lines take ``--device``
(:func:`mpq_gym.cli.common.add_device_arg`); :func:`with_device` adds it to env kwargs.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from mpq_gym.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
#: how much larger a batch the forward passes take on an accelerator than on the CPU
ACCELERATOR_BATCH_FACTOR = 4


def resolve_device(spec: str | torch.device = "cpu") -> torch.device:
    """The ``torch.device`` of ``spec``: ``auto`` is CUDA when available, else the CPU; an unavailable device is
    a :class:`ConfigError` naming what to use instead."""
    name = str(spec)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", name):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name!r} but this torch build sees no CUDA GPU: use device='cpu' or 'auto'")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device={name!r} but only {torch.cuda.device_count()} CUDA device(s) exist: "
                              f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
        return torch.device(name)
    if name == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError("device='mps' but Apple's Metal backend is not available here: use device='cpu'")
        return torch.device("mps")
    raise ConfigError(f"device={name!r} is not a device; choose one of {', '.join(DEVICES)}")


def batch_size_for(device: torch.device, cpu_batch_size: int) -> int:
    """The forward-pass batch size on ``device``: the CPU's, or :data:`ACCELERATOR_BATCH_FACTOR` times it."""
    return cpu_batch_size if device.type == "cpu" else cpu_batch_size * ACCELERATOR_BATCH_FACTOR


def device_tag(device: torch.device) -> tuple[str, ...]:
    """What a cache key adds for results computed on ``device``: nothing on the CPU (so CPU keys stay what they
    were), the device type elsewhere (an accelerator's float results differ in the last bits)."""
    return () if device.type == "cpu" else (device.type,)


def with_device(env_kwargs: Mapping[str, Any], device: str | None) -> dict[str, Any]:
    """``env_kwargs`` with ``device`` set (a copy, unchanged when ``device`` is None: the env's default, ``auto``).
    The device says where the network runs, not what the problem is: callers keep it out of what they record
    as the problem (``bench.json``, a run's ``args.json``) and note it in the provenance instead."""
    return dict(env_kwargs) if device is None else {**env_kwargs, "device": device}
