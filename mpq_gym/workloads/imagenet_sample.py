"""The 1000-image ImageNet sample (one image per class, EliSchwartz/imagenet-sample-images), fetched from
its public repository when the machine is online and laid out as an ``ImageFolder``."""
from __future__ import annotations

import re
import shutil
import socket
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from mpq_gym.cache import cache_dir
from mpq_gym.errors import MissingDataError
from mpq_gym.workloads.weights import offline

SAMPLE_URL = "https://github.com/EliSchwartz/imagenet-sample-images/archive/refs/heads/master.zip"
_WNID_FILE = re.compile(r"^(n\d{8})_.+\.jpe?g$", re.IGNORECASE)


def arrange_sample(archive: Path, dest: Path) -> Path:
    """Extract ``<wnid>_<name>.JPEG`` files from the repository archive into ``dest/val/<wnid>/``."""
    val = dest / "val"
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.namelist() if _WNID_FILE.match(Path(m).name)]
        if not members:
            raise MissingDataError(f"{archive} holds no <wnid>_<name>.JPEG images: not the ImageNet sample archive")
        staging = Path(tempfile.mkdtemp(dir=dest.parent if dest.parent.exists() else None))
        for member in members:
            name = Path(member).name
            target = staging / "val" / _WNID_FILE.match(name).group(1) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
    if dest.exists():
        shutil.rmtree(dest)
    staging.replace(dest)
    return val


def download_imagenet_sample(dest: Path | None = None, timeout_s: float = 30.0) -> Path:
    """Download the sample into ``dest`` (default: the cache) and return its ``val`` folder.

    Raises :class:`MissingDataError` when offline or when the download fails.
    """
    dest = Path(dest or cache_dir() / "imagenet-sample")
    if (dest / "val").is_dir():
        return dest / "val"
    if offline():
        raise MissingDataError("the ImageNet sample is not present and downloads are off (MPQ_GYM_OFFLINE)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "sample.zip"
            urllib.request.urlretrieve(SAMPLE_URL, archive)
            return arrange_sample(archive, dest)
    except (OSError, zipfile.BadZipFile) as exc:
        raise MissingDataError(f"downloading the ImageNet sample from {SAMPLE_URL} failed ({exc}); "
                               "set MPQ_GYM_DATA to a folder in ImageFolder layout instead") from exc
    finally:
        socket.setdefaulttimeout(previous)
