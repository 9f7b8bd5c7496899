"""QuantizedModel: a network wrapped once, whose bit-widths switch per layer in O(L)."""
from __future__ import annotations

import copy
import logging
from dataclasses import astuple
from numbers import Real
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from mpq_gym.allocator import tune_allocator
from mpq_gym.cache import cache_dir, content_hash, entry_key, load_entry, new_lineage, save_atomic, tensor_like
from mpq_gym.devices import device_tag, resolve_device
from mpq_gym.config import DEFAULT_FORMAT, FLOAT_BITS, FP32, SUPPORTED_BITS, Candidate, Config
from mpq_gym.errors import ConfigError
from mpq_gym.quant.adaround import ADAROUND_FORMAT, adaround, collect_rows
from mpq_gym.quant.formats import ActQuant, WeightQuant, activation_quantizer, int_act_quant, weight_quantizer
from mpq_gym.quant.graph import LayerInfo, discover_layers, fold_batchnorm
from mpq_gym.quant.quantizers import ActivationObserver, ActRange, QuantSettings

log = logging.getLogger(__name__)
QUANT_BITS = [b for b in SUPPORTED_BITS if b != FLOAT_BITS]
CACHE_FORMAT = 6
#: Bump when the AdaRound cache layout changes (on top of ``ADAROUND_FORMAT``, the algorithm's version).
ADAROUND_CACHE_FORMAT = 2


