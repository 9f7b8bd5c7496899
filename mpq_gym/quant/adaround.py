"""AdaRound (Nagel et al., ICML'20; AIMET's weight rounding): learn whether each weight rounds up or down.

Per layer and bit-width, on input rows sampled from the calibration split (im2col patches for convs,
token rows for linears), minimise ``||X W^T - X W~^T||^2 + lambda * sum(1 - |2 h(V) - 1|^beta)`` over
the rectified-sigmoid rounding variables ``V`` of ``W~ = s * clamp(floor(W / s) + h(V), qmin, qmax)``,
with ``beta`` annealed from 20 to 2 after a 20 % warm-up, then round ``h(V)`` to {0, 1}. The per-channel
scale ``s`` is the round-to-nearest one (MSE search). The target is the FP32 layer on FP32 inputs, so the
result depends only on (layer, bits) and is cached per pair. If the learned rounding reconstructs the
rows worse than round-to-nearest (it should not), round-to-nearest is kept.

Devices: the rows are cut from the inputs on the layer's device and kept on the CPU between layers; the
rounding variables, Adam's state and every mini-batch of rows live on ``device`` (the model's), and the
result comes back on the weight's own device (the CPU: what the cache stores and any device loads). The
mini-batches are drawn by a CPU generator, so every device sees the same rows in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn
from torch.nn import functional as F

#: bump when the algorithm changes, so cached AdaRound weights are recomputed
ADAROUND_FORMAT = 2
#: at most this many floats of sampled input rows per layer (a wide depthwise conv gets fewer rows)
ROW_BUDGET = 1 << 22
MIN_ROWS = 256
ZETA, GAMMA = 1.1, -0.1
REG_LAMBDA = 0.01
BETA_START, BETA_END, WARM_UP = 20.0, 2.0, 0.2


@dataclass(frozen=True)
class AdaRoundResult:
    """The rounded weight and its reconstruction error against round-to-nearest's (mean over rows)."""

    weight: torch.Tensor
    error: float
    nearest_error: float


def layer_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows that its weight multiplies: im2col patches (Conv2d) or feature rows."""
    if isinstance(module, nn.Conv2d):
        padding = module.padding if isinstance(module.padding, tuple) else 0  # "same": interior patches only
        cols = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, x.shape[-1])


def rows_output(rows: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``rows @ weight^T`` per group (a grouped conv's output without bias), rows [n, in], weight [out, ...]."""
    out_channels = weight.shape[0]
    w = weight.reshape(groups, out_channels // groups, -1)
    return torch.einsum("rgi,goi->rgo", rows.reshape(len(rows), groups, -1), w).reshape(len(rows), out_channels)


@torch.no_grad()
def collect_rows(model: nn.Module, modules: dict[str, nn.Module], batches: Iterable[torch.Tensor],
                 rows_per_layer: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Up to ``rows_per_layer`` input rows of each module (fewer for wide rows: at most ``ROW_BUDGET``
    floats, at least ``MIN_ROWS`` rows), sampled uniformly from every batch of ``batches``."""
    batches = list(batches)
    generator = torch.Generator().manual_seed(seed)
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    limit: dict[str, int] = {}

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple) -> None:
            x = inputs[0].float()  # cut on the layer's device; the sampled rows wait on the CPU
            if name not in limit:
                width = layer_rows(module, x[:1]).shape[1]
                limit[name] = min(rows_per_layer, max(MIN_ROWS, ROW_BUDGET // width))
            per_sample = -(-limit[name] // (max(len(batches), 1) * len(x)))
            for sample in x.split(1):  # one sample at a time: a big conv's im2col of a whole batch is GBs
                rows = layer_rows(module, sample)
                pick = torch.randint(len(rows), (min(per_sample, len(rows)),), generator=generator)
                collected[name].append(rows[pick.to(rows.device)].cpu())
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()]
    try:
        for batch in batches:
            model(batch)
    finally:
        for h in handles:
            h.remove()
    return {name: torch.cat(parts)[:limit[name]] for name, parts in collected.items()}


def _soft(v: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)


def adaround(weight: torch.Tensor, scale: torch.Tensor, bits: int, rows: torch.Tensor, groups: int = 1,
             iterations: int = 1000, batch_size: int = 256, lr: float = 1e-2, seed: int = 0,
             device: str | torch.device | None = None) -> AdaRoundResult:
    """Learned rounding of ``weight`` (per-channel ``scale``, signed ``bits``-bit grid) for input ``rows``,
    learned on ``device`` (default: the weight's); the rounded weight comes back on the weight's device."""
    target = weight.device if device is None else torch.device(device)
    with torch.inference_mode(False), torch.enable_grad():  # callers may run under inference mode
        # copies on the learning device (ordinary tensors even when the inputs are inference tensors)
        result = _adaround(weight.to(target, copy=True), scale.to(target, copy=True), bits,
                           rows.to(target, copy=True), groups, iterations, batch_size, lr, seed)
    return AdaRoundResult(result.weight.to(weight.device), result.error, result.nearest_error)


def _adaround(weight: torch.Tensor, scale: torch.Tensor, bits: int, rows: torch.Tensor, groups: int,
              iterations: int, batch_size: int, lr: float, seed: int) -> AdaRoundResult:
    """:func:`adaround` on ``weight``'s device, where ``scale`` and ``rows`` already are."""
    device = weight.device
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    shape_s = (-1,) + (1,) * (weight.dim() - 1)
    s = scale.reshape(shape_s).float()
    w = weight.detach().float()
    w_floor = torch.floor(w / s)
    rest = (w / s - w_floor).clamp(1e-4, 1 - 1e-4)
    v = (-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1)).requires_grad_(True)
    target = rows_output(rows, w, groups)
    optimizer = torch.optim.Adam([v], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    warm = int(WARM_UP * iterations)

    def quantized(h: torch.Tensor) -> torch.Tensor:
        return torch.clamp(w_floor + h, qmin, qmax) * s

    for step in range(iterations):
        pick = torch.randint(len(rows), (min(batch_size, len(rows)),), generator=generator).to(device)
        h = _soft(v)
        loss = (rows_output(rows[pick], quantized(h), groups) - target[pick]).pow(2).sum(dim=1).mean()
        if step >= warm:
            progress = (step - warm) / max(iterations - warm, 1)
            angle = torch.tensor(progress * torch.pi, device=device)
            beta = BETA_END + 0.5 * (BETA_START - BETA_END) * (1 + torch.cos(angle))
            loss = loss + REG_LAMBDA * (1 - (2 * h - 1).abs().pow(beta)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        learned = quantized((_soft(v) >= 0.5).float())
        nearest = torch.clamp(torch.round(w / s), qmin, qmax) * s
        error = (rows_output(rows, learned, groups) - target).pow(2).sum(dim=1).mean().item()
        nearest_error = (rows_output(rows, nearest, groups) - target).pow(2).sum(dim=1).mean().item()
    best = learned if error <= nearest_error else nearest
    return AdaRoundResult(best.to(weight.dtype), min(error, nearest_error), nearest_error)
