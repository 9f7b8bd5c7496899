"""Shipped problem tables: everything surrogate mode needs, precomputed, so ``gym.make`` starts in seconds.

A :class:`ProblemTable` holds what a :class:`~mpq_gym.problem.Problem` computes from a workload before
the first surrogate reward: the layers (:class:`~mpq_gym.quant.graph.LayerInfo`), the quantizer groups,
the candidates, the phase-1 table, the surrogate's calibration points (configurations and their exact
quality), the FP32 metrics on the search split, the cost tables, and the fingerprint of the weights and
data they were computed from. Tables of the workloads whose weights and data ship offline live in
``mpq_gym/data/tabular/<workload>-<candidates>-<hash>.json.gz``, named by the :class:`ProblemSpec` fields
they depend on (:data:`KEY_FIELDS`), so finding one needs neither the network nor the data.

``mpq-gym tabular build`` regenerates them (:data:`SHIPPED`), ``mpq-gym tabular check`` compares them
with what this code computes. A table is refused (one line naming the fix) when it is damaged or edited
(checksum), of another schema version, or filed under another key; one computed by other quantizer
settings or phase-1 numerics is skipped with a warning (the problem is then computed).
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from mpq_gym.cache import content_hash, write_atomic
from mpq_gym.candidates import NAMED_CANDIDATE_SETS, QuantizerGroup, parse_candidates
from mpq_gym.config import FP32, Candidate, parse_candidate
from mpq_gym.cost import COST_METRICS
from mpq_gym.errors import InputFileError
from mpq_gym.evaluate.sensitivity import SENSITIVITY_FORMAT, sensitivity_rows
from mpq_gym.quant.graph import LayerInfo
from mpq_gym.quant.model import CACHE_FORMAT as QUANT_CACHE_FORMAT
from mpq_gym.quant.quantizers import QuantSettings

if TYPE_CHECKING:
    from mpq_gym.problem import Problem, ProblemSpec

#: version of the table layout; a file of another version is refused
TABLE_FORMAT = 1
#: where the package's tables live
TABLE_DIR = Path(__file__).resolve().parent / "data" / "tabular"
#: the :class:`ProblemSpec` fields a table depends on (the others, budget included, are applied on top)
KEY_FIELDS = ("workload", "candidates", "tied", "quantizer", "weight_rounding", "sensitivity_images",
              "surrogate_points", "seed", "split")
#: the (env id, env kwargs) whose tables ship: the default kwargs of the ids whose weights and data are offline
SHIPPED: tuple[tuple[str, dict[str, Any]], ...] = (
    ("MixedPrecision-EfficientNetLite0-v0", {}),
    ("MixedPrecision-EfficientNetLite0-v0", {"candidates": "expanded"}),
    ("MixedPrecision-MiniLM-v0", {}),
    ("MixedPrecision-MiniLM-v0", {"candidates": "expanded"}),
    ("MixedPrecision-DigitsCNN-v0", {}),
)
#: tolerance of :func:`diff_tables` on computed values (recomputation on another thread count may differ in
#: the last bits)
RTOL, ATOL = 1e-6, 1e-9
REGENERATE = "regenerate the tables with `mpq-gym tabular build` (or pass tabular=False to compute everything)"


@dataclass(frozen=True, eq=False)
class ProblemTable:
    """Everything a problem's surrogate mode needs, computed once from one workload's weights and data."""

    #: the :data:`KEY_FIELDS` of the spec it stands for (:func:`table_key`)
    key: dict[str, Any]
    #: the workload's fingerprint (weights + data) it was computed from
    fingerprint: str
    #: the quantizer settings and numerics versions it was computed with (:func:`code_version`)
    code: dict[str, Any]
    primary_metric: str
    layers: tuple[LayerInfo, ...]
    #: parameters of the whole model (those outside quantizable layers count at 32 bits in ``size_bits``)
    total_params: int
    groups: tuple[QuantizerGroup, ...]
    candidates: tuple[Candidate, ...]
    #: phase-1 SQNR in dB [group, candidate]
    sensitivity: np.ndarray
    #: FP32 metrics on the spec's split
    fp32: dict[str, float]
    #: the surrogate's calibration configurations [point, group] and their exact quality [point]
    calibration_choices: np.ndarray
    calibration_values: np.ndarray
    #: metric -> {"table": cost [group, candidate], "fixed": cost no choice changes, "reference": uniform W8A16}
    costs: dict[str, dict[str, Any]]
    #: where it was read from
    source: str = "memory"

    @property
    def fp32_quality(self) -> float:
        """The FP32 model's primary metric on the spec's split."""
        return self.fp32[self.primary_metric]

    def payload(self) -> dict[str, Any]:
        """The JSON-able content (without the checksum)."""
        return {"format": TABLE_FORMAT, "key": self.key, "fingerprint": self.fingerprint, "code": self.code,
                "primary_metric": self.primary_metric, "total_params": self.total_params,
                "layers": [dataclasses.asdict(layer) for layer in self.layers],
                "groups": [[g.name, list(g.layers)] for g in self.groups],
                "candidates": [str(c) for c in self.candidates],
                "sensitivity_db": [[_float_out(v) for v in row] for row in self.sensitivity],
                "fp32": dict(self.fp32),
                "calibration": {"choices": self.calibration_choices.tolist(),
                                "values": [float(v) for v in self.calibration_values]},
                "costs": {m: {"table": np.asarray(c["table"], dtype=np.float64).tolist(), "fixed": float(c["fixed"]),
                              "reference": float(c["reference"])} for m, c in self.costs.items()}}

    def to_json(self) -> dict[str, Any]:
        """:meth:`payload` plus its checksum."""
        payload = self.payload()
        return {**payload, "checksum": content_hash(payload, length=32)}

    @classmethod
    def from_json(cls, data: Any, source: str) -> "ProblemTable":
        """The table in ``data``; :class:`InputFileError` naming the fix for another schema version, a
        checksum mismatch (damaged or edited) or a malformed field."""
        if not isinstance(data, dict):
            raise InputFileError(f"table {source} does not hold a JSON object; {REGENERATE}")
        if data.get("format") != TABLE_FORMAT:
            raise InputFileError(f"table {source} has schema version {data.get('format')!r}, this mpq-gym reads "
                                 f"version {TABLE_FORMAT}; {REGENERATE}")
        payload = {k: v for k, v in data.items() if k != "checksum"}
        if data.get("checksum") != content_hash(payload, length=32):
            raise InputFileError(f"table {source} is damaged or was edited (checksum mismatch); {REGENERATE}")
        try:
            table = cls(key=dict(data["key"]), fingerprint=str(data["fingerprint"]), code=dict(data["code"]),
                        primary_metric=str(data["primary_metric"]), total_params=int(data["total_params"]),
                        layers=tuple(_layer_in(d) for d in data["layers"]),
                        groups=tuple(QuantizerGroup(name, tuple(layers)) for name, layers in data["groups"]),
                        candidates=tuple(parse_candidate(c) for c in data["candidates"]),
                        sensitivity=np.array([[float(v) for v in row] for row in data["sensitivity_db"]]),
                        fp32={k: float(v) for k, v in data["fp32"].items()},
                        calibration_choices=np.array(data["calibration"]["choices"], dtype=np.int64),
                        calibration_values=np.array(data["calibration"]["values"], dtype=np.float64),
                        costs={m: {"table": np.array(c["table"], dtype=np.float64), "fixed": float(c["fixed"]),
                                   "reference": float(c["reference"])} for m, c in data["costs"].items()},
                        source=source)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFileError(f"table {source} is malformed ({type(exc).__name__}: {exc}); {REGENERATE}") from exc
        problems = table.shape_problems()
        if problems:
            raise InputFileError(f"table {source} is malformed ({problems[0]}); {REGENERATE}")
        return table

    def shape_problems(self) -> list[str]:
        """What does not fit together (shapes, names, ranges); empty for a well-formed table."""
        n_groups, n_cand = len(self.groups), len(self.candidates)
        names = [layer.name for layer in self.layers]
        out = []
        if sorted(n for g in self.groups for n in g.layers) != sorted(names):
            out.append("the groups do not cover the layers exactly once")
        if self.sensitivity.shape != (n_groups, n_cand) or np.isnan(self.sensitivity).any():
            out.append(f"sensitivity has shape {self.sensitivity.shape}, expected {(n_groups, n_cand)} without NaN")
        choices, values = self.calibration_choices, self.calibration_values
        if choices.ndim != 2 or choices.shape[1] != n_groups or len(values) != len(choices) or (
                choices.size and (choices.min() < 0 or choices.max() >= n_cand)):
            out.append("the calibration points do not fit the groups and candidates")
        if self.primary_metric not in self.fp32:
            out.append(f"fp32 lacks the primary metric {self.primary_metric!r}")
        for metric, cost in self.costs.items():
            if np.shape(cost["table"]) != (n_groups, n_cand):
                out.append(f"cost table {metric} has shape {np.shape(cost['table'])}")
        return out


def _float_out(value: float) -> float | str:
    return float(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _layer_in(data: Mapping[str, Any]) -> LayerInfo:
    fields = dict(data)
    fields["input_shape"], fields["output_shape"] = tuple(fields["input_shape"]), tuple(fields["output_shape"])
    return LayerInfo(**fields)


# ------------------------------------------------------------------- keys and files
def table_key(spec: "ProblemSpec") -> dict[str, Any] | None:
    """The :data:`KEY_FIELDS` of ``spec``, normalised (candidates as their names, ties as lists), or None when
    no shipped table can stand for it: ``tabular=False``, a Workload object, or the user's own data, weights
    or workload options."""
    if (not spec.tabular or not isinstance(spec.workload, str) or spec.data_dir or spec.weights
            or spec.random_weights or spec.workload_kwargs):
        return None
    key = {name: getattr(spec, name) for name in KEY_FIELDS}
    key["candidates"] = [str(c) for c in parse_candidates(spec.candidates)]
    key["tied"] = spec.tied if isinstance(spec.tied, str) else [list(group) for group in spec.tied]
    return key


def code_version(settings: QuantSettings) -> dict[str, Any]:
    """The quantizer settings and numerics versions a table's values depend on (compared on lookup)."""
    return {"settings": dataclasses.asdict(settings), "sensitivity_format": SENSITIVITY_FORMAT,
            "quant_cache_format": QUANT_CACHE_FORMAT}


