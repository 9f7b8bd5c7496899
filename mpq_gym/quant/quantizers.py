"""Fake-quantizers: symmetric per-channel weights, asymmetric per-tensor activations.

All rounding goes through torch's own fake-quant ops; this module only decides the ranges.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from mpq_gym.errors import ConfigError

#: ``mse``: least squared weight error; ``minmax``: no clipping; ``tf_enhanced``: least squared error with
#: clipped values' errors weighted by ``clip_gamma`` (AIMET's post_training_tf_enhanced / SQNR analyzer);
#: ``output_mse``: least squared error of the layer's *output* on calibration inputs, i.e. per channel
#: ``dw^T E[x x^T] dw`` (plus ``clip_gamma`` on clipped weights' share), needs calibration data
WEIGHT_RANGE_METHODS = ("mse", "minmax", "tf_enhanced", "output_mse")
#: ``tf_enhanced``: histogram MSE with clipped bins' errors weighted by ``clip_gamma`` (AIMET's SQNR analyzer)
ACT_RANGE_METHODS = ("mse", "percentile", "minmax", "tf_enhanced")
ACT_CALIBRATION = ("fp32", "sequential")
WEIGHT_ROUNDING = ("nearest", "adaround")


@dataclass(frozen=True)
class QuantSettings:
    """How ranges are chosen and weights rounded. Part of every cache key.

    The defaults are quantizer ``v2`` (see :data:`QUANTIZERS`): output-aware weight ranges with clipped
    weights' error weighted by ``clip_gamma`` and bias correction, which match or beat AIMET 2.42's
    ``post_training_tf_enhanced`` simulation on every configuration measured (docs/benchmarks.md,
    "Quantizer parity with AIMET"). ``quantizer_settings("v1")`` gives the settings of earlier figures.
    ``weight_rounding="adaround"`` learns each integer weight's rounding (AdaRound) once per
    (layer, bits) on ``adaround_rows`` sampled input rows of the calibration split, over
    ``adaround_iterations`` steps; see :mod:`mpq_gym.quant.adaround`.
    """

    weight_range: str = "output_mse"
    act_range: str = "mse"
    act_percentile: float = 99.99
    fold_bn: bool = True
    weight_rounding: str = "nearest"
    adaround_iterations: int = 1000
    adaround_rows: int = 4096
    #: weight of a clipped value's squared error in the ``tf_enhanced`` / ``output_mse`` range searches
    #: (AIMET's tf-enhanced "fudge factor" gamma is 3; 1 = plain MSE)
    clip_gamma: float = 3.0
    #: correct each layer's bias for the mean shift its weight quantization causes on calibration inputs
    #: (``b -= dW @ E[x]``, Nagel et al. 2019, "bias correction" in AIMET's post-training tools)
    bias_correction: bool = True
    #: ``fp32``: every layer input calibrated on the FP32 network; ``sequential``: each layer input
    #: calibrated with all upstream layers already quantized (weights at ``sequential_w_bits``, inputs at
    #: the bit-width being calibrated), as a simulator's own calibration pass sees them
    act_calibration: str = "fp32"
    #: activation values sampled per calibration batch and layer for the range search (min / max are exact)
    act_samples_per_batch: int = 1 << 15
    sequential_w_bits: int = 8

    def __post_init__(self) -> None:
        if self.weight_range not in WEIGHT_RANGE_METHODS:
            raise ValueError(f"weight_range must be one of {WEIGHT_RANGE_METHODS}, got {self.weight_range!r}")
        if self.act_range not in ACT_RANGE_METHODS:
            raise ValueError(f"act_range must be one of {ACT_RANGE_METHODS}, got {self.act_range!r}")
        if self.act_calibration not in ACT_CALIBRATION:
            raise ValueError(f"act_calibration must be one of {ACT_CALIBRATION}, got {self.act_calibration!r}")
        if self.weight_rounding not in WEIGHT_ROUNDING:
            raise ValueError(f"weight_rounding must be one of {WEIGHT_ROUNDING}, got {self.weight_rounding!r}")


#: named quantizer versions. ``v2`` (default): output-aware weight ranges + bias correction (issue 19);
#: ``v1``: plain per-channel weight MSE, no bias correction (every figure measured before issue 19)
QUANTIZERS: dict[str, QuantSettings] = {
    "v2": QuantSettings(),
    "v1": QuantSettings(weight_range="mse", bias_correction=False),
}
DEFAULT_QUANTIZER = "v2"


def quantizer_settings(quantizer: str = DEFAULT_QUANTIZER, **fields: object) -> QuantSettings:
    """The settings of a named quantizer version, with ``fields`` (e.g. ``weight_rounding``) replaced."""
    if quantizer not in QUANTIZERS:
        raise ConfigError(f"unknown quantizer {quantizer!r}; choose one of {sorted(QUANTIZERS)}")
    return replace(QUANTIZERS[quantizer], **fields)


def _signed_limits(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def fake_quant_weight(weight: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel fake quantization (axis 0)."""
    qmin, qmax = _signed_limits(bits)
    zero = torch.zeros(scale.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale.float(), zero, 0, qmin, qmax)


