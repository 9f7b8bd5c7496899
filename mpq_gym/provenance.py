"""Where a result came from: package and library versions, git commit, machine, date (``bench.json``)."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

#: distributions whose versions can change a number
LIBRARIES = ("torch", "numpy", "scipy", "gymnasium", "stable-baselines3", "sb3-contrib")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    """This process's Python and :data:`LIBRARIES` versions."""
    return {"python": platform.python_version(), **{name: _version(name) for name in LIBRARIES}}


def git_state(path: Path) -> dict[str, Any]:
    """The commit of the checkout that tracks the file ``path`` and whether its tree has uncommitted changes
    (both None otherwise, e.g. for an installed wheel, even one inside some other repository)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(path.parent), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None
    tracked = git("ls-files", "--error-unmatch", path.name) is not None
    commit = git("rev-parse", "HEAD") if tracked else None
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def device_name(device: torch.device | None = None) -> str:
    """The hardware behind ``device``: the GPU's name for CUDA, else the CPU's (``device`` None: the first
    GPU when one is present, as recorded before the ``device`` option)."""
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type if device.type != "cpu" else (platform.processor() or "cpu")


def provenance(device: torch.device | None = None) -> dict[str, Any]:
    """This process's provenance: mpq-gym version and git state, library versions, device, CPUs, date.
    ``device``: where the network ran (then recorded as ``torch_device``, e.g. ``cuda:0`` or ``cpu``, and
    ``device`` names its hardware)."""
    record = {"mpq_gym": _version("mpq-gym"), **git_state(Path(__file__)), **library_versions(),
              "device": device_name(device), "cpu_count": os.cpu_count(), "platform": platform.platform(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if device is not None:
        record["torch_device"] = str(device)
    return record


def library_differences(recorded: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{library: (recorded version, this process's)} for every library of :data:`LIBRARIES` (and Python) whose
    version differs from a recorded provenance (empty when it has none)."""
    if not recorded:
        return {}
    return {name: (recorded.get(name), version) for name, version in library_versions().items()
            if name in recorded and recorded[name] != version}
