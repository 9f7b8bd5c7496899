"""Across-seed aggregates: interquartile mean with a percentile-bootstrap confidence interval.

The IQM (mean of the middle 50 % of runs) with a bootstrap interval is rliable's recommended
aggregate (Agarwal et al., 2021); for one task it is scipy's ``trim_mean(x, 0.25)`` under
``scipy.stats.bootstrap``, which is what this computes.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import bootstrap, trim_mean


def iqm(values: np.ndarray) -> float:
    """Interquartile mean."""
    return float(trim_mean(np.asarray(values, dtype=np.float64), 0.25))


def iqm_interval(values: np.ndarray, confidence: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """(IQM, low, high); the interval collapses to the value for fewer than 2 distinct runs."""
    values = np.asarray(values, dtype=np.float64)
    point = iqm(values)
    if len(values) < 2 or np.ptp(values) == 0:
        return point, point, point
    result = bootstrap((values,), lambda x, axis: trim_mean(x, 0.25, axis=axis), confidence_level=confidence,
                       n_resamples=resamples, method="percentile", rng=np.random.default_rng(seed))
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)
