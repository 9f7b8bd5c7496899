"""Paired comparisons of a benchmark's configurations on the same held-out samples.

Two configurations scored on the same 488 test images differ by less than their separate sampling noise
suggests: most images are right (or wrong) under both. The paired percentile bootstrap resamples the
*samples* once per replicate and recomputes both configurations' metric on the same resample, so the
interval is that of the difference (``mpq-gym compare``). It is what tells a 0.4-point lead from noise.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mpq_gym.bench.cells import make_problem
from mpq_gym.bench.runner import BenchSpec, read_results
from mpq_gym.config import config_from_mapping
from mpq_gym.errors import ConfigError
from mpq_gym.problem import Problem

RESAMPLES = 2000


def paired_difference(problem: Problem, outputs_a: torch.Tensor, outputs_b: torch.Tensor, split: str,
                      confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """(metric(a) - metric(b), low, high) on ``split``: the workload's primary metric, percentile bootstrap
    over the split's samples, both configurations scored on the same resample."""
    workload = problem.workload
    targets = workload.split(split).targets
    reference = problem.evaluator.fp32_outputs(split)

    def score(outputs: torch.Tensor, index: torch.Tensor) -> float:
        return float(workload.metric(outputs[index], targets[index], reference[index])[workload.primary_metric])

    everything = torch.arange(len(targets))
    point = score(outputs_a, everything) - score(outputs_b, everything)
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for i in range(resamples):
        index = torch.from_numpy(rng.integers(0, len(targets), len(targets)))
        diffs[i] = score(outputs_a, index) - score(outputs_b, index)
    alpha = (1 - confidence) / 2
    return point, float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))


def compare_results(results: Path, baseline: str, progress: bool = True) -> list[dict[str, Any]]:
    """Every row of a results.csv against the ``baseline`` policy's row at the same budget (its first seed):
    the difference of the report-split metric with its paired 95 % interval. One forward pass per distinct
    configuration."""
    rows = read_results(results)
    if not rows:
        raise ConfigError(f"{results} has no rows to compare")
    references = {row["budget"]: row for row in rows if row["policy"] == baseline}
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

    out = []
    for row in tqdm(rows, desc="comparing", disable=not progress):
        reference = references.get(row["budget"])
        if reference is None or row is reference:
            continue
        diff, low, high = paired_difference(problem, outputs_of(row), outputs_of(reference), row["report_split"])
        out.append({"budget": row["budget"], "policy": row["policy"], "seed": int(row["seed"]),
                    "quality": float(row["quality"]), "baseline_quality": float(reference["quality"]),
                    "difference": diff, "low": low, "high": high,
                    "verdict": "ahead" if low > 0 else "behind" if high < 0 else "within noise"})
    return out