def _channel_errors(flat: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Per-channel squared error of symmetric quantization at ``scale`` (in-place ops, no autograd mask)."""
    y = flat / scale[:, None]
    return y.round_().clamp_(qmin, qmax).mul_(scale[:, None]).sub_(flat).pow_(2).sum(dim=1)


def _clipped_channel_errors(flat: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int,
                            gamma: float) -> torch.Tensor:
    """Per-channel squared error with the clipped values' errors weighted by ``gamma`` (AIMET's SQNR)."""
    y = (flat / scale[:, None]).round_()
    clipped = (y < qmin) | (y > qmax)
    err = y.clamp_(qmin, qmax).mul_(scale[:, None]).sub_(flat).pow_(2)
    if gamma != 1.0:
        err = torch.where(clipped, err * gamma, err)
    return err.sum(dim=1)


def _output_channel_errors(flat: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int,
                           moment: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Per-channel output error ``dw^T M dw`` of symmetric quantization at ``scale``; ``moment`` is the
    second moment of the channel's input rows, [groups, d, d] (channel c uses group c // (C / groups)).
    ``gamma`` > 1 adds (gamma - 1) x the clipped weights' share of the same quadratic form."""
    y = (flat / scale[:, None]).round_()
    clipped = (y < qmin) | (y > qmax)
    delta = y.clamp_(qmin, qmax).mul_(scale[:, None]).sub_(flat)
    groups, d = moment.shape[0], moment.shape[-1]
    dg = delta.reshape(groups, -1, d)
    err = torch.einsum("goi,gij,goj->go", dg, moment, dg).reshape(-1)
    if gamma != 1.0:
        dc = (delta * clipped).reshape(groups, -1, d)
        err = err + (gamma - 1.0) * torch.einsum("goi,gij,goj->go", dc, moment, dc).reshape(-1).clamp_min(0)
    return err


