"""Building the ground-truth table (``mpq-gym groundtruth build``) and reading its fidelity numbers.

For each budget slice of a task the builder lists configurations near the front, best-known first:
the ILP's answer and the next knapsack solutions (``ilp``, ``ilp_k``), the greedy in both flip orders,
evolution's final top individuals, random k-swap neighbours of the ILP answer that stay within the
budget (k = 1..4), and random feasible configurations for contrast. Every one is evaluated exactly on
the search and the test split. Rows are written to the table as they finish (atomically, every few
rows), so an interrupted build resumes where it stopped: the lists are seeded, hence the same again,
and rows already in the table are skipped.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm.auto import tqdm

from mpq_gym.baselines.evolution import evolutionary_search
from mpq_gym.baselines.greedy_sqnr import greedy_sqnr_search
from mpq_gym.bench.cells import make_problem
from mpq_gym.budget import Budget
from mpq_gym.config import FP32
from mpq_gym.cost import COST_METRICS
from mpq_gym.devices import with_device
from mpq_gym.errors import ConfigError, InputFileError
from mpq_gym.evaluate.groundtruth import (GROUNDTRUTH_FORMAT, SHIPPED_DIR, GroundTruthTable, correct_mask,
                                          correct_mask_hex, headroom, load_groundtruth, slice_fidelity,
                                          write_groundtruth)
from mpq_gym.metrics import noise_power
from mpq_gym.problem import Problem
from mpq_gym.provenance import provenance
from mpq_gym.search import SearchContext, choices_key

#: ILP solutions per slice (its optimum and the next best knapsack solutions)
ILP_SOLUTIONS = 10
#: neighbours of the ILP answer differ from it in k groups, k = 1..MAX_SWAP
MAX_SWAP = 4
#: share of a slice's rows drawn at random (the rest beyond the searches' answers: k-swap neighbours)
RANDOM_SHARE = 0.15


@dataclass(frozen=True)
class GroundTruthTask:
    """A model and candidate set: the env id and kwargs, the budget slices and rows per slice."""

    env_id: str
    env_kwargs: dict[str, Any]
    budgets: tuple[float, ...]
    rows_per_slice: int
    budget_metric: str = "bops"
    meta: dict[str, Any] = field(default_factory=dict)


#: the tables the package ships (``mpq_gym/data/groundtruth/<name>.csv.gz``)
TASKS: dict[str, GroundTruthTask] = {
    "digits-low": GroundTruthTask("MixedPrecision-DigitsCNN-v0", {"candidates": "W2A2,W2A4,W3A3,W4A2,W4A4,W8A8"},
                                       (0.05, 0.08, 0.12), 70),
    "lite0-hardware": GroundTruthTask("MixedPrecision-EfficientNetLite0-v0",
                                      {"candidates": "hardware", "sensitivity_images": 64},
                                      (0.3, 0.375, 0.45, 0.55), 52),
    "lite0-expanded": GroundTruthTask("MixedPrecision-EfficientNetLite0-v0",
                                      {"candidates": "expanded", "sensitivity_images": 64}, (0.2, 0.25, 0.3), 68),
    "minilm-expanded": GroundTruthTask("MixedPrecision-MiniLM-v0", {"candidates": "expanded"}, (0.15, 0.2), 100),
}


def get_task(name: str) -> GroundTruthTask:
    """A task of :data:`TASKS` by name, with a clear error for a wrong one."""
    if name not in TASKS:
        raise ConfigError(f"unknown ground-truth task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


def default_path(name: str) -> Path:
    """Where the package keeps a task's table."""
    return SHIPPED_DIR / f"{name}.csv.gz"


# ------------------------------------------------------------------------------ configurations
def k_swap(ctx: SearchContext, base: np.ndarray, k: int, rng: np.random.Generator, attempts: int = 200) -> np.ndarray | None:
    """A random configuration within the budget that differs from ``base`` in exactly ``k`` groups (None if
    ``attempts`` draws find none)."""
    for _ in range(attempts):
        out = base.copy()
        for g in rng.choice(ctx.n_groups, size=k, replace=False):
            out[g] = rng.choice([c for c in range(ctx.n_candidates) if c != base[g]])
        if ctx.fits(out):
            return out
    return None


