"""Phase-1 sensitivity: S[group, candidate] = output SQNR (dB) with only that group quantized.

Label-free (the AIMET mixed-precision paper's Omega^SQNR), on the calibration split. The network is
cut into a verified chain of stages (:class:`mpq_gym.quant.stages.StageChain`); the FP32 input of each
stage is computed once, so a cell re-runs only the suffix of the network from the stage holding its
group. A stage input is one batched tensor, or a list of per-batch activations where the stages pass
tuples (a transformer's hidden states and mask, each batch trimmed to its own length). Rows are saved as
they finish, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from mpq_gym.cache import cache_dir, content_hash, load_cached, save_atomic, tensor_like
from mpq_gym.candidates import QuantizerGroup
from mpq_gym.config import FP32, Candidate, uniform_config
from mpq_gym.devices import device_tag
from mpq_gym.metrics import sqnr_db
from mpq_gym.quant.model import QuantizedModel
from mpq_gym.quant.stages import StageChain, clone_activation

SENSITIVITY_FORMAT = 4


class RowPool(Protocol):
    """Workers that compute phase-1 rows in parallel (:class:`mpq_gym.workers.ProcessPool`, or
    :class:`mpq_gym.bench.parallel.RayPool`)."""

    workers: int

    def sensitivity_rows(self, chunks: Iterable[Sequence[int]]) -> Iterator[tuple[int, Any]]:
        """(group, phase-1 row) for every group of every chunk, as chunks finish."""


@dataclass
class SensitivityTable:
    """Output SQNR in dB of each (group, candidate) with everything else FP32."""

    groups: list[str]
    candidates: list[Candidate]
    sqnr_db: np.ndarray
    images: int

    def to_json(self) -> dict:
        """JSON-able form (``inf`` for a lossless cell is written as a string)."""
        rows = [[float(v) if np.isfinite(v) else "inf" for v in row] for row in self.sqnr_db]
        return {"groups": self.groups, "candidates": [str(c) for c in self.candidates], "images": self.images,
                "sqnr_db": rows}

    def save_json(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path``."""
        Path(path).write_text(json.dumps(self.to_json(), indent=1))


#: a row's key -> the partial configurations (layer -> candidate, every other layer FP32) its cells measure
Cells = Mapping[Hashable, Sequence[Mapping[str, Candidate]]]


@torch.inference_mode()
def masked_sqnr_rows(qmodel: QuantizedModel, inputs: torch.Tensor, cells: Cells, batch_size: int = 32,
                     on_row: Callable[[Hashable, np.ndarray], None] | None = None) -> dict[Hashable, np.ndarray]:
    """Output SQNR of each partial configuration (the rest of the network FP32) in each row of ``cells``; rows
    are visited in execution order of their first layer, so each re-runs only the suffix of the network from
    that layer's stage. ``on_row(key, row)`` sees each row as it is done."""
    fp32 = uniform_config(qmodel.layer_names, FP32)
    qmodel.set_config(fp32)
    inputs = inputs.to(qmodel.device)
    chain = StageChain.build(qmodel.model, inputs[:1])
    reference = chain.run_batched(inputs, batch_size).float()
    start = {key: min(chain.stage_of(layer) for partial in row for layer in partial) for key, row in cells.items()}
    rows: dict[Hashable, np.ndarray] = {}
    current, x = 0, inputs
    for key in sorted(cells, key=start.__getitem__):
        target = start[key]
        qmodel.set_config(fp32)
        x = chain.run_batched(x, batch_size, current, target) if target > current else x
        current = target
        row = np.empty(len(cells[key]))
        for c, partial in enumerate(cells[key]):
            qmodel.set_config({**fp32, **partial})
            row[c] = sqnr_db(chain.run_batched(clone_activation(x), batch_size, current).float(), reference)
        rows[key] = row
        if on_row is not None:
            on_row(key, row)
    qmodel.set_config(fp32)
    return rows


def sensitivity_rows(qmodel: QuantizedModel, inputs: torch.Tensor, groups: Sequence[QuantizerGroup],
                     candidates: Sequence[Candidate], which: Sequence[int], batch_size: int = 32,
                     on_row: Callable[[int, np.ndarray], None] | None = None) -> dict[int, np.ndarray]:
    """Rows S[g, :] for the groups ``which`` (:func:`masked_sqnr_rows`); ``on_row(g, row)`` sees each row."""
    qmodel.prepare_candidates([layer for g in which for layer in groups[g].layers], candidates)  # one data pass
    cells = {g: [{layer: c for layer in groups[g].layers} for c in candidates] for g in which}
    return masked_sqnr_rows(qmodel, inputs, cells, batch_size, on_row)  # type: ignore[arg-type]


