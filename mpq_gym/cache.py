"""On-disk cache: where it lives, content hashes, and atomic, checksummed files.

Every file written by :func:`save_atomic` starts with one header line::

    MPQGYM-CACHE 2 <sha256> <lineage> <entry>\\n

followed by a ``torch.save`` payload. ``sha256`` covers the entry name, the lineage and the payload, so a
flipped byte, a truncated file, or a valid file copied under another name all fail verification.
``entry`` is ``<folder>/<file name>`` (what the file is), ``lineage`` names one line of descent of the
entry: it is kept when the entry grows (a quantizer cache gains layers) and changes when the entry is
recomputed from scratch, so memoised results can name the exact cache content they came from.

:func:`load_cached` verifies the checksum, then loads with ``torch.load(weights_only=True)`` (no pickle
code ever runs, even for a planted file), then applies the caller's validator. Any failure warns
(:class:`~mpq_gym.errors.CacheIntegrityWarning`, naming the file), discards the file, records the entry in
the invalidation journal (``invalidated.log``; the result store drops rows computed from it) and returns
``None``: the caller recomputes. A damaged cache never raises and never yields a wrong number.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from mpq_gym.errors import CacheIntegrityWarning

CACHE_ENV = "MPQ_GYM_CACHE"
MAGIC = b"MPQGYM-CACHE"
#: version of the header layout (files without this header are discarded and rebuilt)
FILE_FORMAT = 2
JOURNAL = "invalidated.log"
_MAX_HEADER = 1024

#: validator: returns True (or None) when the loaded object has the expected structure
Validator = Callable[[Any], "bool | None"]


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


def entry_key(path: Path) -> str:
    """The name of a cache entry: ``<folder>/<file name>`` (e.g. ``fp32_outputs/1a2b....pt``)."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def _digest(entry: str, lineage: str, payload: bytes | memoryview) -> str:
    h = hashlib.sha256()
    h.update(f"{entry}\n{lineage}\n".encode())
    h.update(payload)
    return h.hexdigest()


