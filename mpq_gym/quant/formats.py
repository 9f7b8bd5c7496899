"""Number formats beyond the uniform integer grid, for weights and activations.

* ``pot``: power of two, ``{0, ±2^-k}`` (ANT's PoT type).
* ``flint``: ANT's float-int (Guo et al., MICRO'22): the codes whose top magnitude bit is 0 are plain
  integers (int's precision near zero); for the others, the run of leading ones is a unary exponent and
  the bits after the first zero a mantissa (float's range). 3 magnitude bits (4-bit signed):
  ``{0, 1, 2, 3, 4, 6, 8, 16}``; 4 bits (4-bit unsigned): ``{0..7, 8, 10, 12, 14, 16, 24, 32, 64}``.
* ``ant``: per tensor, whichever of int / pot / flint quantizes that tensor with the least squared
  error (ANT's per-layer type selection), each with its own MSE-searched scale.
* ``olive``: outlier-victim pairs (Guo et al., ISCA'23): values are taken in adjacent pairs along the
  last dimension; a normal pair is plain int in ``[-(2^(b-1)-1), 2^(b-1)-1]`` (the code ``-2^(b-1)``
  marks a victim), a pair holding an outlier keeps the larger value in the outlier format ``abfloat``
  (sign, E exponent bits biased to start just above the int range, M mantissa bits: E2M1 at 4 bits,
  E4M3 at 8) and sets its neighbour (the victim) to zero.

Grids (pot, flint) are normalised so their largest level is 1: the scale is the clipping value.
Weights are per output channel (axis 0), activations per tensor; signed activations use a symmetric
grid, one-signed ones (post-ReLU) the unsigned grid with all ``bits`` as magnitude bits.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch

from mpq_gym.metrics import sqnr_db
from mpq_gym.quant.quantizers import (ActRange, QuantSettings, _channel_errors, _signed_limits, activation_range,
                                      adjacent_pairs, fake_quant_activation, fake_quant_weight, histogram,
                                      search_clip, weight_scales)

GRID_FORMATS = ("int", "pot", "flint")
#: ANT chooses among these per tensor
ANT_TYPES = GRID_FORMATS
#: pot levels below 2^-POT_MIN_EXP of the clipping value round to zero (float32 resolution anyway)
POT_MIN_EXP = 30


# ----------------------------------------------------------------------------------------- grids
@lru_cache(maxsize=None)
def magnitudes(fmt: str, n: int) -> tuple[float, ...]:
    """Representable non-negative magnitudes with ``n`` magnitude bits, largest = 1 (0 included)."""
    if fmt == "int":
        values = [float(k) for k in range(2 ** n)]
    elif fmt == "pot":
        values = [0.0] + [2.0 ** -k for k in range(min(2 ** n - 1, POT_MIN_EXP + 1))]
    elif fmt == "flint":
        values = []
        for code in range(2 ** n):
            if code < 2 ** (n - 1):
                values.append(float(code))
                continue
            ones = next(k for k in range(1, n + 1) if k == n or not code >> (n - 1 - k) & 1)
            mantissa_bits = max(n - ones - 1, 0)
            mantissa = code & ((1 << mantissa_bits) - 1)
            values.append(2.0 ** (n - 2 + ones) * (1 + mantissa / 2 ** mantissa_bits))
    else:
        raise ValueError(f"{fmt!r} is not a grid format; grids: {GRID_FORMATS}")
    top = max(values)
    return tuple(sorted(v / top for v in values))


@lru_cache(maxsize=None)
def grid_levels(fmt: str, bits: int, signed: bool) -> torch.Tensor:
    """Sorted levels of a ``bits``-bit grid format (symmetric when ``signed``), largest magnitude 1."""
    mags = torch.tensor(magnitudes(fmt, bits - 1 if signed else bits), dtype=torch.float32)
    return torch.cat([-mags.flip(0)[:-1], mags]) if signed else mags


def grid_round(y: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Nearest level of a sorted grid (ties to the upper level), values beyond the ends clamped."""
    midpoints = (levels[1:] + levels[:-1]) / 2
    return levels[torch.bucketize(y, midpoints)]


def grid_fake_quant(x: torch.Tensor, clip: torch.Tensor | float, levels: torch.Tensor) -> torch.Tensor:
    """``x`` on the grid ``levels`` scaled by ``clip`` (a float, or one value per row of ``x``)."""
    if isinstance(clip, torch.Tensor):
        clip = clip.to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
    return grid_round(x / clip, levels.to(x.device)) * clip


