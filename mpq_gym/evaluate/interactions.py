"""Measured pairwise interactions between quantizer groups (CLADO's cross-layer terms, label-free).

Phase 1 measures each group alone; the additive surrogate and the ILP assume the output noise of a
configuration is the sum of those. For a pair of groups (g, h) and candidates (c, d), this module measures
the output SQNR with *both* quantized (everything else FP32), with the same suffix re-runs phase 1 uses, and
keeps the interaction in noise-power units::

    I[g, h, c, d] = N(g=c, h=d) - n[g, c] - n[h, d]        (N, n = 10^(-SQNR / 10))

Zero means the two groups' noise adds as the additive model assumes; positive means they compound, negative
that they partly cancel. Pairs are the adjacent groups by default (the cheap ones the stage chain supports
best: (G - 1) x C^2 cells); the table is cached and resumable like phase 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from mpq_gym.candidates import QuantizerGroup
from mpq_gym.config import Candidate
from mpq_gym.evaluate.sensitivity import SensitivityTable, masked_sqnr_rows, resumable_rows, table_path
from mpq_gym.metrics import noise_power
from mpq_gym.quant.model import QuantizedModel

PAIRWISE_FORMAT = 1


def adjacent_pairs(n_groups: int) -> list[tuple[int, int]]:
    """(g, g + 1) for every group but the last: the pairs measured by default."""
    return [(g, g + 1) for g in range(n_groups - 1)]


@dataclass
class PairwiseTable:
    """SQNR (dB) with both groups of each pair quantized [P, C, C], and the interaction it implies."""

    pairs: list[tuple[int, int]]
    sqnr_db: np.ndarray
    images: int

    def interactions(self, single: SensitivityTable) -> np.ndarray:
        """I[p, c, d] = N(pair p at (c, d)) - n[g, c] - n[h, d], in noise-power units [P, C, C]."""
        n = noise_power(single.sqnr_db)
        joint = noise_power(self.sqnr_db)
        g, h = np.array(self.pairs).T
        return joint - n[g][:, :, None] - n[h][:, None, :]


def pairwise_cells(groups: Sequence[QuantizerGroup], candidates: Sequence[Candidate],
                   pairs: Sequence[tuple[int, int]]) -> dict[int, list[dict[str, Candidate]]]:
    """Row p: the C x C partial configurations of pair p, candidate of the first group major."""
    return {p: [{**{layer: c for layer in groups[g].layers}, **{layer: d for layer in groups[h].layers}}
                for c in candidates for d in candidates] for p, (g, h) in enumerate(pairs)}


def compute_pairwise(qmodel: QuantizedModel, inputs: torch.Tensor, groups: Sequence[QuantizerGroup],
                     candidates: Sequence[Candidate], pairs: Sequence[tuple[int, int]] | None = None,
                     cache_key: str | None = None, batch_size: int = 32, progress: bool = True) -> PairwiseTable:
    """Measure every pair (default :func:`adjacent_pairs`) on ``inputs`` (phase 1's calibration images);
    cached and resumable under ``cache_key``."""
    pairs = list(pairs) if pairs is not None else adjacent_pairs(len(groups))
    path = table_path("pairwise", PAIRWISE_FORMAT, cache_key, qmodel, groups, candidates, pairs, len(inputs))
    cells = pairwise_cells(groups, candidates, pairs)

    def fill(pending: list[int], record: Callable[[int, np.ndarray], None]) -> None:
        needed = {layer for p in pending for partial in cells[p] for layer in partial}
        qmodel.prepare_candidates([n for n in qmodel.layer_names if n in needed], candidates)  # one data pass
        masked_sqnr_rows(qmodel, inputs, {p: cells[p] for p in pending}, batch_size, record)  # type: ignore[arg-type]

    sqnr = resumable_rows(path, (len(pairs), len(candidates) ** 2), fill, "pairwise interactions", progress)
    return PairwiseTable(pairs, sqnr.reshape(len(pairs), len(candidates), len(candidates)), len(inputs))
