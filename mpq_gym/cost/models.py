"""Analytic per-layer cost models. Every model is additive over layers, so a configuration's cost is
a sum of per-layer cells: tables [layer, candidate] make costs vectorised and O(1) per step."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from mpq_gym.config import Candidate, Config
from mpq_gym.cost.constants import DRAM_BYTES_PER_S, DRAM_PJ_PER_BYTE, MAC_ENERGY_PJ, MACS_PER_S_8BIT
from mpq_gym.quant.graph import LayerInfo

#: A cost model: (layer, weight bits, activation bits) -> cost of that layer.
LayerCost = Callable[[LayerInfo, int, int], float]


def input_elements(layer: LayerInfo) -> int:
    """Number of values in the layer's input, per sample."""
    return math.prod(layer.input_shape)


def size_bits(layer: LayerInfo, w_bits: int, a_bits: int) -> float:
    """Model size contribution: weights x weight bits; the bias stays 32-bit."""
    return float(layer.weight_params * w_bits + (layer.params - layer.weight_params) * 32)


def bops(layer: LayerInfo, w_bits: int, a_bits: int) -> float:
    """Bit operations (AIMET): MACs x weight bits x activation bits."""
    return float(layer.macs * w_bits * a_bits)


def mac_energy_pj(w_bits: int, a_bits: int) -> float:
    """Energy of one MAC at (w, a), interpolated log-linearly in bits at the geometric mean width."""
    bits = math.sqrt(w_bits * a_bits)
    points = sorted(MAC_ENERGY_PJ)
    x = [math.log2(b) for b in points]
    y = [math.log(MAC_ENERGY_PJ[b]) for b in points]
    return float(math.exp(np.interp(math.log2(bits), x, y, left=None, right=None)))


def energy_pj(layer: LayerInfo, w_bits: int, a_bits: int) -> float:
    """MAC energy plus DRAM traffic of weights and input activations, in pJ."""
    dram_bytes = (layer.params * w_bits + input_elements(layer) * a_bits) / 8
    return layer.macs * mac_energy_pj(w_bits, a_bits) + dram_bytes * DRAM_PJ_PER_BYTE


def latency_s(layer: LayerInfo, w_bits: int, a_bits: int) -> float:
    """Roofline latency of the layer on the generic accelerator of :mod:`mpq_gym.cost.constants`."""
    memory = (layer.params * w_bits + input_elements(layer) * a_bits) / 8 / DRAM_BYTES_PER_S
    compute = layer.macs * max(w_bits, 2) * max(a_bits, 2) / 64 / MACS_PER_S_8BIT
    return max(memory, compute)


ANALYTIC_MODELS: dict[str, LayerCost] = {"size_bits": size_bits, "bops": bops, "latency": latency_s,
                                         "energy": energy_pj}


def cost_table(layers: Sequence[LayerInfo], candidates: Sequence[Candidate], model: LayerCost) -> np.ndarray:
    """Per-layer cost of every candidate: float64 array [layer, candidate]."""
    return np.array([[model(layer, c.w_bits, c.a_bits) for c in candidates] for layer in layers])


def config_cost(layers: Sequence[LayerInfo], config: Config, model: LayerCost) -> float:
    """Total cost of a configuration under one model."""
    return float(sum(model(layer, config[layer.name].w_bits, config[layer.name].a_bits) for layer in layers))
