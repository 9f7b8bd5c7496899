"""Workload registry: ``get_workload(name, **kwargs)``."""
from __future__ import annotations

import difflib
from functools import partial
from typing import Any, Callable

from mpq_gym.errors import UnknownWorkloadError
from mpq_gym.workloads.base import RANDOM_WEIGHTS, SPLITS, Split, SplitSizes, Workload
from mpq_gym.workloads.custom import custom_workload
from mpq_gym.workloads.digits import digits_workload
from mpq_gym.workloads.hf import PREFIX as HF_PREFIX
from mpq_gym.workloads.hf import hf_workload
from mpq_gym.workloads.imagenet import ImagePreprocessing
from mpq_gym.workloads.imagenet_models import efficientnet_lite0_workload, torchvision_workload
from mpq_gym.workloads.minilm import minilm_workload

WORKLOADS: dict[str, Callable[..., Workload]] = {
    "efficientnet_lite0": efficientnet_lite0_workload,
    "resnet18": partial(torchvision_workload, "resnet18"),
    "resnet50": partial(torchvision_workload, "resnet50"),
    "mobilenet_v2": partial(torchvision_workload, "mobilenet_v2"),
    "digits_cnn": digits_workload,
    "minilm": minilm_workload,
}


def available_workloads() -> list[str]:
    """Names accepted by :func:`get_workload` (plus ``hf:<model>``, and ``custom`` via :func:`custom_workload`)."""
    return sorted(WORKLOADS)


def get_workload(name: str, **kwargs: Any) -> Workload:
    """Build a registered workload, or ``hf:<model id or path>`` (see :func:`hf_workload`).
    kwargs: ``data_dir``, ``weights``, ``random_weights``, ``split_sizes``..."""
    if name.startswith(HF_PREFIX):
        return hf_workload(name[len(HF_PREFIX):], **kwargs)
    if name == "custom":
        raise UnknownWorkloadError("the 'custom' workload is built in Python: "
                                   "mpq_gym.workloads.custom_workload(model, loaders, metric)")
    if name not in WORKLOADS:
        close = difflib.get_close_matches(name, WORKLOADS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownWorkloadError(f"unknown workload {name!r}.{hint} Known: {', '.join(available_workloads())}, "
                                   "hf:<model id or path>; or wrap your own model with mpq_gym.workloads.custom_workload(...)")
    return WORKLOADS[name](**kwargs)


__all__ = ["Workload", "Split", "SPLITS", "SplitSizes", "ImagePreprocessing", "RANDOM_WEIGHTS", "get_workload",
           "available_workloads", "custom_workload", "hf_workload"]