def search_clip(flat: torch.Tensor, errors_at: Callable[[torch.Tensor], torch.Tensor], coarse: int = 19,
                fine: int = 10, low: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel clipping value with the least error: ``errors_at(clip [channels]) -> error [channels]``
    over clip = absmax x ratio, a coarse grid of ratios in [low, 1], then a fine grid (step 0.01) around
    each channel's best. Returns (clip, its error) per channel."""
    absmax = flat.abs().amax(dim=1).clamp_min(1e-12)

    def search(ratios: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ratios [n, channels] -> (best ratio, its error) per channel."""
        errors = torch.stack([errors_at(absmax * r) for r in ratios])
        best = errors.argmin(dim=0)
        return ratios.gather(0, best[None]).squeeze(0), errors.gather(0, best[None]).squeeze(0)

    channels = flat.shape[0]
    ratio, err = search(torch.linspace(low, 1.0, coarse)[:, None].expand(coarse, channels))
    offsets = torch.linspace(-0.05, 0.05, fine + 1)[:, None]
    fine_ratio, fine_err = search((ratio[None, :] + offsets).clamp(low / 2, 1.0))
    better = fine_err < err
    return absmax * torch.where(better, fine_ratio, ratio), torch.where(better, fine_err, err)


def weight_scales(weight: torch.Tensor, bits: int, method: str = "mse", coarse: int = 19, fine: int = 10,
                  gamma: float = 3.0, moment: torch.Tensor | None = None) -> torch.Tensor:
    """Per-output-channel scales; ``mse`` searches each channel's clipping ratio in [0.1, 1] for the least
    squared error: a coarse grid (step 0.05), then a fine grid (step 0.01) around each channel's best.
    ``tf_enhanced`` weights clipped values' errors by ``gamma``; ``output_mse`` minimises the layer's output
    error ``dw^T moment dw`` (``moment``: second moment of the input rows per group, [groups, d, d])."""
    flat = weight.detach().reshape(weight.shape[0], -1).float()
    qmin, qmax = _signed_limits(bits)
    if method == "minmax":
        return flat.abs().amax(dim=1).clamp_min(1e-12) / qmax
    if method == "tf_enhanced":
        errors_at = lambda c: _clipped_channel_errors(flat, c / qmax, qmin, qmax, gamma)  # noqa: E731
    elif method == "output_mse":
        if moment is None:
            raise ValueError("weight_range='output_mse' needs the input second moments (calibration data)")
        errors_at = lambda c: _output_channel_errors(flat, c / qmax, qmin, qmax, moment, gamma)  # noqa: E731
    else:
        errors_at = lambda c: _channel_errors(flat, c / qmax, qmin, qmax)  # noqa: E731
    clip, _ = search_clip(flat, errors_at, coarse, fine)
    return clip / qmax


@dataclass(frozen=True)
class ActRange:
    """Asymmetric clipping range of one layer input at one bit-width."""

    lo: float
    hi: float

    def scale_zero_point(self, bits: int) -> tuple[float, int]:
        """torch's (scale, zero_point) for an unsigned grid of ``bits`` bits covering [lo, hi] and 0."""
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        levels = 2 ** bits - 1
        scale = max((hi - lo) / levels, 1e-12)
        zero_point = int(min(max(round(-lo / scale), 0), levels))
        return scale, zero_point


def fake_quant_activation(x: torch.Tensor, scale: float, zero_point: int, bits: int) -> torch.Tensor:
    """Asymmetric per-tensor fake quantization, same values as ``torch.fake_quantize_per_tensor_affine``.

    Written as four in-place ops because this runs on every layer input of every evaluation and
    torch's op also allocates a gradient mask: ~2.3x faster on CPU. Not differentiable (inference only).
    """
    y = x * (1.0 / scale)
    return y.round_().clamp_(-zero_point, 2 ** bits - 1 - zero_point).mul_(scale)


def adjacent_pairs(x: torch.Tensor) -> torch.Tensor:
    """``x`` as adjacent pairs along its last dimension, [..., ceil(n / 2), 2]; an odd last dimension gets
    a zero partner for its last value (the pairing of OliVe, at calibration and at run time alike)."""
    if x.shape[-1] % 2:
        x = torch.nn.functional.pad(x, (0, 1))
    return x.reshape(*x.shape[:-1], -1, 2)


class ActivationObserver:
    """Collects a bounded, deterministic sample of one layer's input values plus its exact min/max, and
    a sample of adjacent pairs along the last dimension (for pair formats such as OliVe)."""

    def __init__(self, max_per_batch: int = 1 << 15, pairs_per_batch: int = 1 << 13) -> None:
        self.max_per_batch = max_per_batch
        self.pairs_per_batch = pairs_per_batch
        self.samples: list[torch.Tensor] = []
        self.pair_samples: list[torch.Tensor] = []
        self.lo = float("inf")
        self.hi = float("-inf")
        self._generator = torch.Generator().manual_seed(0)
        self._pair_generator = torch.Generator().manual_seed(1)

    def observe(self, x: torch.Tensor) -> None:
        x = x.detach().cpu()  # ranges are fitted on the CPU, whatever device the model runs on
        flat = x.reshape(-1).float()
        self.lo = min(self.lo, flat.min().item())
        self.hi = max(self.hi, flat.max().item())
        sample = flat
        if flat.numel() > self.max_per_batch:  # random, not strided: a stride aliases with the NCHW layout
            sample = flat[torch.randint(flat.numel(), (self.max_per_batch,), generator=self._generator)]
        self.samples.append(sample.clone())
        rows = adjacent_pairs(x.float()).reshape(-1, 2)
        if len(rows) > self.pairs_per_batch:
            rows = rows[torch.randint(len(rows), (self.pairs_per_batch,), generator=self._pair_generator)]
        self.pair_samples.append(rows.clone())

    def values(self) -> torch.Tensor:
        """All sampled values, concatenated."""
        return torch.cat(self.samples) if self.samples else torch.zeros(1)

    def pairs(self) -> torch.Tensor:
        """All sampled adjacent pairs [n, 2]."""
        return torch.cat(self.pair_samples) if self.pair_samples else torch.zeros(1, 2)

    def ranges(self, bits_list: list[int], settings: QuantSettings) -> dict[int, ActRange]:
        """Clipping range for each bit-width."""
        values = self.values()
        return {b: activation_range(values, self.lo, self.hi, b, settings) for b in bits_list}


def histogram(values: torch.Tensor, lo: float, hi: float, bins: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(bin centers, counts) of ``values`` on ``bins`` equal bins over [lo, hi]."""
    counts = torch.histc(values, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    return (edges[:-1] + edges[1:]) / 2, counts


def activation_range(values: torch.Tensor, lo: float, hi: float, bits: int, settings: QuantSettings,
                     bins: int = 1024, grid: int = 100) -> ActRange:
    """Choose [lo, hi] for ``bits``: min-max, a percentile pair, or the MSE-optimal shrink of min-max.

    The MSE search runs on a histogram of the sampled values: a 1-D search over the upper bound for
    one-signed inputs (post-ReLU), a 2-D grid over both bounds otherwise.
    """
    if settings.act_range == "minmax" or bits >= 16 or hi <= lo:
        return ActRange(lo, hi)
    if settings.act_range == "percentile":
        q = torch.tensor([1 - settings.act_percentile / 100, settings.act_percentile / 100], dtype=torch.float64)
        p_lo, p_hi = torch.quantile(values[: 1 << 24].double(), q).tolist()
        return ActRange(p_lo, p_hi)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    centers, counts = histogram(values, lo, hi, bins)
    if lo == 0.0 or hi == 0.0:
        shrink = torch.linspace(1.0 / grid, 1.0, grid)
        cand_lo, cand_hi = lo * shrink, hi * shrink
    else:
        side = int(grid ** 0.5) * 3
        shrink = torch.linspace(1.0 / side, 1.0, side)
        cand_lo = (lo * shrink)[:, None].expand(side, side).reshape(-1)
        cand_hi = (hi * shrink)[None, :].expand(side, side).reshape(-1)
    levels = 2 ** bits - 1
    scale = ((cand_hi - cand_lo) / levels).clamp_min(1e-12)
    zero = torch.round(-cand_lo / scale).clamp(0, levels)
    q = (torch.clamp(torch.round(centers[None, :] / scale[:, None]) + zero[:, None], 0, levels)
         - zero[:, None]) * scale[:, None]
    sq = (q - centers[None, :]) ** 2
    if settings.act_range == "tf_enhanced" and settings.clip_gamma != 1.0:
        clipped = (centers[None, :] < cand_lo[:, None]) | (centers[None, :] > cand_hi[:, None])
        sq = torch.where(clipped, sq * settings.clip_gamma, sq)
    err = (sq * counts[None, :]).sum(dim=1)
    best = int(torch.argmin(err))
    return ActRange(float(cand_lo[best]), float(cand_hi[best]))
