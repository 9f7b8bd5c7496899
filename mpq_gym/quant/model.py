"""QuantizedModel: a network wrapped once, whose bit-widths switch per layer in O(L)."""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from mpq_gym.cache import cache_dir, content_hash, load_cached, save_atomic
from mpq_gym.config import FLOAT_BITS, SUPPORTED_BITS, Config, Candidate
from mpq_gym.errors import ConfigError
from mpq_gym.quant.graph import LayerInfo, discover_layers, fold_batchnorm
from mpq_gym.quant.quantizers import (ActivationObserver, ActRange, QuantSettings, fake_quant_activation,
                                      fake_quant_weight, weight_scales)

log = logging.getLogger(__name__)
QUANT_BITS = [b for b in SUPPORTED_BITS if b != FLOAT_BITS]
CACHE_FORMAT = 2


class QuantizedModel(nn.Module):
    """Fake-quantized copy of a model (BN folded) with per-layer (weight bits, activation bits).

    Quantized weights are cached in memory per (layer, bits); weight scales and activation ranges are
    also cached on disk under ``cache_key``, so :meth:`set_config` never re-quantizes or re-traces.
    Activation ranges are calibrated lazily, on the first configuration that quantizes activations,
    by running the FP32 model over ``calibration_batches()``.
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor,
                 calibration_batches: Callable[[], Iterable[torch.Tensor]] | None = None,
                 settings: QuantSettings = QuantSettings(), cache_key: str | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.folded_bn = fold_batchnorm(self.model, example_input) if settings.fold_bn else 0
        self.layers: list[LayerInfo] = discover_layers(self.model, example_input)
        self.layer_names: list[str] = [layer.name for layer in self.layers]
        self._modules_q = {n: self.model.get_submodule(n) for n in self.layer_names}
        self._fp32_weights = {n: m.weight.detach().clone() for n, m in self._modules_q.items()}
        self._calibration_batches = calibration_batches
        self._qweights: dict[tuple[str, int], torch.Tensor] = {}
        self._act_params: dict[str, tuple[float, int, int] | None] = {n: None for n in self.layer_names}
        self._config: Config = {n: Candidate(FLOAT_BITS, FLOAT_BITS) for n in self.layer_names}
        self._cache_path: Path | None = (
            cache_dir() / "quant" / f"{content_hash(cache_key, settings, CACHE_FORMAT)}.pt" if cache_key else None)
        self._weight_scales: dict[tuple[str, int], torch.Tensor] = {}
        self._act_ranges: dict[str, dict[int, ActRange]] = {}
        self._dirty = False
        self._load_cache()
        for name, module in self._modules_q.items():
            module.register_forward_pre_hook(self._make_act_hook(name))

    # ----------------------------------------------------------------- cache
    def _load_cache(self) -> None:
        if self._cache_path is None or not self._cache_path.exists():
            return
        data = load_cached(self._cache_path)
        self._weight_scales = data["weight_scales"]
        self._act_ranges = {n: {b: ActRange(*r) for b, r in v.items()} for n, v in data["act_ranges"].items()}

    def _save_cache(self) -> None:
        if self._cache_path is None or not self._dirty:
            return
        save_atomic({"weight_scales": self._weight_scales,
                     "act_ranges": {n: {b: (r.lo, r.hi) for b, r in v.items()} for n, v in self._act_ranges.items()}},
                    self._cache_path)
        self._dirty = False

    # ----------------------------------------------------------- quantizers
    def _make_act_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple) -> tuple | None:
            params = self._act_params[name]
            if params is None:
                return None
            scale, zero_point, bits = params
            return (fake_quant_activation(inputs[0], scale, zero_point, bits), *inputs[1:])
        return hook

    def quantized_weight(self, name: str, bits: int) -> torch.Tensor:
        """The layer's weight fake-quantized at ``bits`` (cached; 32 returns the FP32 folded weight)."""
        if bits == FLOAT_BITS:
            return self._fp32_weights[name]
        key = (name, bits)
        if key not in self._qweights:
            if key not in self._weight_scales:
                self._weight_scales[key] = weight_scales(self._fp32_weights[name], bits, self.settings.weight_range)
                self._dirty = True
            self._qweights[key] = fake_quant_weight(self._fp32_weights[name], self._weight_scales[key], bits)
        return self._qweights[key]

    def activation_range(self, name: str, bits: int) -> ActRange:
        """Calibrated clipping range of the layer's input at ``bits`` (calibrates on first use)."""
        if name not in self._act_ranges:
            self.calibrate()
            self._save_cache()
        return self._act_ranges[name][bits]

    @torch.no_grad()
    def calibrate(self) -> None:
        """Run the FP32 model over the calibration split and set every layer's activation ranges."""
        if self._calibration_batches is None:
            raise ConfigError("this QuantizedModel has no calibration data, so activations cannot be "
                              "quantized: pass calibration_batches=, or use a32 (unquantized) activations")
        saved = dict(self._config)
        self.set_config({n: Candidate(FLOAT_BITS, FLOAT_BITS) for n in self.layer_names})
        observers = {n: ActivationObserver() for n in self.layer_names}
        handles = [m.register_forward_pre_hook(lambda mod, inp, obs=observers[n]: obs.observe(inp[0]))
                   for n, m in self._modules_q.items()]
        try:
            for batch in tqdm(self._calibration_batches(), desc="calibrating activations", leave=False):
                self.model(batch)
        finally:
            for h in handles:
                h.remove()
        for name, obs in tqdm(observers.items(), desc="activation ranges", leave=False):
            self._act_ranges[name] = obs.ranges(QUANT_BITS, self.settings)
        self._dirty = True
        self.set_config(saved)

    # ------------------------------------------------------------ switching
    def set_config(self, config: Config) -> None:
        """Switch every layer to its candidate. Unknown or missing layers raise :class:`ConfigError`."""
        if config.keys() != self._config.keys():
            missing = [n for n in self.layer_names if n not in config]
            extra = [n for n in config if n not in self._config]
            raise ConfigError(f"configuration does not match the model's layers (missing {missing[:3]}, "
                              f"unknown {extra[:3]}); build it from QuantizedModel.layer_names")
        if any(c.a_bits != FLOAT_BITS for c in config.values()) and len(self._act_ranges) < len(self.layer_names):
            self.calibrate()  # before any layer is switched: calibration runs the FP32 model
        for name, cand in config.items():
            module = self._modules_q[name]
            module.weight.data = self.quantized_weight(name, cand.w_bits)
            if cand.a_bits == FLOAT_BITS:
                self._act_params[name] = None
            else:
                scale, zero_point = self.activation_range(name, cand.a_bits).scale_zero_point(cand.a_bits)
                self._act_params[name] = (scale, zero_point, cand.a_bits)
        self._config = dict(config)
        self._save_cache()

    @property
    def config(self) -> Config:
        """The configuration currently applied."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def layer(self, name: str) -> LayerInfo:
        """Statistics of one layer by name."""
        return self.layers[self.layer_names.index(name)]
