"""HAQ-style layer features of each quantizer group, min-max normalised to [0, 1]."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mpq_gym.candidates import QuantizerGroup
from mpq_gym.quant.graph import LayerInfo

STATIC_FEATURES = ("index", "c_in", "c_out", "kernel", "stride", "feature_size", "log_params", "log_macs",
                   "depthwise", "linear")
#: SQNR values are clipped to this range (dB) before scaling to [0, 1]
SQNR_RANGE_DB = (-10.0, 60.0)


def group_features(groups: Sequence[QuantizerGroup], layers: Sequence[LayerInfo]) -> np.ndarray:
    """[group, feature] matrix in [0, 1]: the first layer's shape facts, the group's summed size."""
    by_name = {layer.name: layer for layer in layers}
    rows = []
    for g, group in enumerate(groups):
        first = by_name[group.layers[0]]
        params = sum(by_name[n].params for n in group.layers)
        macs = sum(by_name[n].macs for n in group.layers)
        rows.append([g, first.c_in, first.c_out, first.kernel, first.stride, first.feature_size,
                     math.log1p(params), math.log1p(macs), float(first.depthwise), float(first.kind == "Linear")])
    raw = np.asarray(rows, dtype=np.float64)
    span = raw.max(axis=0) - raw.min(axis=0)
    return ((raw - raw.min(axis=0)) / np.where(span > 0, span, 1.0)).astype(np.float32)


def normalised_sensitivity(sqnr_db: np.ndarray) -> np.ndarray:
    """Phase-1 SQNR rows mapped to [0, 1] (clipped to :data:`SQNR_RANGE_DB`; lossless cells -> 1)."""
    lo, hi = SQNR_RANGE_DB
    return ((np.clip(np.nan_to_num(sqnr_db, posinf=hi), lo, hi) - lo) / (hi - lo)).astype(np.float32)