def table_name(key: Mapping[str, Any]) -> str:
    """``<workload>-<candidate set>-<hash of the key>.json.gz``."""
    named = next((name for name, cands in NAMED_CANDIDATE_SETS.items()
                  if [str(c) for c in cands] == list(key["candidates"])), "custom")
    workload = re.sub(r"[^A-Za-z0-9_.]+", "_", str(key["workload"]))
    return f"{workload}-{named}-{content_hash(TABLE_FORMAT, dict(key), length=12)}.json.gz"


def save_table(table: ProblemTable, folder: str | Path) -> Path:
    """Write ``table`` under :func:`table_name` in ``folder`` (gzip with no timestamp: the same table is the
    same bytes), atomically."""
    path = Path(folder) / table_name(table.key)
    text = json.dumps(table.to_json(), separators=(",", ":"), sort_keys=True).encode()
    write_atomic(path, gzip.compress(text, compresslevel=9, mtime=0))
    path.chmod(0o644)  # package data: readable by every user of an installed copy
    return path


def load_table(path: str | Path) -> ProblemTable:
    """The table in a ``.json.gz`` file (:meth:`ProblemTable.from_json` checks it)."""
    path = Path(path)
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, ValueError) as exc:
        raise InputFileError(f"table {path} cannot be read ({type(exc).__name__}: {exc}); {REGENERATE}") from exc
    return ProblemTable.from_json(data, str(path))