def table_path(folder: str, fmt: int, cache_key: str | None, qmodel: QuantizedModel,
               groups: Sequence[QuantizerGroup], candidates: Sequence[Candidate], *parts: Any) -> Path | None:
    """Where a resumable table measured on ``qmodel`` lives in the cache (None without a ``cache_key``): keyed by
    its format, the workload, the quantizer settings, groups, candidates, ``parts`` and the device."""
    if cache_key is None:
        return None
    key = content_hash(fmt, cache_key, qmodel.settings, [g.layers for g in groups], [tuple(c) for c in candidates],
                       *parts, *device_tag(qmodel.device))
    return cache_dir() / folder / f"{key}.pt"


def resumable_rows(path: Path | None, shape: tuple[int, int], fill: Callable[[list[int], Callable[[int, np.ndarray], None]], None],
                   desc: str, progress: bool = True) -> np.ndarray:
    """A [rows, columns] float64 table filled row by row by ``fill(pending, record)``, saved (atomically, with
    which rows are done) after every row at ``path``, so an interrupted fill resumes where it stopped."""
    def valid(stored: Any) -> bool:  # the layout record() writes, for this table's shape
        return (isinstance(stored, dict) and set(stored) == {"sqnr", "done"}
                and tensor_like(stored["sqnr"], shape, torch.float64) and isinstance(stored["done"], list)
                and len(stored["done"]) == shape[0] and all(isinstance(d, bool) for d in stored["done"])
                and not bool(torch.isnan(stored["sqnr"][torch.tensor(stored["done"], dtype=torch.bool)]).any()))

    stored = load_cached(path, valid) if path is not None else None
    state = ({"sqnr": stored["sqnr"].numpy().copy(), "done": list(stored["done"])} if stored is not None
             else {"sqnr": np.full(shape, np.nan), "done": [False] * shape[0]})
    pending = [i for i in range(shape[0]) if not state["done"][i]]
    if not pending:
        return state["sqnr"]
    bar = tqdm(total=shape[0] * shape[1], initial=(shape[0] - len(pending)) * shape[1], desc=desc, disable=not progress)

    def record(i: int, row: np.ndarray) -> None:
        state["sqnr"][i], state["done"][i] = row, True
        if path is not None:
            save_atomic({"sqnr": torch.from_numpy(state["sqnr"]), "done": list(state["done"])}, path)
        bar.update(shape[1])

    fill(pending, record)
    bar.close()
    return state["sqnr"]


def pool_chunks(pending: Sequence[int], workers: int, per_worker: int = 2) -> list[list[int]]:
    """Contiguous runs of the pending groups (execution order), about ``per_worker`` per worker, earliest first.
    An early group re-runs a long suffix of the network, a late one a short one: handing out several runs per
    worker, the longest first, keeps the workers equally busy, and each run is saved when it comes back (an
    interrupted table resumes). Each run also pays one FP32 pass up to its first group."""
    count = max(1, min(len(pending), workers * per_worker))
    return [[int(g) for g in run] for run in np.array_split(np.asarray(pending, dtype=np.int64), count)]


def compute_sensitivity(qmodel: QuantizedModel, inputs: torch.Tensor, groups: Sequence[QuantizerGroup],
                        candidates: Sequence[Candidate], cache_key: str | None = None, batch_size: int = 32,
                        progress: bool = True, pool: RowPool | None = None) -> SensitivityTable:
    """Fill S[group, candidate] on ``inputs`` (calibration images); cached and resumable under ``cache_key``.

    With a ``pool`` (worker processes or Ray actors) the pending groups go out as :func:`pool_chunks`, each
    filled by :func:`sensitivity_rows` in a worker and saved as it comes back.
    """
    path = table_path("sensitivity", SENSITIVITY_FORMAT, cache_key, qmodel, groups, candidates, len(inputs))

    def fill(pending: list[int], record: Callable[[int, np.ndarray], None]) -> None:
        if pool is not None and len(pending) > 1:
            # fitted once here and saved: each worker loads the quantizers instead of fitting its own
            qmodel.fit_quantizers([layer for g in pending for layer in groups[g].layers], candidates)
            for g, row in pool.sensitivity_rows(pool_chunks(pending, pool.workers)):
                record(g, row)
        else:
            sensitivity_rows(qmodel, inputs, groups, candidates, pending, batch_size, record)

    sqnr = resumable_rows(path, (len(groups), len(candidates)), fill, "phase-1 sensitivity", progress)
    return SensitivityTable([g.name for g in groups], list(candidates), sqnr, len(inputs))
