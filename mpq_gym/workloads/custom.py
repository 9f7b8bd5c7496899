"""Bring your own model: any ``nn.Module`` + data loaders + metric becomes a workload."""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

from mpq_gym.metrics import classification_metrics
from mpq_gym.workloads.base import SPLITS, Metric, Split, Workload


def _materialize(loader: Iterable) -> Split:
    xs, ys = [], []
    for batch in loader:
        if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
            raise ValueError("a custom workload's loaders must yield (inputs, targets) pairs")
        xs.append(torch.as_tensor(batch[0]))
        ys.append(torch.as_tensor(batch[1]))
    if not xs:
        raise ValueError("a custom workload's loader yielded no batch")
    return Split(torch.cat(xs), torch.cat(ys))


def custom_workload(model: nn.Module, loaders: Mapping[str, Iterable], metric: Metric = classification_metrics,
                    primary_metric: str = "top1", name: str = "custom", batch_size: int = 64,
                    weights: str = "user-supplied") -> Workload:
    """Wrap a user model. ``loaders`` maps ``calibration``, ``search`` and ``test`` to iterables of
    (inputs, targets) batches (e.g. DataLoaders); each is read once and kept as tensors.
    ``metric(outputs, targets, fp32_outputs)`` returns a dict that must contain ``primary_metric``."""
    missing = [s for s in SPLITS if s not in loaders]
    if missing:
        raise ValueError(f"custom workload needs loaders for {list(SPLITS)}; missing {missing}")
    splits = {name_: _materialize(loaders[name_]) for name_ in SPLITS}
    input_shape = tuple(splits["calibration"].inputs.shape[1:])
    return Workload(name=name, model=model.eval(), input_shape=input_shape, metric=metric,
                    primary_metric=primary_metric, weights=weights, batch_size=batch_size,
                    load_splits=lambda: splits)
