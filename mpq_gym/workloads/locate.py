"""Where workload data is looked for: an explicit folder, ``$MPQ_GYM_DATA``, then ``../shared/data``."""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "MPQ_GYM_DATA"
#: Where the repository's reference data lives when the project is checked out beside ``shared/``.
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def data_sources(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders to search, in order: ``data_dir`` alone when given, else ``$MPQ_GYM_DATA``, else the
    ``shared/data`` beside the working directory and beside the package."""
    if data_dir:
        return [Path(data_dir).expanduser()]
    if os.environ.get(DATA_ENV):
        return [Path(os.environ[DATA_ENV]).expanduser()]
    return list(dict.fromkeys([Path.cwd().parent / "shared" / "data", SHARED_DATA]))
