"""Replay every configuration of a results.csv (``mpq-gym validate DIR/results.csv``) and flag any row whose 
quality or cost does not reproduce.

Quality is recomputed with a fresh, empty result store (no memoised result is trusted); costs are
recomputed from the cost model. Exit status 1 when any row is flagged.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from tqdm.auto import tqdm

from mpq_gym.bench.cells import make_problem
from mpq_gym.bench.runner import BenchSpec, read_results
from mpq_gym.cost import COST_METRICS
from mpq_gym.config import config_from_mapping
from mpq_gym.errors import ConfigError
from mpq_gym.evaluate.exact import ExactEvaluator
from mpq_gym.evaluate.store import ResultStore


def validate(results: Path, tolerance: float = 1e-6, progress: bool = True) -> list[dict]:
    """Problems found: one entry per row whose quality or a cost differs beyond ``tolerance`` (relative for costs)."""
    spec = BenchSpec.load(results.parent)
    rows = read_results(results)
    if not rows:
        raise ConfigError(f"{results} has no rows to validate")
    problem, _ = make_problem(spec.env_id, spec.env_kwargs, progress)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = ExactEvaluator(problem.workload, problem.evaluator.qmodel, ResultStore(Path(tmp) / "replay.sqlite"),
                               progress=False)
        flagged, replayed = [], {}
        for i, row in enumerate(tqdm(rows, desc="replaying", disable=not progress)):
            config = config_from_mapping(json.loads(row["config"]), problem.layer_names)
            key = (row["config"], row["report_split"])
            if key not in replayed:
                replayed[key] = fresh.evaluate(config, row["report_split"])[problem.workload.primary_metric]
            issues = {}
            if not math.isclose(replayed[key], float(row["quality"]), rel_tol=0, abs_tol=tolerance):
                issues["quality"] = (float(row["quality"]), replayed[key])
            costs = problem.cost_model.costs(config)
            for column in COST_METRICS:
                if not math.isclose(costs[column], float(row[column]), rel_tol=1e-9):
                    issues[column] = (float(row[column]), costs[column])
            if issues:
                flagged.append({"row": i + 2, "policy": row["policy"], "seed": row["seed"], "budget": row["budget"],
                                "recorded_vs_replayed": issues})
    return flagged
