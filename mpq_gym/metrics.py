"""Task metrics, the label-free SQNR, and noise power."""
from __future__ import annotations

import math

import numpy as np
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


def noise_power(sqnr: "np.ndarray | float") -> np.ndarray:
    """Relative noise power of an SQNR in dB: 10^(-SQNR/10) (the additive unit of the surrogate and the ILP)."""
    return np.power(10.0, -np.asarray(sqnr, dtype=np.float64) / 10.0)


def sts_metrics(embeddings: torch.Tensor, gold: torch.Tensor, fp32_embeddings: torch.Tensor) -> dict[str, float]:
    """Sentence-pair similarity: Spearman correlation between the cosine similarity of each pair's two
    embeddings [n, 2, d] and the gold score, plus the label-free cosine fidelity (mean cosine between
    each embedding and its FP32 counterpart)."""
    from scipy.stats import spearmanr
    cosine = torch.nn.functional.cosine_similarity(embeddings[:, 0], embeddings[:, 1], dim=-1)
    fidelity = torch.nn.functional.cosine_similarity(embeddings.flatten(0, 1), fp32_embeddings.flatten(0, 1), dim=-1)
    return {"spearman": float(spearmanr(cosine.double().numpy(), gold.double().numpy()).statistic),
            "cosine_fidelity": float(fidelity.mean())}


def perplexity_metrics(token_nll: torch.Tensor, mask: torch.Tensor, fp32_token_nll: torch.Tensor) -> dict[str, float]:
    """Language modelling from per-token negative log-likelihoods [n, length] (0 at padding) and the
    mask of scored tokens: perplexity, mean NLL, and ``neg_perplexity`` (higher is better, the metric
    searches maximise)."""
    nll = float(token_nll.double().sum() / mask.double().sum().clamp_min(1))
    perplexity = math.exp(min(nll, 700.0))
    return {"neg_perplexity": -perplexity, "perplexity": perplexity, "nll": nll}
