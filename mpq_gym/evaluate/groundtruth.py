"""The ground-truth table: exact evaluations of configurations near the Pareto front (mpq-gym's NAS-Bench).

One gzip-compressed CSV per task (a model and a candidate set). Its first line is ``# `` followed by a
JSON header: the table format, the task (env id and kwargs, budgets), the groups and candidates, the
workload fingerprint, the command that built it and the software versions (:mod:`mpq_gym.provenance`).
Each row is one configuration at one budget slice: where it came from (``source``: the ILP, its next
knapsack solutions, the greedy, evolution, k-swap neighbours of the ILP answer, random feasible ones),
its candidate indices, every metric the evaluator reports on the search and test splits (``search_*``,
``test_*``), every cost, the additive surrogate's prediction, and, for classification, which test images
it gets right (``test_correct``, hex bit mask) so any two rows can be compared with a paired bootstrap.

:func:`load_groundtruth` validates the format and the columns and says what to do on a mismatch. The
builder lives in :mod:`mpq_gym.bench.groundtruth` (``mpq-gym groundtruth build``); the fidelity numbers
(Kendall τ, MAE, regret, headroom) are computed here from a loaded table.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from scipy.stats import kendalltau, spearmanr

from mpq_gym.cache import write_atomic
from mpq_gym.errors import InputFileError
from mpq_gym.evaluate.sensitivity import SensitivityTable
from mpq_gym.evaluate.surrogate import MonotoneFit, Surrogate

#: Bump when the columns or their meaning change; a table of another format is refused with a message.
GROUNDTRUTH_FORMAT = 1
#: columns every table has (metric columns ``search_<m>`` / ``test_<m>`` and costs come on top)
BASE_COLUMNS = ("budget", "source", "choices", "within_budget", "bops_ratio", "additive_sqnr_db",
                "additive_prediction")
#: the header keys every table has
HEADER_KEYS = ("format", "task", "env_id", "env_kwargs", "budgets", "groups", "candidates", "primary_metric",
               "metrics", "fingerprint", "command", "provenance")
#: where the tables that ship with the package live
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "groundtruth"


@dataclass
class GroundTruthTable:
    """A loaded table: its header and rows (numbers as floats, ``choices`` as an int array [N, G])."""

    header: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def primary_metric(self) -> str:
        """The workload's primary metric (``top1``, ``spearman`` ...)."""
        return self.header["primary_metric"]

    @property
    def budgets(self) -> list[float]:
        """The budget slices, ascending."""
        return sorted({float(r["budget"]) for r in self.rows})

    def column(self, name: str, rows: Sequence[dict[str, Any]] | None = None) -> np.ndarray:
        """One numeric column as a float array."""
        return np.array([float(r[name]) for r in (self.rows if rows is None else rows)], dtype=np.float64)

    def choices(self, rows: Sequence[dict[str, Any]] | None = None) -> np.ndarray:
        """Candidate indices [N, G]."""
        return np.array([[int(c) for c in r["choices"].split()] for r in (self.rows if rows is None else rows)],
                        dtype=np.int64)

    def slice(self, budget: float) -> list[dict[str, Any]]:
        """The rows of one budget slice."""
        return [r for r in self.rows if math.isclose(float(r["budget"]), budget)]

    def surrogate(self) -> Surrogate:
        """The additive surrogate the table was built with (its phase-1 table and calibrated fit, from the header)."""
        single = SensitivityTable(self.header["groups"], [], np.array(self.header["phase1_sqnr_db"], dtype=np.float64),
                                  self.header["phase1_images"])
        return Surrogate(single, MonotoneFit(**self.header["surrogate_fit"]))

    def keys(self) -> set[tuple[float, str]]:
        """(budget, choices) of every row: what a resumed build skips."""
        return {(round(float(r["budget"]), 6), r["choices"]) for r in self.rows}


def write_groundtruth(path: Path, header: dict[str, Any], rows: Iterable[dict[str, Any]]) -> None:
    """Write a table atomically (gzip CSV, the JSON header on its first line); ``mtime=0`` keeps the bytes
    reproducible."""
    rows = list(rows)
    columns = list(dict.fromkeys(k for r in rows for k in r)) or list(BASE_COLUMNS)
    text = io.StringIO()
    text.write("# " + json.dumps(header, sort_keys=True) + "\n")
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(Path(path), gzip.compress(text.getvalue().encode(), mtime=0))


