"""Surrogate evaluator: additive-noise model over the phase-1 table, mapped to the task metric.

Quantization noise of different groups is treated as independent and additive at the output:
noise power = sum over groups of 10^(-S[g, c_g] / 10) (relative to the output signal power, which
every cell shares), so predicted SQNR = -10 log10(sum). A monotone logistic fit, calibrated on a few
exact evaluations, maps predicted SQNR to the task metric. Everything is vectorised over a batch of
configurations given as candidate indices [batch, group].

With measured pairwise ``interactions`` (:class:`mpq_gym.evaluate.interactions.PairwiseTable`) the noise
power adds, for each measured pair (g, h), the interaction I[g, h, c_g, c_h]: the difference between the
pair's joint noise and the sum of its two single noises (CLADO's cross-layer term, label-free). That is
the ``pairwise`` surrogate; without, the ``additive`` one.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import curve_fit
from scipy.special import expit

from mpq_gym.evaluate.sensitivity import SensitivityTable
from mpq_gym.metrics import noise_power


def _logistic(x: np.ndarray, low: float, mid: float, width: float, high: float) -> np.ndarray:
    return low + (high - low) * expit((x - mid) / width)


@dataclass
class MonotoneFit:
    """metric = low + (high - low) * sigmoid((sqnr - mid) / width), increasing in SQNR (width > 0)."""

    low: float
    mid: float
    width: float
    high: float

    def __call__(self, sqnr: np.ndarray) -> np.ndarray:
        return _logistic(np.asarray(sqnr, dtype=np.float64), self.low, self.mid, self.width, self.high)

    @classmethod
    def fit(cls, sqnr: np.ndarray, values: np.ndarray, high: float) -> "MonotoneFit":
        """Least-squares fit with ``high`` (the FP32 metric) fixed; needs >= 3 points."""
        sqnr, values = np.asarray(sqnr, dtype=np.float64), np.asarray(values, dtype=np.float64)
        if len(sqnr) < 3:
            raise ValueError(f"the surrogate needs at least 3 exact evaluations to calibrate, got {len(sqnr)}")
        if high - values.min() < 1e-9:  # every configuration scores like FP32 (e.g. random weights): constant
            return cls(float(high), 0.0, 1.0, float(high))
        finite = np.where(np.isfinite(sqnr), sqnr, 200.0)
        guess = [max(min(values.min(), high), 0.0), float(np.median(finite)), 3.0]
        lower, upper = [min(0.0, values.min()), -100.0, 0.05], [high, 200.0, 100.0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = curve_fit(lambda x, lo, m, w: _logistic(x, lo, m, w, high), finite, values,
                                  p0=np.clip(guess, lower, upper), bounds=(lower, upper), maxfev=20000)
        return cls(float(params[0]), float(params[1]), float(params[2]), float(high))


class Surrogate:
    """Predicts output SQNR (and, once fitted, the metric) of configurations from a sensitivity table, plus
    measured pairwise interactions when given (``pairs`` [(g, h)], ``interactions`` [P, C, C] noise power)."""

    def __init__(self, table: SensitivityTable, fit: MonotoneFit | None = None,
                 pairs: Sequence[tuple[int, int]] = (), interactions: np.ndarray | None = None) -> None:
        self.table = table
        self.noise = noise_power(table.sqnr_db)  # [G, C]
        self.metric_fit = fit
        self._rows = np.arange(len(table.groups))
        self.pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        self.interactions = (np.zeros((0, self.noise.shape[1], self.noise.shape[1])) if interactions is None
                             else np.asarray(interactions, dtype=np.float64))
        if len(self.pairs) != len(self.interactions):
            raise ValueError(f"{len(self.pairs)} pairs but {len(self.interactions)} interaction tables")

    @property
    def kind(self) -> str:
        """``pairwise`` with measured interactions, else ``additive``."""
        return "pairwise" if len(self.pairs) else "additive"

    def predicted_noise(self, choices: np.ndarray) -> np.ndarray:
        """Predicted output noise power relative to the signal, for candidate indices [batch, group]."""
        choices = np.atleast_2d(np.asarray(choices, dtype=np.int64))
        if choices.shape[1] != len(self._rows):
            raise ValueError(f"expected {len(self._rows)} choices per configuration, got {choices.shape[1]}")
        single = self.noise[self._rows, choices]  # [batch, group]
        noise = single.sum(axis=1)
        if len(self.pairs):
            g, h = self.pairs[:, 0], self.pairs[:, 1]
            pair_terms = self.interactions[np.arange(len(self.pairs)), choices[:, g], choices[:, h]].sum(axis=1)
            # the joint noise of a configuration is never below its largest single-group noise
            noise = np.maximum(noise + pair_terms, single.max(axis=1))
        return noise

    def predicted_sqnr(self, choices: np.ndarray) -> np.ndarray:
        """Predicted output SQNR (dB) for candidate indices [batch, group] (or one [group] row)."""
        with np.errstate(divide="ignore"):
            return -10.0 * np.log10(self.predicted_noise(choices))

    def predict(self, choices: np.ndarray) -> np.ndarray:
        """Predicted metric for candidate indices [batch, group]; requires :meth:`fit`."""
        if self.metric_fit is None:
            raise RuntimeError("the surrogate is not calibrated: call fit(choices, exact_values, fp32_value) first")
        return self.metric_fit(self.predicted_sqnr(choices))

    def fit(self, choices: np.ndarray, exact_values: np.ndarray, fp32_value: float) -> "Surrogate":
        """Calibrate the SQNR -> metric map on exactly evaluated configurations."""
        self.metric_fit = MonotoneFit.fit(self.predicted_sqnr(choices), exact_values, fp32_value)
        return self
