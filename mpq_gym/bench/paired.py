"""Paired comparisons of a benchmark's configurations on the same held-out samples.

Two configurations scored on the same 488 test images differ by less than their separate sampling noise
suggests: most images are right (or wrong) under both. The paired percentile bootstrap resamples the
*samples* once per replicate and recomputes both configurations' metric on the same resample, so the
interval is that of the difference (``mpq-gym compare``). It is what tells a 0.4-point lead from noise.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from mpq_gym.bench.cells import make_problem
from mpq_gym.bench.runner import BenchSpec, read_results
from mpq_gym.config import config_from_mapping
from mpq_gym.errors import ConfigError
from mpq_gym.problem import Problem

RESAMPLES = 2000


def paired_difference(problem: Problem, outputs_a: torch.Tensor | Sequence[torch.Tensor], outputs_b: torch.Tensor,
                      split: str, confidence: float = 0.95, resamples: int = RESAMPLES,
                      seed: int = 0) -> tuple[float, float, float]:
    """(metric(a) - metric(b), low, high) on ``split``: the workload's primary metric, percentile bootstrap
    over the split's samples, both configurations scored on the same resample. ``outputs_a`` may be several
    configurations (e.g. one per seed): the difference is then their mean metric's, every one scored on the
    same resample, so the interval is that of the average lead."""
    workload = problem.workload
    targets = workload.split(split).targets
    reference = problem.evaluator.fp32_outputs(split)
    group = [outputs_a] if isinstance(outputs_a, torch.Tensor) else list(outputs_a)

    def lead(index: torch.Tensor) -> float:
        def score(outputs: torch.Tensor) -> float:
            return float(workload.metric(outputs[index], targets[index], reference[index])[workload.primary_metric])
        return float(np.mean([score(outputs) for outputs in group])) - score(outputs_b)

    point = lead(torch.arange(len(targets)))
    rng = np.random.default_rng(seed)
    diffs = np.array([lead(torch.from_numpy(rng.integers(0, len(targets), len(targets)))) for _ in range(resamples)])
    alpha = (1 - confidence) / 2
    return point, float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))


def compare_results(results: Path, baseline: str, progress: bool = True, pool_seeds: bool = False) -> list[dict[str, Any]]:
    """Every row of a results.csv against the ``baseline`` policy's row at the same budget (its first seed):
    the difference of the report-split metric with its paired 95 % interval (with ``pool_seeds``, one entry
    per policy and budget: the mean over its seeds, all scored on each resample). One forward pass per
    distinct configuration."""
    rows = read_results(results)
    if not rows:
        raise ConfigError(f"{results} has no rows to compare")
    references: dict[str, dict[str, str]] = {}
    for row in rows:  # the baseline's first row (seed) at each budget
        if row["policy"] == baseline:
            references.setdefault(row["budget"], row)
    if not references:
        policies = sorted({row["policy"] for row in rows})
        raise ConfigError(f"no {baseline!r} rows in {results}: choose --baseline from {policies}")
    spec = BenchSpec.load(results.parent)
    problem, _ = make_problem(spec.env_id, spec.env_kwargs, progress)
    outputs: dict[tuple[str, str], torch.Tensor] = {}

    def outputs_of(row: dict[str, str]) -> torch.Tensor:
        key = (row["config"], row["report_split"])
        if key not in outputs:
            config = config_from_mapping(json.loads(row["config"]), problem.layer_names)
            outputs[key] = problem.evaluator.outputs(config, row["report_split"])
        return outputs[key]

    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        if row["budget"] in references and row is not references[row["budget"]]:
            key = (row["budget"], row["policy"]) if pool_seeds else (row["budget"], row["policy"], row["seed"])
            groups.setdefault(key, []).append(row)
    out = []
    for members in tqdm(groups.values(), desc="comparing", disable=not progress):
        reference = references[members[0]["budget"]]
        diff, low, high = paired_difference(problem, [outputs_of(r) for r in members], outputs_of(reference),
                                            reference["report_split"])
        out.append({"budget": reference["budget"], "policy": members[0]["policy"],
                    "seed": "pooled" if pool_seeds else int(members[0]["seed"]), "seeds": len(members),
                    "quality": float(np.mean([float(r["quality"]) for r in members])),
                    "baseline_quality": float(reference["quality"]), "difference": diff, "low": low, "high": high,
                    "verdict": "ahead" if low > 0 else "behind" if high < 0 else "within noise"})
    return out
