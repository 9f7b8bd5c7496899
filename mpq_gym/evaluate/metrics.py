"""Task metrics and the label-free output SQNR."""
from __future__ import annotations

import math

import torch


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, fp32_logits: torch.Tensor) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) and agreement (%) of the top-1 prediction with the FP32 model's."""
    k = min(5, logits.shape[1])
    topk = logits.topk(k, dim=1).indices
    top1 = (topk[:, 0] == targets).float().mean().item() * 100
    top5 = (topk == targets[:, None]).any(dim=1).float().mean().item() * 100
    agreement = (topk[:, 0] == fp32_logits.argmax(dim=1)).float().mean().item() * 100
    return {"top1": top1, "top5": top5, "agreement": agreement}


def sqnr_db(outputs: torch.Tensor, reference: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio of ``outputs`` against ``reference`` in dB (inf when identical)."""
    noise = (outputs.double() - reference.double()).pow(2).sum().item()
    signal = reference.double().pow(2).sum().item()
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(max(signal, 1e-300) / noise)