# ----------------------------------------------------------------------------------------- OliVe
def olive_outlier_bits(bits: int) -> tuple[int, int]:
    """(exponent bits, mantissa bits) of OliVe's outlier format for a ``bits``-bit element."""
    exponent = {2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3}.get(bits, 4)
    return exponent, bits - 1 - exponent


def abfloat(magnitude: torch.Tensor, bits: int) -> torch.Tensor:
    """Nearest OliVe outlier value (in integer units): exponent biased so the smallest is 2^(bits-1)."""
    exponent_bits, mantissa_bits = olive_outlier_bits(bits)
    bias = bits - 1
    top_exp = bias + 2 ** exponent_bits - 1
    exp = torch.floor(torch.log2(magnitude.clamp_min(1.0))).clamp(bias, top_exp)
    step = torch.exp2(exp - mantissa_bits)
    value = torch.round(magnitude / step) * step  # rounding to 2^(e+1) is itself representable
    return value.clamp(2.0 ** bias, (2 - 2.0 ** -mantissa_bits) * 2.0 ** top_exp)


def olive_round(y: torch.Tensor, bits: int) -> torch.Tensor:
    """OliVe-quantize ``y`` (in integer units) in adjacent pairs along the last dimension."""
    qmax = 2 ** (bits - 1) - 1
    pairs = adjacent_pairs(y)
    mag = pairs.abs()
    outlier = mag > qmax + 0.5
    has_outlier = outlier.any(dim=-1, keepdim=True)
    larger_first = mag[..., :1] >= mag[..., 1:]
    keep = torch.cat([larger_first, ~larger_first], dim=-1)  # the larger of the pair survives
    normal = torch.round(pairs).clamp(-qmax, qmax)
    outlier_value = torch.sign(pairs) * abfloat(mag, bits)
    out = torch.where(has_outlier, torch.where(keep, outlier_value, torch.zeros_like(pairs)), normal)
    return out.reshape(*y.shape[:-1], -1)[..., :y.shape[-1]]


def olive_fake_quant(x: torch.Tensor, scale: torch.Tensor | float, bits: int) -> torch.Tensor:
    """``x`` OliVe-quantized with ``scale`` per integer step (a float, or one value per row of ``x``)."""
    if isinstance(scale, torch.Tensor):
        scale = scale.to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
    return olive_round(x / scale, bits) * scale


# ----------------------------------------------------------------------------------------- weights
@dataclass(frozen=True)
class WeightQuant:
    """How one weight tensor is quantized: the resolved format and its per-channel scale."""

    fmt: str
    bits: int
    scale: torch.Tensor

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        if self.fmt == "int":
            return fake_quant_weight(weight, self.scale, self.bits)
        if self.fmt == "olive":
            flat = weight.reshape(weight.shape[0], -1)
            return olive_fake_quant(flat, self.scale, self.bits).reshape(weight.shape)
        return grid_fake_quant(weight, self.scale, grid_levels(self.fmt, self.bits, True))


def _weight_candidate(flat: torch.Tensor, bits: int, fmt: str, method: str, gamma: float = 3.0,
                      moment: torch.Tensor | None = None) -> tuple[WeightQuant, float]:
    """Best per-channel scale of one concrete format and its total squared error."""
    if fmt == "int":
        scale = weight_scales(flat, bits, method, gamma=gamma, moment=moment)
        qmin, qmax = _signed_limits(bits)
        return WeightQuant("int", bits, scale), _channel_errors(flat, scale, qmin, qmax).sum().item()
    if fmt == "olive":
        qmax = 2 ** (bits - 1) - 1
        err: Callable = lambda clip: (olive_fake_quant(flat, clip / qmax, bits) - flat).pow_(2).sum(dim=1)
        to_scale = 1.0 / qmax
    else:
        levels = grid_levels(fmt, bits, True)
        err = lambda clip: (grid_fake_quant(flat, clip, levels) - flat).pow_(2).sum(dim=1)
        to_scale = 1.0
    if method == "minmax":
        clip = flat.abs().amax(dim=1).clamp_min(1e-12)
        return WeightQuant(fmt, bits, clip * to_scale), err(clip).sum().item()
    clip, errors = search_clip(flat, err, low=0.02 if fmt == "olive" else 0.1)
    return WeightQuant(fmt, bits, clip * to_scale), errors.sum().item()


