"""HAQ-style hardware lookup tables: a numpy array indexed [layer, w_bits - 1, a_bits - 1].

Users load a table measured on their hardware (``LookupTableCost.load("lut.npy", layers)``);
:func:`measure_cpu_latency_lut` measures one on the local CPU.
"""
from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mpq_gym.errors import ConfigError
from mpq_gym.quant.graph import LayerInfo


class LookupTableCost:
    """A per-layer cost model read from a table [layer, w_bits - 1, a_bits - 1]."""

    def __init__(self, table: np.ndarray, layers: Sequence[LayerInfo], source: str = "array") -> None:
        table = np.asarray(table)
        if table.dtype.kind not in "iuf":
            raise ConfigError(f"lookup table {source} holds {table.dtype} values; it must be a real-valued float array "
                              f"[layer, w_bits - 1, a_bits - 1] (HAQ format: e.g. [{len(layers)}, 8, 8])")
        table = table.astype(np.float64)
        if table.ndim != 3 or table.shape[0] != len(layers):
            raise ConfigError(f"lookup table {source} has shape {table.shape}; expected [{len(layers)} layers, "
                              f"max w_bits, max a_bits] for this workload (HAQ format, e.g. [{len(layers)}, 8, 8])")
        if not np.isfinite(table).all() or (table < 0).any():
            raise ConfigError(f"lookup table {source} holds negative or non-finite costs; every cell must be a "
                              "finite cost >= 0")
        if not (table > 0).any():
            raise ConfigError(f"lookup table {source} is all zeros: a budget on it could never bind; fill in the "
                              "measured costs")
        self.table = table
        self.source = source
        self._row = {layer.name: i for i, layer in enumerate(layers)}

    @classmethod
    def load(cls, path: str | Path, layers: Sequence[LayerInfo]) -> "LookupTableCost":
        """Load a ``.npy`` table; a malformed file raises :class:`ConfigError` naming the expected shape."""
        try:
            table = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ConfigError(f"cannot read lookup table {path} ({type(exc).__name__}: {exc}); save it with "
                              "numpy.save as a float array [layer, w_bits - 1, a_bits - 1]") from exc
        if not isinstance(table, np.ndarray):  # an .npz archive
            table.close()
            raise ConfigError(f"lookup table {path} is an .npz archive; save the one array with numpy.save "
                              "as a .npy file [layer, w_bits - 1, a_bits - 1]")
        return cls(table, layers, source=str(path))

    def save(self, path: str | Path) -> None:
        """Write the table as ``.npy``."""
        np.save(path, self.table)

    def __call__(self, layer: LayerInfo, w_bits: int, a_bits: int) -> float:
        _, max_w, max_a = self.table.shape
        if w_bits > max_w or a_bits > max_a:
            raise ConfigError(f"lookup table {self.source} covers up to W{max_w}A{max_a}; it has no cell for "
                              f"W{w_bits}A{a_bits}: measure a larger table or drop that candidate")
        return float(self.table[self._row[layer.name], w_bits - 1, a_bits - 1])


def _standalone(module: nn.Module, layer: LayerInfo, int8: bool) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        args = dict(in_channels=module.in_channels, out_channels=module.out_channels, kernel_size=module.kernel_size,
                    stride=module.stride, padding=tuple(k // 2 for k in module.kernel_size), groups=module.groups)
        if int8:
            import torch.ao.nn.quantized as nnq
            return nnq.Conv2d(**args)
        return nn.Conv2d(**args)
    if int8:
        import torch.ao.nn.quantized as nnq
        return nnq.Linear(module.in_features, module.out_features)
    return nn.Linear(module.in_features, module.out_features)


@torch.inference_mode()
def _median_time(fn, x: torch.Tensor, repeats: int) -> float:
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_cpu_latency_lut(model: nn.Module, layers: Sequence[LayerInfo], repeats: int = 20,
                            max_bits: int = 32) -> LookupTableCost:
    """Measure each layer alone (batch 1) on this CPU with torch's FP32 and int8 (fbgemm/x86) kernels.

    The CPU has no kernels narrower than 8 bits and none for 16-bit integers, so every cell with
    w <= 8 and a <= 8 holds the int8 time and every other cell the FP32 time: the table is honest
    about this hardware, on which bits below 8 buy no speed.
    """
    table = np.zeros((len(layers), max_bits, max_bits))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's quantized tensors are marked deprecated in favour of torchao
        for i, layer in enumerate(tqdm(layers, desc="measuring layer latency", leave=False)):
            module = model.get_submodule(layer.name)
            x = torch.randn((1, *layer.input_shape))
            fp32 = _median_time(_standalone(module, layer, int8=False).eval(), x, repeats)
            qx = torch.quantize_per_tensor(x, 0.05, 128, torch.quint8)
            int8 = _median_time(_standalone(module, layer, int8=True).eval(), qx, repeats)
            table[i] = fp32
            table[i, :8, :8] = int8
    return LookupTableCost(table, layers, source="measured on the local CPU")