def front_configurations(ctx: SearchContext, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """(source, choices) of the searches' answers in one slice: the ILP and its next knapsack solutions,
    the greedy in both flip orders, evolution's final top individuals."""
    ilp = ctx.budget_table.least_penalties(noise_power(ctx.sensitivity.sqnr_db), ILP_SOLUTIONS)
    yield "ilp", ilp[0]
    for choices in ilp[1:]:
        yield "ilp_k", choices
    yield "greedy", greedy_sqnr_search(ctx, seed)
    yield "greedy_cost", greedy_sqnr_search(ctx, seed, order="sqnr_per_cost")
    evolution = SearchContext(ctx.problem, ctx.budget)
    evolutionary_search(evolution, seed)
    for key in evolution.evaluated:
        yield "evolution", np.array(key, dtype=np.int64)


def slice_configurations(ctx: SearchContext, rows: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """``rows`` distinct (source, choices) of one slice (fewer only if the slice has fewer): the searches'
    answers, then :data:`RANDOM_SHARE` random feasible ones, then k-swap neighbours of the ILP answer
    (k = 1..4 in turn) to fill. Deterministic in ``seed``."""
    out: dict[tuple[int, ...], tuple[str, np.ndarray]] = {}

    def add(source: str, choices: np.ndarray) -> None:
        out.setdefault(choices_key(choices), (source, np.asarray(choices, dtype=np.int64)))

    for source, choices in front_configurations(ctx, seed):
        add(source, choices)
    ilp = next(iter(out.values()))[1]
    randoms, swaps = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    target = len(out) + max(1, int(round(RANDOM_SHARE * rows)))
    for _ in range(20 * rows):
        if len(out) >= target:
            break
        add("random", ctx.random_feasible(randoms))
    for i in range(20 * rows):
        if len(out) >= rows:
            break
        k = 1 + i % MAX_SWAP
        neighbour = k_swap(ctx, ilp, k, swaps)
        if neighbour is not None:
            add(f"swap{k}", neighbour)
    return list(out.values())


def planned_rows(problem: Problem, task: GroundTruthTask, seed: int) -> list[tuple[float, str, np.ndarray]]:
    """Every (budget, source, choices) of the task, in evaluation order: the searches' answers of every
    slice first, then the neighbours, then the random ones (an interrupted build has the rows that matter
    most); each phase slice by slice, configurations sorted."""
    rank = {"random": 2}
    plan = []
    for budget in task.budgets:
        ctx = SearchContext(problem, Budget(task.budget_metric, budget))
        for source, choices in slice_configurations(ctx, task.rows_per_slice, seed):
            plan.append((rank.get(source, 1 if source.startswith("swap") else 0), budget, source, choices))
    # within a phase and slice, in execution order of the groups: neighbours in the list share the longest
    # prefix of layer choices, so the evaluator re-runs only the stages after it (reused activations)
    plan.sort(key=lambda p: (p[0], p[1], tuple(p[3].tolist())))
    return [(b, s, c) for _, b, s, c in plan]


# ------------------------------------------------------------------------------------- rows
def choices_text(choices: np.ndarray) -> str:
    """A configuration's candidate indices as the table's ``choices`` column writes them."""
    return " ".join(map(str, np.asarray(choices).tolist()))


def evaluate_row(problem: Problem, budget: float, source: str, choices: np.ndarray, metric: str) -> dict[str, Any]:
    """One table row: exact metrics on both splits, costs, the additive surrogate's prediction."""
    config = problem.config(choices)
    row: dict[str, Any] = {"budget": budget, "source": source, "choices": choices_text(choices)}
    table = problem.budget_table(Budget(metric, budget))
    row["within_budget"] = bool(table.fits(choices))
    costs = problem.cost_model.costs(config)
    row.update({c: costs[c] for c in COST_METRICS})
    row.update({f"{c}_ratio": costs[f"{c}_ratio"] for c in COST_METRICS})
    surrogate = problem.surrogate
    row["additive_sqnr_db"] = float(surrogate.predicted_sqnr(choices)[0])
    row["additive_prediction"] = float(surrogate.predict(choices[None])[0])
    for split in ("search", "test"):
        metrics, outputs = problem.evaluator.evaluate_with_outputs(config, split)
        row.update({f"{split}_{k}": v for k, v in metrics.items()})
        if split == "test" and problem.workload.primary_metric == "top1":
            targets = problem.workload.split(split).targets
            row["test_correct"] = correct_mask_hex((outputs.argmax(dim=1) == targets).numpy())
    return row


def table_header(name: str, task: GroundTruthTask, problem: Problem) -> dict[str, Any]:
    """The JSON header: format, task, groups, candidates, metrics, the phase-1 table and surrogate fit (so a
    new surrogate can be fitted from the table alone), fingerprint, command, provenance."""
    fp32 = {split: problem.evaluate(problem.uniform(FP32), split) for split in ("search", "test")}
    fit = problem.surrogate.metric_fit
    return {"format": GROUNDTRUTH_FORMAT, "task": name, "env_id": task.env_id, "env_kwargs": task.env_kwargs,
            "budgets": list(task.budgets), "budget_metric": task.budget_metric,
            "groups": [g.name for g in problem.groups], "group_layers": [list(g.layers) for g in problem.groups],
            "candidates": [str(c) for c in problem.candidates], "primary_metric": problem.workload.primary_metric,
            "metrics": list(fp32["search"]), "fingerprint": problem.workload.fingerprint(),
            "split_sizes": {s: len(problem.workload.split(s)) for s in ("search", "test")},
            "fp32": {split: values[problem.workload.primary_metric] for split, values in fp32.items()},
            "phase1_sqnr_db": [[float(v) if np.isfinite(v) else 1e9 for v in row]
                               for row in problem.sensitivity.sqnr_db],
            "phase1_images": problem.sensitivity.images,
            "surrogate_fit": None if fit is None else fit.__dict__,
            "command": " ".join(["mpq-gym", "groundtruth", *sys.argv[2:]]) if sys.argv[1:2] == ["groundtruth"]
            else f"mpq-gym groundtruth build --task {name}", "provenance": provenance(problem.device)}


def build_groundtruth(name: str, out: Path | None = None, seed: int = 0, progress: bool = True,
                      save_every: int = 5, limit: int | None = None, device: str | None = None) -> Path:
    """Build (or resume) task ``name``'s table at ``out`` (default: the package's copy); returns the path.
    ``limit`` stops after that many new rows (a smoke run); ``device``: where the network runs (default
    ``auto``; the header's provenance records it, the task's kwargs do not)."""
    task = get_task(name)
    path = Path(out) if out is not None else default_path(name)
    problem, _ = make_problem(task.env_id, with_device(task.env_kwargs, device), progress)
    header = table_header(name, task, problem)
    rows: list[dict[str, Any]] = []
    elapsed = 0.0
    if path.exists():
        old = load_groundtruth(path)
        if old.header["task"] != name or old.header["fingerprint"] != header["fingerprint"]:
            raise InputFileError(f"{path} holds task {old.header['task']!r} with fingerprint "
                                 f"{old.header['fingerprint']}, not {name!r} / {header['fingerprint']}: give "
                                 "another --out or delete the file to start again")
        rows, elapsed = old.rows, float(old.header.get("build_seconds", 0.0))
    problem.evaluator.progress = False  # one bar over the rows instead of one per evaluation
    done = GroundTruthTable(header, rows).keys()
    plan = [p for p in planned_rows(problem, task, seed) if (round(p[0], 6), choices_text(p[2])) not in done]
    if limit is not None:
        plan = plan[:limit]
    start = time.perf_counter()

    def save() -> None:
        write_groundtruth(path, {**header, "rows": len(rows),
                                 "build_seconds": round(elapsed + time.perf_counter() - start, 1)}, rows)

    for i, (budget, source, choices) in enumerate(tqdm(plan, desc=f"ground truth {name}", disable=not progress)):
        rows.append(evaluate_row(problem, budget, source, choices, task.budget_metric))
        if (i + 1) % save_every == 0:
            save()
    save()
    return path


# -------------------------------------------------------------------------------- fidelity
def fidelity_report(table: GroundTruthTable, resamples: int = 2000) -> list[dict[str, Any]]:
    """Per budget slice: the additive surrogate's Kendall τ, Spearman ρ, MAE (against exact search quality)
    and regret (search and test), and the headroom over the ILP on the test split: the best test quality in
    the slice minus the ILP's (optimistic: a max over noisy values) and the test quality of the slice's best
    *search* configuration minus the ILP's (what a search could claim), each with a paired bootstrap CI over
    test images where the table has per-image correctness."""
    metric = table.primary_metric
    out = []
    n_test = table.header["split_sizes"]["test"]
    for budget in table.budgets:
        rows = [r for r in table.slice(budget) if r["within_budget"] == "True"]
        predicted = table.column("additive_prediction", rows)
        search, test = table.column(f"search_{metric}", rows), table.column(f"test_{metric}", rows)
        fid = slice_fidelity(budget, predicted, search)
        entry = {**fid.to_json(), "test_regret": slice_fidelity(budget, predicted, test).regret}
        ilp = next(i for i, r in enumerate(rows) if r["source"] == "ilp")
        for label, best in (("best_test", int(np.argmax(test))), ("best_search", int(np.argmax(search)))):
            entry[f"headroom_{label}"] = float(test[best] - test[ilp])
            entry[f"headroom_{label}_source"] = rows[best]["source"]
            if "test_correct" in rows[best]:
                _, low, high = headroom(correct_mask(rows[best]["test_correct"], n_test),
                                        correct_mask(rows[ilp]["test_correct"], n_test), resamples)
                entry[f"headroom_{label}_ci"] = [low, high]
        entry["ilp_test"] = float(test[ilp])
        out.append(entry)
    return out
