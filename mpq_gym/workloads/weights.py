"""Locating pretrained weights: a user path, the torch hub cache, or a download when online."""
from __future__ import annotations

import os
import pickle
import socket
import warnings
from pathlib import Path

import torch

from mpq_gym.errors import MissingWeightsError

OFFLINE_ENVS = ("MPQ_GYM_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline() -> bool:
    """True when the user asked for no downloads (``MPQ_GYM_OFFLINE=1`` or the HF offline flags)."""
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes") for name in OFFLINE_ENVS)


SAVE_HINT = "save one with torch.save(model.state_dict(), path)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def load_state_dict_file(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """Read a state dict from a checkpoint file (also unwraps ``{"state_dict": ...}``).

    The file is loaded with ``weights_only=True``: tensors and plain containers only, so a file holding
    pickled code is refused (:class:`MissingWeightsError` naming it), never run."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"{what}: weights file {path} does not exist; check the path you passed as weights=")
    try:
        with warnings.catch_warnings():  # torch's note about a foreign pickle protocol: the error below says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise MissingWeightsError(
            f"{what}: weights file {path} is not a plain PyTorch state dict: it is damaged or holds pickled "
            f"Python objects, which mpq-gym never unpickles (they could run code); {SAVE_HINT}") from exc
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise MissingWeightsError(f"{what}: weights file {path} is not a readable PyTorch weights file "
                                  f"({_first_line(exc)}); pass a state dict file ({SAVE_HINT})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise MissingWeightsError(f"{what}: weights file {path} does not hold a state dict (a mapping of "
                                  f"parameter names to tensors, got {type(state).__name__}); {SAVE_HINT}")
    return state


def apply_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike, what: str,
                     strict: bool = True) -> None:
    """``model.load_state_dict(state)``; weights of another architecture (wrong keys or shapes) are a
    :class:`MissingWeightsError` naming the file, not a traceback."""
    expected = model.state_dict()
    problems = []
    if strict:
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing:
            problems.append(f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            problems.append(f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if shapes:
        k = shapes[0]
        problems.append(f"shape of {k} is {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}")
    if not problems:
        try:
            model.load_state_dict(state, strict=strict)
            return
        except Exception as exc:  # noqa: BLE001 - anything load_state_dict rejects
            problems.append(_first_line(exc))
    raise MissingWeightsError(f"{what}: weights file {path} does not fit the {what} architecture "
                              f"({'; '.join(problems)}); pass weights trained for {what} ({SAVE_HINT})")


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
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, check_hash=True,
                                                  weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any network failure gets the same advice
        raise MissingWeightsError(f"{what}: pretrained weights are not cached and the download failed "
                                  f"({type(exc).__name__}: {exc}). {fix}") from exc
    finally:
        socket.setdefaulttimeout(previous)
