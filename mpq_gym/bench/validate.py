"""Replay every configuration of a results.csv (``mpq-gym validate DIR/results.csv``) and flag any row whose
quality, FP32 reference, normalized score or cost does not reproduce.

Quality is recomputed with a fresh, empty result store (no memoised result is trusted); the FP32 quality
likewise; costs and their ratios from the cost model; the normalized score from the surrogate; the
recorded choices must give the recorded configuration and its budget verdict. Exit status 1 when any row
is flagged. Files written before the provenance columns replay the same way.

The replay runs on the validator's device (``device``; default ``bench.json``'s env kwargs, else ``auto``),
whatever device the rows were computed on; :func:`recorded_device_differences` names the devices the rows
record when they differ from the replay's (an accelerator's float results differ in the last bits).
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mpq_gym.bench.cells import make_problem
from mpq_gym.bench.runner import BenchSpec, read_results
from mpq_gym.budget import Budget
from mpq_gym.config import FP32, config_from_mapping
from mpq_gym.cost import COST_METRICS
from mpq_gym.devices import with_device
from mpq_gym.errors import ConfigError
from mpq_gym.evaluate.exact import ExactEvaluator
from mpq_gym.evaluate.store import ResultStore
from mpq_gym.problem import Problem
from mpq_gym.provenance import library_differences
from mpq_gym.scores import normalized_score

#: absolute tolerance of the normalized score (a surrogate refitted on another thread count may differ in
#: the last bits)
SCORE_TOLERANCE = 1e-4


def _close(recorded: str, replayed: float, abs_tol: float = 0.0, rel_tol: float = 0.0) -> bool:
    """Whether a recorded CSV value equals a replayed one (two NaNs are equal)."""
    value = float(recorded)
    if math.isnan(value) or math.isnan(replayed):
        return math.isnan(value) and math.isnan(replayed)
    return math.isclose(value, replayed, rel_tol=rel_tol, abs_tol=abs_tol)


def _row_issues(problem: Problem, row: dict[str, str], quality: float, fp32: float,
                tolerance: float) -> dict[str, tuple[Any, Any]]:
    """{column: (recorded, replayed)} for every column of ``row`` that does not reproduce."""
    config = config_from_mapping(json.loads(row["config"]), problem.layer_names)
    issues: dict[str, tuple[Any, Any]] = {}
    if not _close(row["quality"], quality, abs_tol=tolerance):
        issues["quality"] = (float(row["quality"]), quality)
    if not _close(row["fp32_quality"], fp32, abs_tol=tolerance):
        issues["fp32_quality"] = (float(row["fp32_quality"]), fp32)
    costs = problem.cost_model.costs(config)
    for column in (*COST_METRICS, *(f"{c}_ratio" for c in COST_METRICS)):
        if not _close(row[column], costs[column], rel_tol=1e-9):
            issues[column] = (float(row[column]), costs[column])
    choices = [int(c) for c in row["choices"].split()]
    if len(choices) != len(problem.groups) or problem.config(choices) != config:
        issues["choices"] = (row["choices"], "do not give the recorded config")
        return issues
    table = problem.budget_table(Budget(row["budget_metric"], float(row["budget"])))
    fits = bool(table.fits(choices))
    if row["within_budget"] != str(fits):
        issues["within_budget"] = (row["within_budget"], fits)
    score = normalized_score(problem, table, choices)
    if not _close(row["normalized_score"], score, abs_tol=SCORE_TOLERANCE):
        issues["normalized_score"] = (float(row["normalized_score"]), score)
    return issues


class Replayer:
    """Exact qualities recomputed from scratch: a fresh, empty result store in a temporary folder (nothing
    memoised is trusted), one forward pass per distinct (configuration, split). Share one between results
    of the same problem (the leaderboard does, across entries)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self._tmp = tempfile.TemporaryDirectory()
        self._evaluator = ExactEvaluator(problem.workload, problem.evaluator.qmodel,
                                         ResultStore(Path(self._tmp.name) / "replay.sqlite"), progress=False)
        self._done: dict[tuple[str, str], float] = {}

    def quality(self, config_json: str, split: str) -> float:
        """The primary metric of a recorded configuration (``"FP32"``: the full-precision model) on ``split``."""
        if (config_json, split) not in self._done:
            config = (self.problem.uniform(FP32) if config_json == "FP32"
                      else config_from_mapping(json.loads(config_json), self.problem.layer_names))
            metrics = self._evaluator.evaluate(config, split)
            self._done[(config_json, split)] = metrics[self.problem.workload.primary_metric]
        return self._done[(config_json, split)]

    def close(self) -> None:
        """Delete the temporary store."""
        self._tmp.cleanup()