def load_groundtruth(path: str | Path) -> GroundTruthTable:
    """Read and validate a table; a wrong format, a missing header key or column is an :class:`InputFileError`
    that says what to do."""
    path = Path(path)
    if not path.exists():
        shipped = sorted(p.name for p in SHIPPED_DIR.glob("*.csv.gz"))
        raise InputFileError(f"{path} does not exist; build one with `mpq-gym groundtruth build` or use a shipped "
                             f"table: {shipped}")
    try:
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path} is not a gzip-compressed ground-truth CSV ({exc}); rebuild it with "
                             "`mpq-gym groundtruth build`") from exc
    if not lines or not lines[0].startswith("# "):
        raise InputFileError(f"{path} has no ground-truth header line; rebuild it with `mpq-gym groundtruth build`")
    try:
        header = json.loads(lines[0][2:])
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: the header line is not JSON ({exc}); rebuild the table") from exc
    if header.get("format") != GROUNDTRUTH_FORMAT:
        raise InputFileError(f"{path} is ground-truth format {header.get('format')!r}, this mpq-gym reads format "
                             f"{GROUNDTRUTH_FORMAT}: rebuild it with this version's `mpq-gym groundtruth build`")
    missing = [k for k in HEADER_KEYS if k not in header]
    if missing:
        raise InputFileError(f"{path}: header lacks {missing}; rebuild the table")
    rows = list(csv.DictReader(lines[1:]))
    metric_columns = [f"{split}_{m}" for split in ("search", "test") for m in header["metrics"]]
    absent = [c for c in (*BASE_COLUMNS, *metric_columns) if rows and c not in rows[0]]
    if absent:
        raise InputFileError(f"{path}: columns {absent} are missing; rebuild the table")
    groups = len(header["groups"])
    for i, row in enumerate(rows):
        if len(row["choices"].split()) != groups:
            raise InputFileError(f"{path}: row {i + 2} has {len(row['choices'].split())} choices, the header "
                                 f"{groups} groups; rebuild the table")
    return GroundTruthTable(header, rows)


# ------------------------------------------------------------------------- a learned SQNR correction
#: depth bins of the learned correction's noise features
DEPTH_BINS = 4


def sqnr_features(surrogates: Sequence[Surrogate], choices: np.ndarray) -> np.ndarray:
    """Per configuration: each surrogate's predicted SQNR and log10 of the (first surrogate's) summed noise in
    each of :data:`DEPTH_BINS` consecutive depth bins of groups [N, len(surrogates) + DEPTH_BINS]."""
    noise = surrogates[0].noise[np.arange(choices.shape[1]), choices]
    bins = np.array_split(np.arange(choices.shape[1]), DEPTH_BINS)
    per_bin = np.stack([np.log10(noise[:, b].sum(axis=1)) for b in bins], axis=1)
    return np.concatenate([*(s.predicted_sqnr(choices)[:, None] for s in surrogates), per_bin], axis=1)


def leave_one_slice_out_sqnr(table: GroundTruthTable, surrogates: Sequence[Surrogate]) -> np.ndarray:
    """The exact output SQNR of every row predicted by a ridge regression on :func:`sqnr_features`, fitted on the
    table's *other* budget slices (so every prediction is on configurations the fit never saw)."""
    from sklearn.linear_model import RidgeCV
    x, y = sqnr_features(surrogates, table.choices()), table.column("search_sqnr_db")
    budgets = table.column("budget")
    out = np.empty(len(y))
    for budget in np.unique(budgets):
        held_out = np.isclose(budgets, budget)
        model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x[~held_out], y[~held_out])
        out[held_out] = model.predict(x[held_out])
    return out


# ----------------------------------------------------------------------------------- per-sample masks
def correct_mask_hex(correct: np.ndarray) -> str:
    """A boolean vector as a hex bit mask (numpy's big-endian bit order)."""
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes().hex()


def correct_mask(hex_mask: str, n: int) -> np.ndarray:
    """The boolean vector of :func:`correct_mask_hex` (``n`` samples)."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_mask), dtype=np.uint8))[:n].astype(bool)


# ------------------------------------------------------------------------------------------- fidelity
@dataclass(frozen=True)
class SliceFidelity:
    """How well a prediction ranks and values one slice's configurations against exact quality."""

    budget: float
    rows: int
    kendall_tau: float
    spearman: float
    mae: float
    regret: float

    def to_json(self) -> dict[str, float]:
        """JSON-able dict."""
        return dict(self.__dict__)


def slice_fidelity(budget: float, predicted: np.ndarray, exact: np.ndarray) -> SliceFidelity:
    """Kendall τ, Spearman ρ, mean absolute error, and regret: the best exact quality among the rows minus the
    exact quality of the row the prediction ranks first."""
    predicted, exact = np.asarray(predicted, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    tau = float(kendalltau(predicted, exact).statistic) if len(exact) > 1 else math.nan
    rho = float(spearmanr(predicted, exact).statistic) if len(exact) > 1 else math.nan
    regret = float(exact.max() - exact[int(np.argmax(predicted))])
    return SliceFidelity(budget, len(exact), tau, rho, float(np.abs(predicted - exact).mean()), regret)


def headroom(best: np.ndarray, reference: np.ndarray, resamples: int = 2000, seed: int = 0,
             confidence: float = 0.95) -> tuple[float, float, float]:
    """(accuracy(best) - accuracy(reference), low, high) in points from two per-sample correctness vectors:
    the paired percentile bootstrap over samples."""
    best, reference = np.asarray(best, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    diff = best - reference
    rng = np.random.default_rng(seed)
    draws = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1) * 100
    alpha = (1 - confidence) / 2
    return float(diff.mean() * 100), float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))
