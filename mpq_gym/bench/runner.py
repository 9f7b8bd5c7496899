"""Run policies x budgets x seeds on one env's problem and append every result to ``results.csv``.

Each (budget, policy, seed) cell gets a fresh :class:`~mpq_gym.search.SearchContext`; its chosen
configuration is scored exactly on the search split (counted) and on the held-out ``report_split``
(not counted: reporting only). Rows are written as each cell finishes, and a rerun with the same
``out`` skips finished cells, so an interrupted benchmark resumes where it stopped.

Every row also records where it came from (the suite and task when run as part of one, and the
provenance as JSON: versions, commit, machine, date), and ``reference.json`` holds the uniform
configurations' costs and report-split quality (the Pareto plot's reference points).

Where the network runs (``device``: ``--device``) is not part of the benchmark: it is kept out of
``bench.json``'s env kwargs (a folder resumes, and ``validate`` replays, on any device) and recorded in
each row's provenance (``torch_device``) and in ``bench.json``'s.
"""
from __future__ import annotations

import csv
import datetime
import io
import json
import warnings
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from mpq_gym.bench.cells import CELL_COLUMNS, COLUMNS, make_problem, run_cell, uniform_references
from mpq_gym.bench.parallel import RayPool
from mpq_gym.bench.policies import get_policy
from mpq_gym.budget import Budget
from mpq_gym.cache import write_atomic
from mpq_gym.devices import with_device
from mpq_gym.envs.env import check_env_kwargs, problem_from_env
from mpq_gym.envs.registration import require_env_id
from mpq_gym.errors import ConfigError, InputFileError
from mpq_gym.problem import Problem
from mpq_gym.provenance import provenance

#: splits a benchmark may report on
REPORT_SPLITS = ("test", "search", "calibration")


@dataclass
class BenchSpec:
    """What to benchmark (stored as ``bench.json`` beside the results, and used by ``validate``)."""

    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    policies: list[str] = field(default_factory=lambda: ["uniform", "greedy", "ilp", "evolution", "random"])
    budgets: list[float] = field(default_factory=lambda: [0.25, 0.375, 0.5])
    seeds: int = 5
    max_evaluations: int | None = None
    report_split: str = "test"
    #: the suite task this folder belongs to (``Suite.record``: name, version, digest, task); empty outside one
    suite: dict[str, Any] = field(default_factory=dict)
    #: how the last run that wrote the folder was made (:func:`mpq_gym.provenance.provenance`); not compared
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_env_id(self.env_id)
        if not isinstance(self.env_kwargs, dict):
            raise ConfigError(f"env_kwargs must be a mapping, got {self.env_kwargs!r}")
        if not self.policies or not all(isinstance(p, str) and p for p in self.policies):
            raise ConfigError(f"policies must be a non-empty list of names, got {self.policies!r}")
        if not self.budgets:
            raise ConfigError("budgets must be a non-empty list of ratios of the W8A16 cost, e.g. [0.375]")
        for ratio in self.budgets:
            Budget(ratio=ratio)  # a finite number > 0, or a ConfigError naming the fix
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"seeds must be a whole number >= 1, got {self.seeds!r}")
        if self.max_evaluations is not None and (isinstance(self.max_evaluations, bool) or
                                                 not isinstance(self.max_evaluations, int) or self.max_evaluations < 1):
            raise ConfigError(f"max_evaluations must be None or a whole number >= 1, got {self.max_evaluations!r}")
        if self.report_split not in REPORT_SPLITS:
            raise ConfigError(f"report_split must be one of {REPORT_SPLITS}, got {self.report_split!r}")
        if not isinstance(self.suite, dict):
            raise ConfigError(f"suite must be a mapping (name, version, digest, task), got {self.suite!r}")

    def merged(self, out: Path) -> dict[str, Any]:
        """This spec joined with the one already in ``out`` (policies, budgets and seeds accumulate); a
        different problem there is refused once that folder holds results (one whose earlier run wrote no
        row takes the new spec). Writes nothing."""
        mine = asdict(self)
        path = out / "bench.json"
        if not path.exists() or not read_results(out / "results.csv"):
            return mine
        old = asdict(BenchSpec.load(out))
        same = {k: old[k] for k in ("env_id", "env_kwargs", "report_split", "max_evaluations", "suite")}
        if same != {k: mine[k] for k in same}:
            raise ConfigError(f"{out} holds a benchmark of a different problem ({same}); use a new --out")
        mine["policies"] = sorted(set(old["policies"]) | set(self.policies))
        mine["budgets"] = sorted(set(old["budgets"]) | set(self.budgets))
        mine["seeds"] = max(old["seeds"], self.seeds)
        return mine

    def save(self, out: Path, record: dict[str, Any]) -> None:
        """Write ``bench.json`` (see :meth:`merged`) with this run's provenance ``record``."""
        (out / "bench.json").write_text(json.dumps({**self.merged(out), "provenance": record}, indent=2))

    @classmethod
    def load(cls, out: Path) -> "BenchSpec":
        """Read ``bench.json`` from a results folder."""
        path = Path(out) / "bench.json"
        if not path.exists():
            raise InputFileError(f"{path} is missing: is {out} a folder written by `mpq-gym bench`?")
        data = read_json(path)
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or "env_id" not in data or set(data) - known:
            raise InputFileError(f"{path} is not a bench.json written by `mpq-gym bench` (expected keys {sorted(known)})")
        return cls(**data)


