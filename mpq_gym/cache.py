"""On-disk cache: where it lives, content hashes, and atomic, corruption-checked files."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from mpq_gym.errors import CacheCorruptedError

CACHE_ENV = "MPQ_GYM_CACHE"


def cache_dir() -> Path:
    """Root of mpq-gym's cache: ``$MPQ_GYM_CACHE`` or ``~/.cache/mpq_gym``."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mpq_gym")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _update(h: "hashlib._Hash", obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"tensor{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        h.update(f"ndarray{obj.shape}{obj.dtype}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for key in sorted(obj, key=str):
            _update(h, str(key))
            _update(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for item in obj:
            _update(h, item)
        h.update(b"]")
    elif isinstance(obj, bytes):
        h.update(obj)
    else:
        h.update(json.dumps(obj, sort_keys=True, default=str).encode())


def content_hash(*parts: Any, length: int = 20) -> str:
    """Stable hex digest of tensors, arrays, mappings, sequences and JSON-able values."""
    h = hashlib.blake2b(digest_size=32)
    for part in parts:
        _update(h, part)
    return h.hexdigest()[:length]


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_cached(path: Path) -> Any:
    """Load a file written by :func:`save_atomic`; a damaged file raises :class:`CacheCorruptedError`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CacheCorruptedError(
            f"cache file {path} is corrupted ({type(exc).__name__}: {exc}). "
            f"Delete it (rm '{path}') and it will be rebuilt on the next run."
        ) from exc