def weight_quantizer(weight: torch.Tensor, bits: int, fmt: str = "int", method: str = "mse", gamma: float = 3.0,
                     moment: torch.Tensor | None = None) -> WeightQuant:
    """The quantizer of ``weight`` at ``bits`` in ``fmt``; ``ant`` picks the type with the least MSE.
    ``method`` ``tf_enhanced`` / ``output_mse`` apply to the int grid (other grids search plain MSE);
    ``gamma`` and ``moment`` are theirs (see :func:`~mpq_gym.quant.quantizers.weight_scales`)."""
    flat = weight.detach().reshape(weight.shape[0], -1).float()
    if fmt == "ant":
        options = [_weight_candidate(flat, bits, t, method, gamma, moment) for t in ANT_TYPES]
        return min(options, key=lambda option: option[1])[0]
    return _weight_candidate(flat, bits, fmt, method, gamma, moment)[0]


# ------------------------------------------------------------------------------------- activations
@dataclass(frozen=True)
class ActQuant:
    """How one layer input is quantized: resolved format, bits, scale (clip for grids), zero point."""

    fmt: str
    bits: int
    scale: float
    zero_point: int = 0
    signed: bool = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fmt == "int":
            return fake_quant_activation(x, self.scale, self.zero_point, self.bits)
        if self.fmt == "olive":
            return olive_fake_quant(x, self.scale, self.bits)
        return grid_fake_quant(x, self.scale, grid_levels(self.fmt, self.bits, self.signed))


def int_act_quant(act_range: ActRange, bits: int) -> ActQuant:
    """The asymmetric integer quantizer of a calibrated range."""
    scale, zero_point = act_range.scale_zero_point(bits)
    return ActQuant("int", bits, scale, zero_point, signed=False)


def _grid_act_candidate(centers: torch.Tensor, counts: torch.Tensor, bits: int, fmt: str,
                        grid: int = 100) -> tuple[ActQuant, float]:
    """Best clip of a grid format on a histogram (centers, counts) and its squared error."""
    lo, hi = centers[0].item(), centers[-1].item()
    signed = lo < 0.0
    levels = grid_levels(fmt, bits, signed)
    clips = max(abs(lo), hi) * torch.linspace(1.0 / grid, 1.0, grid)
    q = grid_round(centers[None, :] / clips[:, None], levels) * clips[:, None]
    err = ((q - centers[None, :]) ** 2 * counts[None, :]).sum(dim=1)
    best = int(torch.argmin(err))
    return ActQuant(fmt, bits, float(clips[best]), signed=signed), float(err[best])


def olive_act_quant(pairs: torch.Tensor, lo: float, hi: float, bits: int, grid: int = 60) -> ActQuant:
    """OliVe quantizer of a layer input: the symmetric scale with the least MSE on sampled adjacent pairs."""
    qmax = 2 ** (bits - 1) - 1
    absmax = max(abs(lo), abs(hi), 1e-12)
    clips = absmax * torch.linspace(1.0 / grid, 1.0, grid)
    errors = torch.stack([(olive_fake_quant(pairs, float(c) / qmax, bits) - pairs).pow_(2).sum() for c in clips])
    return ActQuant("olive", bits, float(clips[int(torch.argmin(errors))]) / qmax)


def activation_quantizer(values: torch.Tensor, pairs: torch.Tensor, lo: float, hi: float, bits: int, fmt: str,
                         settings: QuantSettings) -> ActQuant:
    """Quantizer of one layer input from its calibration sample (``values``) and adjacent ``pairs``."""
    if fmt == "int":
        return int_act_quant(activation_range(values, lo, hi, bits, settings), bits)
    if fmt == "olive":
        return olive_act_quant(pairs, lo, hi, bits)
    if fmt not in ("pot", "flint", "ant"):
        raise ValueError(f"unknown number format {fmt!r}")
    centers, counts = histogram(values, min(lo, 0.0), max(hi, 0.0))
    if fmt != "ant":
        return _grid_act_candidate(centers, counts, bits, fmt)[0]
    as_int = int_act_quant(activation_range(values, lo, hi, bits, settings), bits)
    options = [(as_int, float(((as_int(centers.clone()) - centers) ** 2 * counts).sum()))]
    options += [_grid_act_candidate(centers, counts, bits, t) for t in ("pot", "flint")]
    return min(options, key=lambda option: option[1])[0]


def tensor_sqnr_db(x: torch.Tensor, quantized: torch.Tensor) -> float:
    """SQNR of one quantized tensor against its original, in dB."""
    return sqnr_db(quantized, x)