class QuantizedModel(nn.Module):
    """Fake-quantized copy of a model (BN folded) with a per-layer candidate (weight bits, activation bits,
    number format).

    Quantized weights are cached in memory per (layer, bits, format); weight quantizers, activation
    ranges and AdaRound weights are also cached on disk under ``cache_key``, so :meth:`set_config` never
    re-quantizes or re-traces. Activation ranges are calibrated lazily, on the first configuration that
    quantizes activations, by running the FP32 model over ``calibration_batches()``; the calibration
    sample stays in memory so other number formats are fitted without another pass. Building one tunes the
    process's allocator for large tensors (:func:`mpq_gym.allocator.tune_allocator`).
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor,
                 calibration_batches: Callable[[], Iterable[torch.Tensor]] | None = None,
                 settings: QuantSettings = QuantSettings(), cache_key: str | None = None,
                 progress: bool = True, device: str | torch.device = "cpu") -> None:
        super().__init__()
        tune_allocator()
        self.device = resolve_device(device)
        self.settings = settings
        self.progress = progress
        self.model = copy.deepcopy(model).cpu().eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.folded_bn = fold_batchnorm(self.model, example_input) if settings.fold_bn else 0
        self.layers: list[LayerInfo] = discover_layers(self.model, example_input)
        self.layer_names: list[str] = [layer.name for layer in self.layers]
        self._modules_q = {n: self.model.get_submodule(n) for n in self.layer_names}
        # quantizers are fitted on the CPU copies (device-independent caches); the model runs on self.device
        self._fp32_weights = {n: m.weight.detach().clone() for n, m in self._modules_q.items()}
        self._fp32_biases = {n: None if m.bias is None else m.bias.detach().clone() for n, m in self._modules_q.items()}
        self._input_means: dict[str, torch.Tensor] = {}
        self._input_moments: dict[str, torch.Tensor] = {}
        self._biases: dict[tuple[str, int, str], torch.Tensor] = {}
        self._calibration_batches = calibration_batches
        self._cache_key = cache_key
        self._qweights: dict[tuple[str, int, str], torch.Tensor] = {}
        self._act_quant: dict[str, ActQuant | None] = {n: None for n in self.layer_names}
        self._config: Config = {n: FP32 for n in self.layer_names}
        self._cache_path: Path | None = (
            cache_dir() / "quant" / f"{content_hash(cache_key, settings, CACHE_FORMAT)}.pt" if cache_key else None)
        self._weight_quant: dict[tuple[str, int, str], WeightQuant] = {}
        self._act_ranges: dict[str, dict[int, ActRange]] = {}
        self._act_formats: dict[tuple[str, int, str], ActQuant] = {}
        self._observers: dict[str, ActivationObserver] = {}
        self._adaround: dict[tuple[str, int], torch.Tensor] = {}
        self._adaround_entries: dict[tuple[str, int], tuple[str, str]] = {}
        self._cache_lineage = new_lineage()
        self._dirty = False
        # id(CPU tensor) -> (that tensor, kept alive so its id stays unique; its copy on self.device)
        self._on_device: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._load_cache()
        for name, module in self._modules_q.items():
            module.register_forward_pre_hook(self._make_act_hook(name))
        self.model.to(self.device)

    # ----------------------------------------------------------------- cache
    def _valid_cache(self, data: object) -> bool:
        """Whether a loaded quantizer cache has the structure :meth:`_save_cache` writes, for these layers."""
        names = set(self.layer_names)
        if not isinstance(data, dict) or set(data) != {"weight_quant", "act_ranges", "act_formats", "input_means"}:
            return False
        for name, mean in data["input_means"].items():
            if name not in names or not tensor_like(mean) or not mean.is_floating_point():
                return False
        for (name, bits, fmt), (rfmt, rbits, scale) in data["weight_quant"].items():
            if (name not in names or not isinstance(bits, int) or not isinstance(fmt, str) or not isinstance(rfmt, str)
                    or not isinstance(rbits, int) or not tensor_like(scale) or not scale.is_floating_point()
                    or scale.numel() == 0 or scale.shape[0] not in (1, self._fp32_weights[name].shape[0])):
                return False
        for name, ranges in data["act_ranges"].items():
            if name not in names or not isinstance(ranges, dict) or set(ranges) != set(QUANT_BITS):
                return False
            if not all(isinstance(r, tuple) and len(r) == 2 and all(isinstance(v, Real) for v in r)
                       for r in ranges.values()):
                return False
        for (name, bits, fmt), q in data["act_formats"].items():
            if (name not in names or not isinstance(bits, int) or not isinstance(fmt, str) or not isinstance(q, tuple)
                    or len(q) != 5 or not isinstance(q[0], str) or not isinstance(q[2], Real)):
                return False
        return True

    def _load_cache(self) -> None:
        if self._cache_path is None:
            return
        entry = load_entry(self._cache_path, self._valid_cache)
        if entry is None:
            return
        data = entry.obj
        self._cache_lineage = entry.lineage
        self._weight_quant = {k: WeightQuant(*v) for k, v in data["weight_quant"].items()}
        self._act_ranges = {n: {b: ActRange(*r) for b, r in v.items()} for n, v in data["act_ranges"].items()}
        self._act_formats = {k: ActQuant(*v) for k, v in data["act_formats"].items()}
        self._input_means = dict(data["input_means"])

    def _save_cache(self) -> None:
        if self._cache_path is None or not self._dirty:
            return
        save_atomic({"weight_quant": {k: (q.fmt, q.bits, q.scale) for k, q in self._weight_quant.items()},
                     "act_ranges": {n: {b: (r.lo, r.hi) for b, r in v.items()} for n, v in self._act_ranges.items()},
                     "act_formats": {k: astuple(q) for k, q in self._act_formats.items()},
                     "input_means": self._input_means},
                    self._cache_path, lineage=self._cache_lineage)
        self._dirty = False

    def cache_entries(self) -> dict[str, str]:
        """The disk-cache entries behind the current configuration: the quantizer cache (its lineage) and
        the AdaRound weights in use (their checksums). The result store records them with each result."""
        entries = {entry_key(self._cache_path): self._cache_lineage} if self._cache_path is not None else {}
        for name, cand in self._config.items():
            used = self._adaround_entries.get((name, cand.w_bits)) if self.uses_adaround(cand.w_bits, cand.fmt) else None
            if used is not None:
                entries[used[0]] = used[1]
        return entries

    # ----------------------------------------------------------- quantizers
    def _make_act_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple) -> tuple | None:
            quantizer = self._act_quant[name]
            if quantizer is None:
                return None
            return (quantizer(inputs[0]), *inputs[1:])
        return hook

    def weight_quantizer(self, name: str, bits: int, fmt: str = DEFAULT_FORMAT) -> WeightQuant:
        """The layer's weight quantizer at ``bits`` in ``fmt`` (``ant`` resolved to one type; cached)."""
        key = (name, bits, fmt)
        if key not in self._weight_quant:
            method = self.settings.weight_range
            if method == "output_mse" and not self.has_calibration_data:
                method = "tf_enhanced"  # no data for the output-aware objective: the clip-weighted weight MSE
            moment = self.input_moment(name) if method == "output_mse" and fmt in ("int", "ant") else None
            self._weight_quant[key] = weight_quantizer(self._fp32_weights[name], bits, fmt, method,
                                                       gamma=self.settings.clip_gamma, moment=moment)
            self._dirty = True
        return self._weight_quant[key]

    def quantized_weight(self, name: str, bits: int, fmt: str = DEFAULT_FORMAT) -> torch.Tensor:
        """The layer's weight fake-quantized at ``bits`` in ``fmt`` (cached; 32 returns the FP32 folded weight).
        With ``weight_rounding="adaround"``, integer weights use the learned rounding."""
        if bits == FLOAT_BITS:
            return self._fp32_weights[name]
        key = (name, bits, fmt)
        if key not in self._qweights:
            if self.uses_adaround(bits, fmt):
                self.prepare_adaround([(name, bits)])
                self._qweights[key] = self._adaround[(name, bits)]
            else:
                self._qweights[key] = self.weight_quantizer(name, bits, fmt)(self._fp32_weights[name])
        return self._qweights[key]

    def input_mean(self, name: str) -> torch.Tensor:
        """Mean [groups, d] of the layer's FP32 input rows (im2col patches of convs, feature rows of linears;
        d = in_channels / groups x kernel area) on the calibration split (cached on disk)."""
        if name not in self._input_means:
            self._collect_input_stats(second=False)
        return self._input_means[name]

    def input_moment(self, name: str) -> torch.Tensor:
        """Second moment [groups, d, d] of the layer's FP32 input rows on the calibration split (in memory)."""
        if name not in self._input_moments:
            self._collect_input_stats(second=True)
        return self._input_moments[name]

    @property
    def has_calibration_data(self) -> bool:
        """Whether calibration batches were given (ranges and statistics that need data can be computed)."""
        return self._calibration_batches is not None

    @torch.no_grad()
    def _collect_input_stats(self, second: bool, chunk: int = 4) -> None:
        from mpq_gym.quant.adaround import layer_rows
        if self._calibration_batches is None:
            raise ConfigError("input statistics need calibration data: pass calibration_batches=")
        saved = dict(self._config)
        self.set_config({n: FP32 for n in self.layer_names})
        sums: dict[str, list] = {}

        def hook(name: str) -> Callable:
            def record(module: nn.Module, inputs: tuple) -> None:
                groups = getattr(module, "groups", 1)
                x = inputs[0].float().cpu()
                for part in x.split(chunk):
                    rows = layer_rows(module, part)
                    rows = rows.reshape(len(rows), groups, -1).transpose(0, 1)  # [groups, n, d]
                    s1 = rows.double().sum(1)
                    s2 = torch.bmm(rows.transpose(1, 2), rows).double() if second else torch.zeros(())
                    if name in sums:
                        sums[name][0] += s1
                        sums[name][1] += s2
                        sums[name][2] += rows.shape[1]
                    else:
                        sums[name] = [s1, s2, rows.shape[1]]
            return record
        self._run_calibration(hook)
        self._input_means.update({n: (s1 / count).float() for n, (s1, _, count) in sums.items()})
        if second:
            self._input_moments.update({n: (s2 / count).float() for n, (_, s2, count) in sums.items()})
        self._dirty = True
        self.set_config(saved)

    def layer_bias(self, name: str, bits: int, fmt: str = DEFAULT_FORMAT) -> torch.Tensor | None:
        """The layer's bias under ``bits``: the FP32 (folded) one, or with ``bias_correction`` the one that
        cancels the mean output shift of the quantized weight on the calibration inputs."""
        bias = self._fp32_biases[name]
        if bias is None or bits == FLOAT_BITS or not self.settings.bias_correction or not self.has_calibration_data:
            return bias
        key = (name, bits, fmt)
        if key not in self._biases:
            mean = self.input_mean(name)  # [groups, d]
            delta = (self.quantized_weight(name, bits, fmt) - self._fp32_weights[name]).reshape(
                mean.shape[0], -1, mean.shape[1])
            self._biases[key] = bias - torch.einsum("goi,gi->go", delta, mean).reshape(-1)
        return self._biases[key]

    def uses_adaround(self, bits: int, fmt: str = DEFAULT_FORMAT) -> bool:
        """Whether weights at ``bits`` in ``fmt`` get learned rounding under these settings."""
        return self.settings.weight_rounding == "adaround" and fmt == "int" and bits < 16

    def _adaround_path(self, name: str, bits: int) -> Path | None:
        """Where the learned weight of (``name``, ``bits``) is cached: a CPU tensor any device loads, keyed like
        the results (:func:`device_tag`: CPU keys unchanged; learned on an accelerator, its own key, so CPU
        results never depend on an accelerator's last bits)."""
        if self._cache_key is None:
            return None
        key = content_hash(self._cache_key, self.settings, ADAROUND_FORMAT, ADAROUND_CACHE_FORMAT, name, bits,
                           *device_tag(self.device))
        return cache_dir() / "adaround" / f"{key}.pt"

    def prepare_candidates(self, layers: Iterable[str], candidates: Iterable[Candidate]) -> None:
        """Learn or load, in one pass over the calibration data, the AdaRound weights that these layers
        need under these candidates (call it before visiting configurations one layer at a time)."""
        candidates = list(candidates)
        self.prepare_adaround([(name, c.w_bits) for name in layers for c in candidates
                               if self.uses_adaround(c.w_bits, c.fmt)])

    def fit_quantizers(self, layers: Iterable[str], candidates: Iterable[Candidate]) -> None:
        """Fit (or load) every quantizer these layers need under these candidates (activation ranges, weight
        quantizers, bias corrections, AdaRound weights) and save the cache. Fitting runs the calibration data
        through the network (minutes on a large one): a driver does it once before handing work to worker
        processes, which then load it instead of each fitting its own."""
        layers, candidates = list(layers), list(candidates)
        if any(c.a_bits != FLOAT_BITS for c in candidates) and len(self._act_ranges) < len(self.layer_names):
            self.calibrate()
        self.prepare_candidates(layers, candidates)
        for name in layers:
            for c in candidates:
                if c.w_bits != FLOAT_BITS and not self.uses_adaround(c.w_bits, c.fmt):
                    self.weight_quantizer(name, c.w_bits, c.fmt)
                self.layer_bias(name, c.w_bits, c.fmt)
                if c.a_bits != FLOAT_BITS:
                    self.activation_quantizer(name, c.a_bits, c.fmt)
        self._save_cache()

    def prepare_adaround(self, pairs: Iterable[tuple[str, int]]) -> None:
        """Learn (or load from the cache) the AdaRound weights of these (layer, bits) pairs; the calibration
        inputs are sampled once for all of them, and each result is saved as soon as it is learned."""
        missing = []
        for name, bits in dict.fromkeys(pairs):
            if (name, bits) in self._adaround:
                continue
            path = self._adaround_path(name, bits)
            reference = self._fp32_weights[name]
            entry = None if path is None else load_entry(
                path, lambda w, ref=reference: tensor_like(w, tuple(ref.shape), ref.dtype) and bool(torch.isfinite(w).all()))
            if entry is not None:
                self._adaround[(name, bits)] = entry.obj
                self._adaround_entries[(name, bits)] = (entry.key, entry.digest)
            else:
                missing.append((name, bits))
        if not missing:
            return
        if self._calibration_batches is None:
            raise ConfigError("AdaRound needs calibration data: pass calibration_batches=, "
                              "or use weight_rounding='nearest'")
        saved = dict(self._config)
        self.set_config({n: FP32 for n in self.layer_names})
        layers = {name: self._modules_q[name] for name, _ in missing}
        batches = (b.to(self.device) for b in self._calibration_batches())
        rows = collect_rows(self.model, layers, batches, self.settings.adaround_rows)
        for name, bits in tqdm(missing, desc="AdaRound (layer, bits)", leave=False, disable=not self.progress):
            scale = self.weight_quantizer(name, bits, "int").scale
            result = adaround(self._fp32_weights[name], scale, bits, rows[name], getattr(layers[name], "groups", 1),
                              iterations=self.settings.adaround_iterations, device=self.device)
            self._adaround[(name, bits)] = result.weight
            path = self._adaround_path(name, bits)
            if path is not None:
                saved_entry = save_atomic(result.weight, path)
                self._adaround_entries[(name, bits)] = (saved_entry.key, saved_entry.digest)
        self.set_config(saved)

    def activation_range(self, name: str, bits: int) -> ActRange:
        """Calibrated integer clipping range of the layer's input at ``bits`` (calibrates on first use)."""
        if name not in self._act_ranges:
            self.calibrate()
            self._save_cache()
        return self._act_ranges[name][bits]

    def activation_quantizer(self, name: str, bits: int, fmt: str = DEFAULT_FORMAT) -> ActQuant:
        """The quantizer of the layer's input at ``bits`` in ``fmt`` (``ant`` resolved to one type)."""
        if fmt == DEFAULT_FORMAT:
            return int_act_quant(self.activation_range(name, bits), bits)
        key = (name, bits, fmt)
        if key not in self._act_formats:
            if name not in self._observers:
                self.calibrate()
            obs = self._observers[name]
            self._act_formats[key] = activation_quantizer(obs.values(), obs.pairs(), obs.lo, obs.hi, bits, fmt,
                                                          self.settings)
            self._dirty = True
        return self._act_formats[key]

    @torch.no_grad()
    def _run_calibration(self, hook_for: Callable[[str], Callable], desc: str | None = None) -> None:
        """Run the model over the calibration split with ``hook_for(layer name)`` as a forward pre-hook on
        every quantizable layer (removed afterwards, also on error)."""
        handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in self._modules_q.items()]
        try:
            for batch in tqdm(self._calibration_batches(), desc=desc, leave=False,
                              disable=desc is None or not self.progress):
                self.model(batch.to(self.device))
        finally:
            for h in handles:
                h.remove()

    def calibrate(self) -> None:
        """Run the FP32 model over the calibration split and set every layer's activation ranges."""
        if self._calibration_batches is None:
            raise ConfigError("this QuantizedModel has no calibration data, so activations cannot be "
                              "quantized: pass calibration_batches=, or use a32 (unquantized) activations")
        saved = dict(self._config)
        self.set_config({n: FP32 for n in self.layer_names})
        observers = {n: ActivationObserver(self.settings.act_samples_per_batch) for n in self.layer_names}
        self._run_calibration(lambda n: (lambda mod, inp, obs=observers[n]: obs.observe(inp[0])),
                              desc="calibrating activations")
        if len(self._act_ranges) < len(self.layer_names):
            for name, obs in tqdm(observers.items(), desc="activation ranges", leave=False, disable=not self.progress):
                self._act_ranges[name] = obs.ranges(QUANT_BITS, self.settings)
            if self.settings.act_calibration == "sequential":
                self._calibrate_sequential()
            self._dirty = True
        self._observers = observers
        self.set_config(saved)

    @torch.no_grad()
    def _calibrate_sequential(self) -> None:
        """Integer activation ranges calibrated with upstream layers quantized, one pass per bit-width, as
        AIMET's ``compute_encodings`` sees them: weights at ``sequential_w_bits``, each layer input
        quantized with the range of its own batch before the layer runs (AIMET's dynamic encodings)."""
        w_bits = self.settings.sequential_w_bits
        for bits in [b for b in QUANT_BITS if b < 16]:
            self.set_config({n: Candidate(w_bits, FLOAT_BITS) for n in self.layer_names})
            observers = {n: ActivationObserver(self.settings.act_samples_per_batch) for n in self.layer_names}

            def hook(name: str) -> Callable:
                def quantize(module: nn.Module, inputs: tuple) -> tuple:
                    batch_obs = ActivationObserver(self.settings.act_samples_per_batch)
                    batch_obs.observe(inputs[0])
                    observers[name].observe(inputs[0])
                    rng = batch_obs.ranges([bits], self.settings)[bits]
                    return (int_act_quant(rng, bits)(inputs[0]), *inputs[1:])
                return quantize
            self._run_calibration(hook)
            for name, obs in observers.items():
                self._act_ranges[name][bits] = obs.ranges([bits], self.settings)[bits]

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
        needs_act_sample = any(c.a_bits != FLOAT_BITS and c.fmt != DEFAULT_FORMAT
                               and (n, c.a_bits, c.fmt) not in self._act_formats for n, c in config.items())
        if needs_act_sample and not self._observers:
            self.calibrate()
        self.prepare_adaround([(n, c.w_bits) for n, c in config.items() if self.uses_adaround(c.w_bits, c.fmt)])
        # everything is computed before any layer is switched: a first use may run the calibration data
        # through the model (input statistics for bias correction and output-aware ranges), which needs
        # the model in its current, consistent state
        plan = [(self._modules_q[name], self.quantized_weight(name, cand.w_bits, cand.fmt),
                 self.layer_bias(name, cand.w_bits, cand.fmt),
                 None if cand.a_bits == FLOAT_BITS else self.activation_quantizer(name, cand.a_bits, cand.fmt))
                for name, cand in config.items()]
        for (module, weight, bias, act_quant), name in zip(plan, config):
            module.weight.data = self._to_device(weight)
            if module.bias is not None:
                module.bias.data = self._to_device(bias)
            self._act_quant[name] = act_quant
        self._config = dict(config)
        self._save_cache()

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` (a CPU weight or bias) on :attr:`device`, copied once and kept (itself on the CPU)."""
        if self.device.type == "cpu":
            return tensor
        key = id(tensor)
        if key not in self._on_device:
            self._on_device[key] = (tensor, tensor.to(self.device))
        return self._on_device[key][1]

    @property
    def config(self) -> Config:
        """The configuration currently applied."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.device))
