"""Memo of evaluated configurations: in memory, and in an SQLite file shared safely by processes.

Each row records the cache entries it was computed from (``deps``: entry name -> checksum or lineage,
e.g. the FP32 outputs behind ``sqnr_db`` and the quantizer cache). When a damaged cache entry is
discarded (:func:`mpq_gym.cache.discard` writes the invalidation journal), every row computed from that
entry before the discovery is deleted, so a result never outlives the cache content it came from.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import weakref
from pathlib import Path

from mpq_gym.cache import cache_dir, invalidations, journal_path, on_invalidation
from mpq_gym.errors import CacheCorruptedError

#: the rows table (results of earlier versions, without provenance, are left unread)
TABLE = "results_v2"

_live: "weakref.WeakSet[ResultStore]" = weakref.WeakSet()


def _invalidate_live(key: str) -> None:
    for store in list(_live):
        store.invalidate_entry(key)


on_invalidation(_invalidate_live)


class ResultStore:
    """Key -> JSON result (+ the cache entries it came from). ``path=None`` keeps results in memory only."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._memory: dict[str, tuple[dict, dict[str, str]]] = {}
        self._journal_offset = 0
        self._journal_stat: tuple[int, int, int] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with self._connect() as db:
                    db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                               "created REAL NOT NULL)")
                    db.execute("CREATE TABLE IF NOT EXISTS deps (key TEXT NOT NULL, entry TEXT NOT NULL, "
                               "token TEXT NOT NULL, PRIMARY KEY (key, entry))")
                    db.execute("CREATE INDEX IF NOT EXISTS deps_entry ON deps (entry)")
            except sqlite3.DatabaseError as exc:
                raise self._corrupted(exc) from exc
        _live.add(self)
        self._apply_journal()

    @classmethod
    def default(cls) -> "ResultStore":
        """The store under the mpq-gym cache directory."""
        return cls(cache_dir() / "evaluations.sqlite")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def _corrupted(self, exc: Exception) -> CacheCorruptedError:
        return CacheCorruptedError(f"evaluation cache {self.path} is corrupted ({exc}). "
                                   f"Delete it (rm '{self.path}'); evaluations will be recomputed.")

    # ------------------------------------------------------------ invalidation
    def _apply_journal(self) -> None:
        """Drop rows computed from cache entries discarded (by any process) since this store last looked."""
        try:
            st = os.stat(journal_path())
        except OSError:
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._journal_stat:
            return
        if self._journal_stat is not None and st.st_ino != self._journal_stat[0]:
            self._journal_offset = 0  # the journal was replaced
        records, self._journal_offset = invalidations(self._journal_offset)
        self._journal_stat = stamp
        for found_at, entry in records:
            self.invalidate_entry(entry, before=found_at)

    def invalidate_entry(self, entry: str, before: float | None = None) -> int:
        """Forget every result computed from the cache entry ``entry`` (rows stored before ``before``,
        default now). Returns how many stored rows were deleted."""
        before = time.time() if before is None else before
        self._memory = {k: v for k, v in self._memory.items() if entry not in v[1]}
        if self.path is None:
            return 0
        try:
            with self._connect() as db:
                keys = [r[0] for r in db.execute(
                    f"SELECT d.key FROM deps d JOIN {TABLE} r ON r.key = d.key WHERE d.entry = ? AND r.created <= ?",
                    (entry, before))]
                db.executemany(f"DELETE FROM {TABLE} WHERE key = ?", [(k,) for k in keys])
                db.executemany("DELETE FROM deps WHERE key = ?", [(k,) for k in keys])
        except sqlite3.DatabaseError as exc:
            raise self._corrupted(exc) from exc
        return len(keys)

    def delete(self, key: str) -> None:
        """Forget one result."""
        self._memory.pop(key, None)
        if self.path is None:
            return
        try:
            with self._connect() as db:
                db.execute(f"DELETE FROM {TABLE} WHERE key = ?", (key,))
                db.execute("DELETE FROM deps WHERE key = ?", (key,))
        except sqlite3.DatabaseError as exc:
            raise self._corrupted(exc) from exc

    # ------------------------------------------------------------ rows
    def get_with_deps(self, key: str) -> tuple[dict, dict[str, str]] | None:
        """(result, the cache entries it came from), or None."""
        self._apply_journal()
        if key in self._memory:
            return self._memory[key]
        if self.path is None:
            return None
        try:
            with self._connect() as db:
                row = db.execute(f"SELECT value FROM {TABLE} WHERE key = ?", (key,)).fetchone()
                deps = dict(db.execute("SELECT entry, token FROM deps WHERE key = ?", (key,)).fetchall()) if row else {}
            value = json.loads(row[0]) if row else None
        except (sqlite3.DatabaseError, json.JSONDecodeError) as exc:
            raise self._corrupted(exc) from exc
        if value is None:
            return None
        self._memory[key] = (value, deps)
        return value, deps

    def get(self, key: str) -> dict | None:
        """The stored result, or None."""
        hit = self.get_with_deps(key)
        return None if hit is None else hit[0]

    def put(self, key: str, value: dict, deps: dict[str, str] | None = None) -> None:
        """Store a result and the cache entries (``{entry: checksum or lineage}``) it was computed from
        (last writer wins; results for one key are identical anyway)."""
        deps = dict(deps or {})
        self._memory[key] = (value, deps)
        if self.path is None:
            return
        try:
            with self._connect() as db:
                db.execute(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?)", (key, json.dumps(value), time.time()))
                db.execute("DELETE FROM deps WHERE key = ?", (key,))
                db.executemany("INSERT INTO deps VALUES (?, ?, ?)", [(key, e, t) for e, t in deps.items()])
        except sqlite3.DatabaseError as exc:
            raise self._corrupted(exc) from exc