def new_lineage() -> str:
    """A fresh lineage id (an entry recomputed from scratch)."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class CacheEntry:
    """A verified cache file: the object, its checksum and its lineage."""

    obj: Any
    digest: str
    lineage: str
    key: str


def save_atomic(obj: Any, path: Path, lineage: str | None = None) -> CacheEntry:
    """Write ``obj`` with a checksummed header to a temporary file, then rename: readers never see half a
    file, and any later damage is detected by :func:`load_cached`. Only tensors, plain containers, numbers
    and strings may be cached (they must load with ``weights_only=True``). ``lineage`` continues an entry
    (default: a fresh one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getbuffer()
    key, lineage = entry_key(path), lineage or new_lineage()
    digest = _digest(key, lineage, payload)
    header = b" ".join([MAGIC, str(FILE_FORMAT).encode(), digest.encode(), lineage.encode(), key.encode()]) + b"\n"
    write_atomic(path, header, payload)
    return CacheEntry(obj, digest, lineage, key)


def write_atomic(path: Path, *chunks: bytes | memoryview) -> None:
    """Write ``chunks`` to a temporary file beside ``path``, then rename it over ``path``: readers see the
    old file or the whole new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class _Damaged(Exception):
    pass


class _View(io.RawIOBase):
    """A read-only, seekable file over a memoryview (``torch.load`` reads the verified bytes, no copy)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view, self._pos = view, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), len(self._view) - self._pos))
        buffer[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        out = bytes(self._view[self._pos:end])
        self._pos = max(self._pos, end)
        return out


def _read_all(path: Path) -> tuple[memoryview, os.stat_result]:
    with open(path, "rb", buffering=0) as handle:
        stat = os.fstat(handle.fileno())
        buffer = bytearray(stat.st_size)
        view, n = memoryview(buffer), 0
        while n < len(buffer):
            got = handle.readinto(view[n:])
            if not got:
                break
            n += got
    return view[:n], stat


def _verified(path: Path, data: memoryview) -> tuple[Any, str, str]:
    end = bytes(data[:_MAX_HEADER]).find(b"\n")
    fields = bytes(data[:end]).split(b" ") if end >= 0 else []
    if len(fields) != 5 or fields[0] != MAGIC:
        raise _Damaged("no mpq-gym cache header: damaged, or written by an older mpq-gym")
    if fields[1] != str(FILE_FORMAT).encode():
        raise _Damaged(f"cache file format {fields[1].decode(errors='replace')}, expected {FILE_FORMAT}")
    digest, lineage, key = (f.decode("ascii", errors="replace") for f in fields[2:])
    if key != entry_key(path):
        raise _Damaged(f"it holds the entry {key!r}, not {entry_key(path)!r}")
    payload = data[end + 1:]
    if _digest(key, lineage, payload) != digest:
        raise _Damaged("SHA-256 checksum mismatch")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(_View(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a verified payload that does not load is still not usable
        raise _Damaged(f"payload does not load ({type(exc).__name__})") from exc
    return obj, digest, lineage


def load_entry(path: Path, validate: Validator | None = None) -> CacheEntry | None:
    """The verified entry at ``path``, or ``None`` when it is absent or damaged (then recompute it).

    A damaged file (checksum mismatch, truncation, foreign header, wrong entry name, or an object that
    ``validate`` rejects) is discarded with a :class:`CacheIntegrityWarning` naming it, and recorded in the
    invalidation journal."""
    path = Path(path)
    if not path.exists():
        return None
    stat = None
    try:
        data, stat = _read_all(path)
        obj, digest, lineage = _verified(path, data)
        del data
        if validate is not None:
            try:
                ok = validate(obj)
            except Exception as exc:  # noqa: BLE001 - a validator that trips over the object rejects it
                raise _Damaged(f"unexpected content ({type(exc).__name__}: {exc})") from exc
            if ok is False:
                raise _Damaged(f"unexpected content ({type(obj).__name__} of the wrong structure)")
        return CacheEntry(obj, digest, lineage, entry_key(path))
    except FileNotFoundError:
        return None  # removed by another process between exists() and open()
    except (_Damaged, OSError) as exc:
        discard(path, str(exc), stat)
        return None


def load_cached(path: Path, validate: Validator | None = None) -> Any:
    """The object in a file written by :func:`save_atomic`, or ``None`` when the file is absent or damaged
    (a warning names a damaged file; the caller recomputes and saves the entry again)."""
    entry = load_entry(path, validate)
    return None if entry is None else entry.obj


def discard(path: Path, reason: str, stat: os.stat_result | None = None) -> None:
    """Warn that the cache file ``path`` is unusable, delete it (unless another process has already
    replaced it) and record it in the invalidation journal."""
    path = Path(path)
    warnings.warn(f"cache file {path} is damaged ({reason}); discarding it and recomputing the entry",
                  CacheIntegrityWarning, stacklevel=3)
    try:
        now = os.stat(path)
        if stat is None or (now.st_ino, now.st_dev) == (stat.st_ino, stat.st_dev):
            os.remove(path)
    except OSError:
        pass
    record_invalidation(entry_key(path))


_listeners: list[Callable[[str], None]] = []


def on_invalidation(listener: Callable[[str], None]) -> None:
    """Call ``listener(entry_key)`` in this process whenever a damaged cache entry is discarded."""
    _listeners.append(listener)


def journal_path() -> Path:
    """The invalidation journal: one ``<unix time> <entry>`` line per discarded cache entry."""
    return cache_dir() / JOURNAL


def record_invalidation(key: str) -> None:
    """Append ``key`` to the invalidation journal (one short ``O_APPEND`` write: safe across processes)."""
    line = f"{time.time():.6f} {key}\n".encode()
    try:
        fd = os.open(journal_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        pass
    for listener in list(_listeners):
        listener(key)


def invalidations(start: int = 0) -> tuple[list[tuple[float, str]], int]:
    """Journal records from byte offset ``start``: ([(time, entry)], the offset to read from next)."""
    try:
        with open(journal_path(), "rb") as handle:
            handle.seek(start)
            data = handle.read()
    except FileNotFoundError:
        return [], start
    end = data.rfind(b"\n") + 1  # a line being written is read next time
    records = []
    for line in data[:end].splitlines():
        stamp, _, key = line.decode(errors="replace").partition(" ")
        try:
            records.append((float(stamp), key))
        except ValueError:
            continue
    return records, start + end


# ----------------------------------------------------------------- validators
def tensor_like(obj: Any, shape: tuple[int, ...] | None = None, dtype: torch.dtype | None = None) -> bool:
    """Whether ``obj`` is a tensor (of ``shape`` / ``dtype`` when given)."""
    return (isinstance(obj, torch.Tensor) and (shape is None or tuple(obj.shape) == tuple(shape))
            and (dtype is None or obj.dtype == dtype))


def matches_state_dict(obj: Any, reference: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``obj`` is a state dict with exactly ``reference``'s keys, shapes and dtypes."""
    return (isinstance(obj, Mapping) and set(obj) == set(reference)
            and all(tensor_like(obj[k], tuple(v.shape), v.dtype) for k, v in reference.items()))
