"""Memo of evaluated configurations: in memory, and in an SQLite file shared safely by processes."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from mpq_gym.cache import cache_dir
from mpq_gym.errors import CacheCorruptedError


class ResultStore:
    """Key -> JSON result. ``path=None`` keeps results in memory only."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._memory: dict[str, dict] = {}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with self._connect() as db:
                    db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            except sqlite3.DatabaseError as exc:
                raise self._corrupted(exc) from exc

    @classmethod
    def default(cls) -> "ResultStore":
        """The store under the mpq-gym cache directory."""
        return cls(cache_dir() / "evaluations.sqlite")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def _corrupted(self, exc: Exception) -> CacheCorruptedError:
        return CacheCorruptedError(f"evaluation cache {self.path} is corrupted ({exc}). "
                                   f"Delete it (rm '{self.path}'); evaluations will be recomputed.")

    def get(self, key: str) -> dict | None:
        """The stored result, or None."""
        if key in self._memory:
            return self._memory[key]
        if self.path is None:
            return None
        try:
            with self._connect() as db:
                row = db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
            value = json.loads(row[0]) if row else None
        except (sqlite3.DatabaseError, json.JSONDecodeError) as exc:
            raise self._corrupted(exc) from exc
        if value is not None:
            self._memory[key] = value
        return value

    def put(self, key: str, value: dict) -> None:
        """Store a result (last writer wins; results for one key are identical anyway)."""
        self._memory[key] = value
        if self.path is None:
            return
        try:
            with self._connect() as db:
                db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (key, json.dumps(value)))
        except sqlite3.DatabaseError as exc:
            raise self._corrupted(exc) from exc
