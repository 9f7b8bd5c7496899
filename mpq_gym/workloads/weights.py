"""Locating pretrained weights: a user path, the torch hub cache, or a download when online."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch

from mpq_gym.errors import MissingWeightsError

OFFLINE_ENVS = ("MPQ_GYM_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline() -> bool:
    """True when the user asked for no downloads (``MPQ_GYM_OFFLINE=1`` or the HF offline flags)."""
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes") for name in OFFLINE_ENVS)


def load_state_dict_file(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """Read a state dict from a checkpoint file (also unwraps ``{"state_dict": ...}``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"{what}: weights file {path} does not exist; check the path you passed as weights=")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise MissingWeightsError(f"{what}: cannot read weights file {path} ({exc}); re-download it") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def hub_checkpoint(url: str, what: str, timeout_s: float = 20.0) -> dict[str, torch.Tensor]:
    """Weights for ``url`` from the torch hub cache, downloading them there when the machine is online."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if cached.is_file():
        return load_state_dict_file(cached, what)
    fix = (f"Download {url} on a machine with internet and copy it to {cached} (the torch hub cache; "
           f"set TORCH_HOME to move it), or pass weights=/path/to/file.pth (CLI: --weights). "
           f"For structure or cost work only, random_weights=True (CLI: --random-weights) builds the "
           f"network without pretrained weights.")
    if offline():
        raise MissingWeightsError(f"{what}: pretrained weights are not in the cache and downloads are off "
                                  f"(MPQ_GYM_OFFLINE/HF_HUB_OFFLINE). {fix}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - any network failure gets the same advice
        raise MissingWeightsError(f"{what}: pretrained weights are not cached and the download failed "
                                  f"({type(exc).__name__}: {exc}). {fix}") from exc
    finally:
        socket.setdefaulttimeout(previous)