def find_table(spec: "ProblemSpec", folder: str | Path | None = None) -> ProblemTable | None:
    """The shipped table standing for ``spec``, or None (none ships for it, or :func:`table_key` rules it
    out, or it was computed with other quantizer settings or numerics: then a warning names the fix)."""
    key = table_key(spec)
    if key is None:
        return None
    path = Path(TABLE_DIR if folder is None else folder) / table_name(key)
    if not path.is_file():
        return None
    table = load_table(path)
    if table.key != key:
        raise InputFileError(f"table {path} holds the table of {table.key}, not of {key} (renamed or edited); "
                             f"{REGENERATE}")
    if table.code != code_version(spec.settings()):
        warnings.warn(f"table {path} was computed with other quantizer settings or phase-1 numerics than this "
                      f"mpq-gym's; computing the problem instead: {REGENERATE}", UserWarning, stacklevel=3)
        return None
    return table


# ------------------------------------------------------------------- building and checking
def table_from_problem(problem: "Problem", key: Mapping[str, Any]) -> ProblemTable:
    """The table of a computed problem (its phase-1 table, calibration points, FP32 metrics: computed now
    if they are not yet, on the real workload)."""
    workload = problem.workload
    choices = problem.surrogate_calibration_choices()
    values = np.array([problem.quality(problem.config(c)) for c in choices])
    fp32 = problem.evaluate(problem.uniform(FP32))
    cost_model = problem.cost_model
    costs = {m: {"table": problem.group_cost_table(m), "fixed": cost_model.fixed[m],
                 "reference": cost_model.cost(cost_model.reference_config(), m)} for m in COST_METRICS}
    return ProblemTable(key=dict(key), fingerprint=workload.fingerprint(), code=code_version(problem.settings),
                        primary_metric=workload.primary_metric, layers=tuple(problem.layers),
                        total_params=cost_model.total_params, groups=tuple(problem.groups),
                        candidates=tuple(problem.candidates), sensitivity=np.array(problem.sensitivity.sqnr_db),
                        fp32={k: float(v) for k, v in fp32.items() if math.isfinite(v)},
                        calibration_choices=np.asarray(choices, dtype=np.int64), calibration_values=values,
                        costs=costs)


