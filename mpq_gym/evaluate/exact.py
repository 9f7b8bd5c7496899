"""Exact evaluator: run the fake-quantized network on a data split, memoised by configuration hash."""
from __future__ import annotations

import warnings

import torch
from tqdm.auto import tqdm

from mpq_gym.cache import cache_dir, content_hash, load_entry, save_atomic, tensor_like
from mpq_gym.config import FP32, Config, config_to_json, uniform_config
from mpq_gym.metrics import sqnr_db
from mpq_gym.evaluate.store import ResultStore
from mpq_gym.quant.model import QuantizedModel
from mpq_gym.quant.quantizers import QuantSettings
from mpq_gym.workloads.base import Workload

#: Bump when the numerics of an evaluation change, so stale memoised results are not reused.
EVAL_FORMAT = 4
#: Bump when the FP32-outputs cache layout changes.
FP32_FORMAT = 2


def build_quantized_model(workload: Workload, settings: QuantSettings = QuantSettings(),
                          progress: bool = True) -> QuantizedModel:
    """Wrap a workload's model for fake quantization, with its calibration data and disk cache."""
    return QuantizedModel(workload.model, workload.example_input(), workload.calibration_batches, settings,
                          cache_key=workload.fingerprint(), progress=progress)


class ExactEvaluator:
    """``evaluate(config, split)`` -> the workload's metrics plus ``sqnr_db`` against the FP32 outputs.

    Results are memoised in memory and in ``store`` (default: the shared SQLite file in the cache),
    keyed by (workload fingerprint, quantizer settings, split, configuration).
    """

    def __init__(self, workload: Workload, qmodel: QuantizedModel | None = None,
                 store: ResultStore | None = None, progress: bool = True) -> None:
        if workload.random_weights:
            warnings.warn(f"evaluating {workload.name} with RANDOM weights: accuracies are meaningless", stacklevel=2)
        self.workload = workload
        self.qmodel = qmodel or build_quantized_model(workload)
        self.store = store if store is not None else ResultStore.default()
        self.progress = progress
        self.forward_passes = 0
        self._fp32_outputs: dict[str, torch.Tensor] = {}
        self._fp32_entries: dict[str, tuple[str, str]] = {}  # split -> (cache entry, checksum)

    def _key(self, config: Config, split: str) -> str:
        return content_hash(EVAL_FORMAT, self.workload.fingerprint(), self.qmodel.settings, split,
                            config_to_json(config))

    @torch.inference_mode()
    def outputs(self, config: Config, split: str) -> torch.Tensor:
        """Model outputs on ``split`` under ``config`` (always computed, never memoised)."""
        self.qmodel.set_config(config)
        data = self.workload.split(split)
        self.forward_passes += 1
        batches = data.batches(self.workload.batch_size)
        if self.progress:
            batches = tqdm(batches, total=-(-len(data) // self.workload.batch_size), desc=f"evaluating on {split}",
                           leave=False)
        return torch.cat([self.qmodel(x).float() for x, _ in batches])

    def fp32_outputs(self, split: str) -> torch.Tensor:
        """FP32 outputs on ``split`` (cached in memory and on disk; a damaged file is recomputed)."""
        if split not in self._fp32_outputs:
            path = cache_dir() / "fp32_outputs" / f"{content_hash(FP32_FORMAT, self.workload.fingerprint(), split)}.pt"
            n = len(self.workload.split(split))
            entry = load_entry(path, lambda t: tensor_like(t, dtype=torch.float32) and t.ndim >= 1 and len(t) == n)
            if entry is None:
                outputs = self.outputs(uniform_config(self.qmodel.layer_names, FP32), split)
                entry = save_atomic(outputs, path)
            self._fp32_outputs[split] = entry.obj
            # token: a hash of the values (not of the file), so processes that computed the same outputs agree
            self._fp32_entries[split] = (entry.key, content_hash(entry.obj, length=32))
        return self._fp32_outputs[split]

    def _deps(self, split: str, is_fp32: bool) -> dict[str, str]:
        """The cache entries a result on ``split`` comes from: the FP32 outputs (a hash of their values) and,
        unless the configuration is FP32, the quantizer and AdaRound caches (lineage / checksums)."""
        fp32_entry, fp32_token = self._fp32_entry(split)
        return {fp32_entry: fp32_token, **({} if is_fp32 else self.qmodel.cache_entries())}

    def evaluate(self, config: Config, split: str = "search") -> dict[str, float]:
        """Metrics of ``config`` on ``split``; a repeated configuration is a dictionary lookup.

        A memoised result is used only if the FP32 outputs it was computed against are the ones cached now
        (same values); otherwise it is recomputed. Results computed from a cache entry later found damaged
        are dropped by the store (see :mod:`mpq_gym.evaluate.store`)."""
        key = self._key(config, split)
        cached = self.store.get_with_deps(key)
        if cached is not None:
            value, deps = cached
            fp32_entry, fp32_digest = self._fp32_entry(split)
            if deps.get(fp32_entry) == fp32_digest:
                return dict(value)
            self.store.delete(key)
        return self.evaluate_with_outputs(config, split)[0]

    def evaluate_with_outputs(self, config: Config, split: str = "search") -> tuple[dict[str, float], torch.Tensor]:
        """(metrics, outputs) of ``config`` on ``split``: always one forward pass (the FP32 configuration
        excepted); the metrics are stored like :meth:`evaluate`'s."""
        reference = self.fp32_outputs(split)
        is_fp32 = all(c == FP32 for c in config.values())
        outputs = reference if is_fp32 else self.outputs(config, split)
        result = dict(self.workload.metric(outputs, self.workload.split(split).targets, reference))
        result["sqnr_db"] = sqnr_db(outputs, reference)
        self.store.put(self._key(config, split), result, self._deps(split, is_fp32))
        return dict(result), outputs

    def _fp32_entry(self, split: str) -> tuple[str, str]:
        self.fp32_outputs(split)
        return self._fp32_entries[split]