def read_json(path: Path) -> Any:
    """A JSON file; a torn or garbled one is an :class:`InputFileError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path} is not valid JSON ({exc}); restore it, or delete the folder and rerun") from exc


def read_results(path: Path) -> list[dict[str, str]]:
    """Rows of a results.csv (empty when absent). A torn last row (an interrupted write) is dropped with a
    warning, so a resumed benchmark recomputes it; a damaged row elsewhere is an :class:`InputFileError`."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        legacy = reader.fieldnames is not None and list(reader.fieldnames) == list(CELL_COLUMNS)
        if reader.fieldnames is not None and list(reader.fieldnames) != list(COLUMNS) and not legacy:
            raise InputFileError(f"{path} does not have the columns of a results.csv written by `mpq-gym bench` "
                                 "of this version; use a new --out")
        rows = list(reader)
    torn = [i for i, row in enumerate(rows) if None in row.values() or None in row]
    if legacy:  # written before the provenance columns: they read as empty
        rows = [{**row, **{c: "" for c in COLUMNS if c not in row}} for row in rows]
    if torn and torn != [len(rows) - 1]:
        raise InputFileError(f"{path} has damaged rows (data rows {[i + 1 for i in torn]}); restore it or use a new --out")
    if torn:
        warnings.warn(f"{path}: dropping a torn last row (an interrupted write); it will be recomputed", stacklevel=2)
        rows = rows[:-1]
        write_results(path, rows)
    return rows


def write_results(path: Path, rows: list[dict[str, str]]) -> None:
    """Replace ``path`` atomically with ``rows`` (a results.csv of today's columns)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue().encode())


def _upgrade(path: Path) -> None:
    """Rewrite a results.csv of the columns before provenance with today's (the new ones empty), so that
    resumed rows can be appended."""
    if path.exists():
        with path.open(newline="") as f:
            header = next(csv.reader(f), None)
        if header == list(CELL_COLUMNS):
            write_results(path, read_results(path))


def row_provenance(spec: BenchSpec, base: dict[str, Any]) -> dict[str, str]:
    """The suite, task and provenance columns of a row finished now (``base``: :func:`provenance` of the run)."""
    record = {**base, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if spec.suite:
        record.update(suite_version=spec.suite.get("version"), suite_digest=spec.suite.get("digest"))
    return {"suite": spec.suite.get("name", ""), "task": spec.suite.get("task", ""),
            "provenance": json.dumps(record, sort_keys=True, separators=(",", ":"))}


def _append(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def run_benchmark(spec: BenchSpec, out: str | Path, progress: bool = True, ray: str | None = None, workers: int = 2,
                  plugins: Sequence[str] = (), device: str | None = None) -> Path:
    """Run every unfinished cell of ``spec``; returns the path of ``results.csv``.

    ``ray``: ``None`` runs the cells one after another; ``""`` on ``workers`` local Ray workers; an
    address on that Ray cluster. Cells are deterministic, so both give the same rows (in another order).
    ``device``: where the network runs (default: ``spec``'s env kwargs, else ``auto``); not recorded in
    ``bench.json``'s env kwargs, so the folder resumes on any device.
    """
    for name in spec.policies:
        get_policy(name)  # fail on a bad name before hours of work
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is not a folder; name a new or existing results folder")
    spec.merged(out)  # a different benchmark already there: refuse before any work
    kwargs = with_device(spec.env_kwargs, device)
    check_env_kwargs(spec.env_id, kwargs)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.csv"
    _upgrade(results)
    if ray is None:
        problem, metric = make_problem(spec.env_id, kwargs, progress)
        base = _start(spec, problem, metric, out)
        for cell in tqdm(_todo(spec, metric, results), desc="benchmark cells", disable=not progress):
            _append(results, {"env": spec.env_id, **run_cell(problem, **cell), **row_provenance(spec, base)})
        _write_references(problem, metric, spec.report_split, out)
        return results
    with RayPool(partial(problem_from_env, spec.env_id, kwargs), workers, ray, plugins) as pool:
        # phase-1 rows and the surrogate's calibration points in parallel, once, here; the workers
        # then find both in the shared caches
        problem, metric = make_problem(spec.env_id, kwargs, progress, pool)
        base = _start(spec, problem, metric, out)
        problem.surrogate  # noqa: B018
        todo = _todo(spec, metric, results)
        for row in tqdm(pool.run_cells(todo), desc="benchmark cells", total=len(todo), disable=not progress):
            _append(results, {"env": spec.env_id, **row, **row_provenance(spec, base)})
        _write_references(problem, metric, spec.report_split, out)
    return results


def _write_references(problem: Problem, metric: str, split: str, out: Path) -> None:
    """``reference.json``: the uniform configurations (:func:`uniform_references`), once per folder."""
    path = out / "reference.json"
    if not path.exists():
        data = {"metric": metric, "split": split, "uniform": uniform_references(problem, metric, split)}
        path.write_text(json.dumps(data, indent=2))


def _start(spec: BenchSpec, problem: Problem, metric: str, out: Path) -> dict[str, Any]:
    """Check every budget is feasible on ``problem``, then write ``bench.json`` (so a failed start writes
    nothing that blocks its corrected rerun); returns the run's provenance (with the problem's device)."""
    for ratio in spec.budgets:
        problem.budget_table(Budget(metric, ratio)).check_feasible()
    record = provenance(problem.device)
    spec.save(out, record)
    return record


def _todo(spec: BenchSpec, metric: str, results: Path) -> list[dict[str, Any]]:
    """The (budget, policy, seed) cells of ``spec`` not yet in ``results``, as :func:`run_cell` kwargs."""
    done = {(r["policy"], int(r["seed"]), float(r["budget"])) for r in read_results(results)}
    return [dict(budget=Budget(metric, b), policy_name=p, seed=s, max_evaluations=spec.max_evaluations,
                 report_split=spec.report_split)
            for b in spec.budgets for p in spec.policies
            for s in (range(spec.seeds) if get_policy(p).stochastic else [0]) if (p, s, float(b)) not in done]