def diff_tables(shipped: ProblemTable, computed: ProblemTable) -> list[str]:
    """Where two tables differ (values within :data:`RTOL` / :data:`ATOL`); empty when they agree."""
    out = []
    for name in ("key", "fingerprint", "code", "primary_metric", "total_params", "layers", "groups", "candidates"):
        if getattr(shipped, name) != getattr(computed, name):
            out.append(f"{name}: {getattr(shipped, name)!r} != {getattr(computed, name)!r}")
    if not np.array_equal(shipped.calibration_choices, computed.calibration_choices):
        out.append("calibration choices differ")
    arrays = {"sensitivity": (shipped.sensitivity, computed.sensitivity),
              "calibration values": (shipped.calibration_values, computed.calibration_values),
              "fp32": ([shipped.fp32.get(k, np.nan) for k in computed.fp32], list(computed.fp32.values()))}
    for metric in sorted(set(shipped.costs) | set(computed.costs)):
        a, b = shipped.costs.get(metric), computed.costs.get(metric)
        if a is None or b is None:
            out.append(f"cost metric {metric} is in one table only")
            continue
        arrays[f"costs {metric}"] = (np.append(a["table"], [a["fixed"], a["reference"]]),
                                     np.append(b["table"], [b["fixed"], b["reference"]]))
    for name, (a, b) in arrays.items():
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape or not np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=False):
            out.append(f"{name} differ")
    return out


def check_rows(table: ProblemTable, problem: "Problem", rows: Sequence[int]) -> list[str]:
    """Compare ``table`` with ``problem``, computed on the real workload (with any candidate set: one problem
    serves every table of its workload): the fingerprint of the weights and data, the layers and groups, the
    FP32 quality, and the phase-1 ``rows`` recomputed for the table's candidates; empty when they agree."""
    out = []
    fingerprint = problem.workload.fingerprint()
    if fingerprint != table.fingerprint:
        out.append(f"fingerprint: {table.fingerprint} != {fingerprint} (weights or data)")
    if list(table.layers) != list(problem.layers) or list(table.groups) != list(problem.groups):
        out.append("the layers or groups differ")
    if (problem.sensitivity_images, problem.split) != (table.key["sensitivity_images"], table.key["split"]):
        out.append(f"the problem has sensitivity_images={problem.sensitivity_images}, split={problem.split!r}; the "
                   f"table {table.key['sensitivity_images']}, {table.key['split']!r}")
        return out
    fp32 = problem.evaluate(problem.uniform(FP32))[table.primary_metric]
    if not np.isclose(table.fp32_quality, fp32, rtol=RTOL, atol=ATOL):
        out.append(f"FP32 quality: {table.fp32_quality} != {fp32}")
    if not rows:
        return out
    computed = sensitivity_rows(problem.evaluator.qmodel, problem.sensitivity_inputs(), table.groups,
                                table.candidates, list(rows), problem.workload.batch_size)
    for g in rows:
        if not np.allclose(table.sensitivity[g], computed[g], rtol=RTOL, atol=ATOL):
            out.append(f"phase-1 row {g} ({table.groups[g].name}): {table.sensitivity[g].tolist()} != "
                       f"{computed[g].tolist()}")
    return out
