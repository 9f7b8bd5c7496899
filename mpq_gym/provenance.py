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


def provenance() -> dict[str, Any]:
    """This process's provenance: mpq-gym version and git state, library versions, device, CPUs, date."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else (platform.processor() or "cpu")
    return {"mpq_gym": _version("mpq-gym"), **git_state(Path(__file__)), **library_versions(),
            "device": device, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def library_differences(recorded: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{library: (recorded version, this process's)} for every library of :data:`LIBRARIES` (and Python) whose
    version differs from a recorded provenance (empty when it has none)."""
    if not recorded:
        return {}
    return {name: (recorded.get(name), version) for name, version in library_versions().items()
            if name in recorded and recorded[name] != version}
