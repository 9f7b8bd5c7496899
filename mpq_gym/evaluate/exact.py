"""Exact evaluator: run the fake-quantized network on a data split, memoised by configuration hash.

Reused activations: the network runs as its verified chain of stages (:class:`StageChain`), and the input
of each stage is kept (:class:`StageInputCache`, an LRU bounded in bytes) under the configuration of every
layer before that stage. A configuration whose first change against some recently evaluated one lies in
stage s re-runs only stages s.. from the kept input: greedy's path, evolution's mutants, the uniform sweep
and the env's exact mode all share prefixes. The outputs are the same tensors a full forward gives.
"""
from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from typing import Hashable

import torch
from tqdm.auto import tqdm

from mpq_gym.cache import cache_dir, content_hash, load_entry, save_atomic, tensor_like
from mpq_gym.devices import batch_size_for, device_tag
from mpq_gym.config import FP32, Config, config_to_json, uniform_config
from mpq_gym.metrics import sqnr_db
from mpq_gym.errors import ConfigError
from mpq_gym.evaluate.store import ResultStore
from mpq_gym.quant.model import QuantizedModel
from mpq_gym.quant.quantizers import QuantSettings
from mpq_gym.quant.stages import Activation, StageChain, activation_bytes, clone_activation
from mpq_gym.workloads.base import Workload

#: Bump when the numerics of an evaluation change, so stale memoised results are not reused.
EVAL_FORMAT = 4
#: Bump when the FP32-outputs cache layout changes.
FP32_FORMAT = 2
#: bytes of stage inputs kept for reuse; ``MPQ_GYM_REUSE_BYTES`` overrides it, 0 turns reuse off
DEFAULT_REUSE_BYTES = 1024 ** 3


def reuse_bytes() -> int:
    """The stage-input budget in bytes (:data:`DEFAULT_REUSE_BYTES` unless ``MPQ_GYM_REUSE_BYTES`` is set)."""
    value = os.environ.get("MPQ_GYM_REUSE_BYTES", "")
    try:
        return int(float(value)) if value else DEFAULT_REUSE_BYTES
    except ValueError:
        raise ConfigError(f"MPQ_GYM_REUSE_BYTES={value!r} is not a number of bytes; unset it or give e.g. 2e9") from None


class StageInputCache:
    """Least-recently-used stage inputs (a list of per-batch activations per key: tensors, or tuples of them
    where the stages pass several, e.g. hidden states and an attention mask), at most ``max_bytes`` in all
    (a tuple counts the bytes of all its tensors).

    An input larger than ``max_bytes / MIN_ENTRIES`` is not kept: the largest activations are the early,
    high-resolution ones, whose prefix is the cheapest to recompute, and keeping one would evict many
    deeper (smaller, costlier to recompute) stage inputs."""

    MIN_ENTRIES = 8

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, list[Activation]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> list[Activation] | None:
        """The kept tensors of ``key`` (now the most recently used), or None."""
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: Hashable, tensors: list[Activation]) -> None:
        """Keep ``tensors`` under ``key``, dropping the least recently used entries to stay within the budget."""
        size = activation_bytes(tensors)
        if size > self.max_bytes / self.MIN_ENTRIES or key in self._entries:
            return
        while self.bytes + size > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= activation_bytes(dropped)
        self._entries[key] = tensors
        self.bytes += size

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self.bytes = 0


def build_quantized_model(workload: Workload, settings: QuantSettings = QuantSettings(),
                          progress: bool = True, device: str | torch.device = "cpu") -> QuantizedModel:
    """Wrap a workload's model for fake quantization on ``device``, with its calibration data and disk cache."""
    return QuantizedModel(workload.model, workload.example_input(), workload.calibration_batches, settings,
                          cache_key=workload.fingerprint(), progress=progress, device=device)


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
        #: forward-pass batch size: the workload's, larger on an accelerator
        self.batch_size = batch_size_for(self.qmodel.device, workload.batch_size)
        self.stage_inputs = StageInputCache(reuse_bytes())
        self._chain: StageChain | None = None
        self._prefix_layers: list[list[str]] = []
        self._fp32_outputs: dict[str, torch.Tensor] = {}
        self._fp32_entries: dict[str, tuple[str, str]] = {}  # split -> (cache entry, checksum)

    def _key(self, config: Config, split: str) -> str:
        return content_hash(EVAL_FORMAT, self.workload.fingerprint(), self.qmodel.settings, split,
                            config_to_json(config), *device_tag(self.qmodel.device))

    @property
    def chain(self) -> StageChain:
        """The model's verified chain of stages (built on first use)."""
        if self._chain is None:
            self._chain = StageChain.build(self.qmodel.model, self.workload.example_input().to(self.qmodel.device))
            stage = {name: self._chain.stage_of(name) for name in self.qmodel.layer_names}
            self._prefix_layers = [[n for n in self.qmodel.layer_names if stage[n] < s] for s in range(len(self._chain))]
        return self._chain

    def _batches(self, split: str) -> list[torch.Tensor]:
        return [x for x, _ in self.workload.split(split).batches(self.batch_size)]

    @torch.inference_mode()
    def outputs(self, config: Config, split: str) -> torch.Tensor:
        """Model outputs on ``split`` under ``config`` (always computed, never memoised; the stages before the
        first one whose layers differ from a kept prefix are not re-run)."""
        self.qmodel.set_config(config)
        self.forward_passes += 1
        chain = self.chain
        if self.stage_inputs.max_bytes <= 0 or len(chain) == 1:
            batches = self._batches(split)
            if self.progress:
                batches = tqdm(batches, desc=f"evaluating on {split}", leave=False)
            return torch.cat([self.qmodel(x).float().cpu() for x in batches])
        keys = [(split, s, tuple(config[n] for n in layers)) for s, layers in enumerate(self._prefix_layers)]
        start = next((s for s in range(len(chain) - 1, 0, -1) if keys[s] in self.stage_inputs), 0)
        if start:
            self.stage_inputs.hits += 1
        else:
            self.stage_inputs.misses += 1
        xs = self.stage_inputs.get(keys[start]) if start else [x.to(self.qmodel.device) for x in self._batches(split)]
        for s in tqdm(range(start, len(chain)), desc=f"evaluating on {split}", leave=False, disable=not self.progress):
            # a kept input is cloned: a stage may work in place on its input (e.g. a ReLU(inplace=True))
            kept = keys[s] in self.stage_inputs
            xs = [chain.run(clone_activation(x) if kept else x, s, s + 1) for x in xs]
            if s + 1 < len(chain):
                self.stage_inputs.put(keys[s + 1], xs)
        return torch.cat([x.float().cpu() for x in xs])

    def fp32_outputs(self, split: str) -> torch.Tensor:
        """FP32 outputs on ``split`` (cached in memory and on disk; a damaged file is recomputed)."""
        if split not in self._fp32_outputs:
            key = content_hash(FP32_FORMAT, self.workload.fingerprint(), split, *device_tag(self.qmodel.device))
            path = cache_dir() / "fp32_outputs" / f"{key}.pt"
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

    def stored(self, config: Config, split: str = "search") -> bool:
        """Whether a result of ``config`` on ``split`` is in the store (:meth:`evaluate` still checks it against
        the FP32 outputs it was computed from)."""
        return self.store.get_with_deps(self._key(config, split)) is not None

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