def replayer_for(spec: BenchSpec, progress: bool = False, device: str | None = None) -> Replayer:
    """A :class:`Replayer` on the problem of ``spec``, its network on ``device`` (None: ``spec``'s kwargs')."""
    return Replayer(make_problem(spec.env_id, with_device(spec.env_kwargs, device), progress)[0])


def validate(results: Path, tolerance: float = 1e-6, progress: bool = True,
             replayer: Replayer | None = None, device: str | None = None) -> list[dict]:
    """Problems found: one entry per row with a column that differs beyond ``tolerance`` (absolute, quality;
    relative 1e-9 for costs; :data:`SCORE_TOLERANCE` for the normalized score). ``replayer``: one already
    built on this results' problem (else one is built on ``device`` and closed here)."""
    spec = BenchSpec.load(results.parent)
    rows = read_results(results)
    if not rows:
        raise ConfigError(f"{results} has no rows to validate")
    own = replayer is None
    replay = replayer_for(spec, progress, device) if own else replayer
    try:
        flagged = []
        for i, row in enumerate(tqdm(rows, desc="replaying", disable=not progress)):
            issues = _row_issues(replay.problem, row, replay.quality(row["config"], row["report_split"]),
                                 replay.quality("FP32", row["report_split"]), tolerance)
            if issues:
                flagged.append({"row": i + 2, "policy": row["policy"], "seed": row["seed"], "budget": row["budget"],
                                "recorded_vs_replayed": issues})
    finally:
        if own:
            replay.close()
    return flagged


def row_provenance_of(row: dict[str, str]) -> dict[str, Any]:
    """A row's provenance (empty for rows written before the column, or a value that is not a JSON object)."""
    try:
        value = json.loads(row.get("provenance") or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def recorded_library_differences(spec: BenchSpec, rows: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """{library: {"recorded": version(s), "now": this process's}} for every library whose version in
    ``bench.json`` or in a row's provenance differs from this process's (rows without provenance add nothing)."""
    recorded: dict[str, set] = {}
    now: dict[str, Any] = {}
    sources = [spec.provenance] + [row_provenance_of(r) for r in rows]
    for source in sources:
        for name, (old, new) in library_differences(source).items():
            recorded.setdefault(name, set()).add(old)
            now[name] = new
    return {name: {"recorded": next(iter(v)) if len(v) == 1 else sorted(map(str, v)), "now": now[name]}
            for name, v in sorted(recorded.items())}


def recorded_device_differences(rows: list[dict[str, str]], replay_device: str) -> dict[str, Any]:
    """``{"recorded": device type(s), "now": the replay's}`` when a row records (``torch_device`` in its
    provenance) another type of device than the replay's (``cpu``, ``cuda``, ``mps``: what changes the last
    bits); empty otherwise (rows without the record add nothing)."""
    now = str(replay_device).partition(":")[0]
    recorded = sorted({str(d).partition(":")[0] for d in (row_provenance_of(r).get("torch_device") for r in rows)
                       if d})
    if not recorded or recorded == [now]:
        return {}
    return {"recorded": recorded[0] if len(recorded) == 1 else recorded, "now": now}
