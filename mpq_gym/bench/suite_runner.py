"""Run a named suite (``mpq-gym bench --suite NAME``) and score it across tasks.

A suite run is a folder with ``suite.json`` and one benchmark folder per task (``bench.json``,
``results.csv``, the task's report and Pareto plot): each task is an ordinary :func:`run_benchmark`, so a
rerun resumes where it stopped. The cross-task report (``suite.md``, ``suite_summary.json``,
``profile.png``, ``sample_efficiency.png``) scores every (task, budget) "problem" by

* the exact quality on the report split and its Δ vs FP32 in points (the headline, per problem);
* the normalized surrogate score (1 = the surrogate optimum within the budget, 0 = random);

and aggregates across problems with rliable's definitions (:mod:`mpq_gym.bench.aggregate`): the IQM of
the normalized score and of Δ vs FP32 with stratified-bootstrap intervals, the performance profile of
the normalized score, and the probability of improvement on exact quality.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mpq_gym.bench import aggregate
from mpq_gym.bench.policies import get_policy
from mpq_gym.bench.report import profile_plot, sample_efficiency_plot, write_report
from mpq_gym.bench.runner import BenchSpec, read_json, read_results, run_benchmark
from mpq_gym.bench.suites import LOCATION_KWARGS, Suite, SuiteTask, check_suite
from mpq_gym.envs.env import split_env_kwargs
from mpq_gym.errors import ConfigError, MpqGymError
from mpq_gym.markdown import markdown_table

#: the taus of the performance profile (normalized score)
PROFILE_TAUS = np.linspace(0.0, 1.0, 101)
#: score name -> what the tables call it
SCORES = {"normalized": "normalized score", "delta": "Δ vs FP32 (points)"}
Problems = dict[str, dict[str, np.ndarray]]


def task_spec(suite: Suite, task: SuiteTask, policies: Sequence[str],
              overrides: Mapping[str, Any] | None = None) -> BenchSpec:
    """The :class:`BenchSpec` of one suite task (``overrides``: :data:`LOCATION_KWARGS` only)."""
    extra = dict(overrides or {})
    bad = sorted(k for k in extra if k not in LOCATION_KWARGS)
    if bad:
        raise ConfigError(f"--env-kwargs {bad} would change suite {suite.name}'s tasks; a suite fixes them "
                          f"(only {list(LOCATION_KWARGS)} may be given)")
    return BenchSpec(task.env_id, {**dict(task.env_kwargs), **extra}, list(policies), list(task.budgets), task.seeds,
                     task.max_evaluations, task.report_split, suite=suite.record(task.name))


def select_tasks(suite: Suite, names: Sequence[str] | None) -> list[SuiteTask]:
    """The named tasks of ``suite`` (all when ``names`` is empty), in the suite's order."""
    if not names:
        return list(suite.tasks)
    chosen = {suite.task(n).name for n in names}
    return [t for t in suite.tasks if t.name in chosen]


def preflight(tasks: Sequence[SuiteTask], overrides: Mapping[str, Any] | None = None) -> None:
    """Load every task's workload once (weights only; data loads lazily), so that a missing checkpoint is the
    workload's :class:`~mpq_gym.errors.MissingWeightsError` before any work, never random weights."""
    for task in tasks:
        spec, _ = split_env_kwargs(task.env_id, {**dict(task.env_kwargs), **dict(overrides or {})})
        spec.build_workload()


def plan_suite(suite: Suite, policies: Sequence[str], tasks: Sequence[str] | None = None,
               check_weights: bool = True) -> list[dict[str, Any]]:
    """A dry run: every (selected) task's definition and cell count, its kwargs validated without building
    anything, and (``check_weights``) whether its workload's weights load here (else the error's text)."""
    check_suite(suite)
    stochastic = sum(get_policy(p).stochastic for p in policies)
    plan = []
    for task in select_tasks(suite, tasks):
        entry = {"task": task.name, "env_id": task.env_id, "env_kwargs": dict(task.env_kwargs),
                 "budgets": list(task.budgets), "seeds": task.seeds, "max_evaluations": task.max_evaluations,
                 "report_split": task.report_split, "track": task.track,
                 "cells": len(task.budgets) * (len(policies) - stochastic + stochastic * task.seeds)}
        if check_weights:
            try:
                preflight([task])
                entry["weights"] = "ok"
            except MpqGymError as exc:
                entry["weights"] = " ".join(str(exc).split())
        plan.append(entry)
    return plan


def _write_suite_json(suite: Suite, out: Path, tasks: Sequence[SuiteTask], policies: Sequence[str]) -> None:
    """``suite.json``: the suite's record and the tasks and policies run so far (accumulating on reruns)."""
    path = out / "suite.json"
    record = suite.identity()
    old = read_json(path) if path.exists() else None
    if old is not None and {k: old.get(k) for k in record} != record:
        raise ConfigError(f"{out} holds a run of suite {old.get('name')} ({old.get('digest')}); use a new --out")
    names = sorted(set(old["tasks"] if old else []) | {t.name for t in tasks})
    runs = sorted(set(old["policies"] if old else []) | set(policies))
    path.write_text(json.dumps({**record, "tasks": names, "policies": runs}, indent=2))


def run_suite(suite: Suite, policies: Sequence[str], out: str | Path, tasks: Sequence[str] | None = None,
              overrides: Mapping[str, Any] | None = None, progress: bool = True, ray: str | None = None,
              workers: int = 2, plugins: Sequence[str] = (), device: str | None = None) -> dict[str, Path]:
    """Run ``policies`` on the (selected) tasks of ``suite`` under ``out``; returns {task: results.csv}.
    ``device``: where every task's network runs (:func:`run_benchmark`; not recorded in the tasks' kwargs)."""
    check_suite(suite)
    chosen = select_tasks(suite, tasks)
    specs = {t.name: task_spec(suite, t, policies, overrides) for t in chosen}
    for name in policies:
        get_policy(name)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is not a folder; name a new or existing results folder")
    for task in chosen:
        specs[task.name].merged(out / task.name)  # a different benchmark there: refuse before any work
    preflight(chosen, overrides)
    out.mkdir(parents=True, exist_ok=True)
    _write_suite_json(suite, out, chosen, policies)
    return {t.name: run_benchmark(specs[t.name], out / t.name, progress, ray, workers, plugins, device)
            for t in chosen}


# ------------------------------------------------------------------------------------------ scoring
def problem_key(task: str, budget: float | str) -> str:
    """The name of a (task, budget) problem, e.g. ``lite0-hardware@0.375``."""
    return f"{task}@{float(budget):g}"


def problem_names(suite: Suite, tasks: Sequence[str] | None = None) -> list[str]:
    """Every (task, budget) problem of the (selected) tasks, in the suite's order."""
    return [problem_key(t.name, b) for t in select_tasks(suite, tasks) for b in t.budgets]


def scores_by_policy(rows_by_task: Mapping[str, list[dict[str, str]]], suite: Suite) -> dict[str, Problems]:
    """{policy: {problem: {"normalized", "delta", "quality", "evaluations": [runs]}}} (runs in seed order)."""
    grouped: dict[str, dict[str, list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for task, rows in rows_by_task.items():
        scale = suite.task(task).delta_scale
        for row in sorted(rows, key=lambda r: int(r["seed"])):
            grouped[row["policy"]][problem_key(task, row["budget"])].append({**row, "_scale": scale})
    out: dict[str, Problems] = {}
    for policy, problems in grouped.items():
        out[policy] = {name: {
            "normalized": np.array([float(r["normalized_score"]) for r in runs]),
            "delta": np.array([(float(r["quality"]) - float(r["fp32_quality"])) * r["_scale"] for r in runs]),
            "quality": np.array([float(r["quality"]) for r in runs]),
            "evaluations": np.array([int(r["exact_evaluations"]) + int(r["surrogate_evaluations"]) for r in runs]),
        } for name, runs in problems.items()}
    return out


def summarize(scores: Mapping[str, Problems], problems: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """Across-problem aggregates of every name (a policy or a leaderboard entry) that has every problem:
    IQM of each score with its interval, the per-problem IQMs, the performance profile and the probability
    of improvement (on exact quality) of each over each other. Names missing a problem are listed apart."""
    complete = [n for n in scores if all(p in scores[n] for p in problems)]
    ranked: list[dict[str, Any]] = []
    for name in complete:
        entry: dict[str, Any] = {"name": name, "runs": [len(scores[name][p]["quality"]) for p in problems]}
        for score in SCORES:
            interval = aggregate.aggregate_iqm([scores[name][p][score] for p in problems], seed=seed)
            entry[score] = {"iqm": interval.point, "low": interval.low, "high": interval.high}
        entry["problems"] = {p: {k: aggregate.iqm(scores[name][p][k]) for k in ("quality", "delta", "normalized",
                                                                                 "evaluations")} for p in problems}
        ranked.append(entry)
    ranked.sort(key=lambda e: (-e["normalized"]["iqm"], -e["delta"]["iqm"], e["name"]))
    improvement = {a["name"]: {b["name"]: vars(aggregate.probability_of_improvement(
        [scores[a["name"]][p]["quality"] for p in problems], [scores[b["name"]][p]["quality"] for p in problems],
        seed=seed)) for b in ranked if b is not a} for a in ranked}
    profiles = {e["name"]: [v.tolist() for v in aggregate.performance_profile(
        [scores[e["name"]][p]["normalized"] for p in problems], PROFILE_TAUS, seed=seed)] for e in ranked}
    return {"problems": list(problems), "backend": aggregate.backend(), "resamples": aggregate.RESAMPLES,
            "ranked": ranked, "incomplete": sorted(set(scores) - set(complete)),
            "probability_of_improvement": improvement, "profile_taus": PROFILE_TAUS.tolist(), "profiles": profiles}


def _ci(block: dict[str, float], digits: int) -> str:
    text = f"{block['iqm']:.{digits}f}"
    return text + (f" [{block['low']:.{digits}f}, {block['high']:.{digits}f}]" if block["high"] > block["low"] else "")


def ranking_markdown(summary: Mapping[str, Any], extra: Mapping[str, Sequence[str]] | None = None,
                     extra_header: Sequence[str] = (), label: str = "policy") -> str:
    """The ranked table of :func:`summarize` (``extra``: more cells per name, under ``extra_header``)."""
    header = ["rank", label, *extra_header, "runs per problem", "normalized IQM [95 % CI]",
              "Δ vs FP32 IQM [95 % CI]", *(f"{p}: quality (Δ)" for p in summary["problems"])]
    rows = []
    for rank, e in enumerate(summary["ranked"], start=1):
        runs = sorted(set(e["runs"]))
        cells = [f"{q['quality']:.2f} ({q['delta']:+.2f})" for q in (e["problems"][p] for p in summary["problems"])]
        rows.append([rank, e["name"], *(extra or {}).get(e["name"], ()), "/".join(map(str, runs)),
                     _ci(e["normalized"], 3), _ci(e["delta"], 2), *cells])
    return markdown_table(header, rows)


def improvement_markdown(summary: Mapping[str, Any]) -> str:
    """P(row > column) on exact quality, one cell per pair of ranked names."""
    names = [e["name"] for e in summary["ranked"]]
    poi = summary["probability_of_improvement"]
    rows = [[a, *("-" if a == b else f"{poi[a][b]['point']:.2f}" for b in names)] for a in names]
    return markdown_table(["P(row > column)", *names], rows)


def suite_rows(out: Path, suite: Suite) -> dict[str, list[dict[str, str]]]:
    """{task: rows} of every task of ``suite`` that has results under ``out``."""
    return {t.name: read_results(out / t.name / "results.csv") for t in suite.tasks
            if (out / t.name / "results.csv").exists()}


def write_suite_report(out: str | Path, suite: Suite) -> dict[str, Path]:
    """Each task's report, then ``suite_summary.json``, ``suite.md``, ``profile.png`` and
    ``sample_efficiency.png`` across the tasks that have results."""
    out = Path(out)
    rows_by_task = suite_rows(out, suite)
    if not rows_by_task:
        raise ConfigError(f"{out} has no results of suite {suite.name}; run `mpq-gym bench --suite {suite.name}` first")
    for task in rows_by_task:
        write_report(out / task / "results.csv", f"{suite.name} / {task} ({suite.task(task).env_id})")
    problems = problem_names(suite, list(rows_by_task))
    summary = summarize(scores_by_policy(rows_by_task, suite), problems)
    (out / "suite_summary.json").write_text(json.dumps({"suite": suite.identity(), **summary}, indent=2))
    (out / "suite.md").write_text(suite_markdown(suite, summary))
    taus = np.asarray(summary["profile_taus"])
    profile = profile_plot({n: (taus, *map(np.asarray, p)) for n, p in summary["profiles"].items()},
                           out / "profile.png")
    panels = {problem_key(t, b): [r for r in rows if problem_key(t, r["budget"]) == problem_key(t, b)]
              for t, rows in rows_by_task.items() for b in suite.task(t).budgets}
    efficiency = sample_efficiency_plot(panels, out / "sample_efficiency.png")
    return {"summary": out / "suite_summary.json", "table": out / "suite.md", "profile": profile,
            "sample_efficiency": efficiency}


def suite_markdown(suite: Suite, summary: Mapping[str, Any]) -> str:
    """``suite.md``: the ranked table and the probability-of-improvement matrix."""
    lines = [f"# {suite.name} (version {suite.version}, digest {suite.digest})", "",
             f"Problems: {', '.join(summary['problems'])}. Ranked by the IQM of the normalized score across problems "
             f"and runs; intervals: stratified bootstrap over runs, {summary['resamples']} replicates "
             f"({summary['backend']}).", "", ranking_markdown(summary), ""]
    if summary["incomplete"]:
        lines += [f"Not ranked (a problem missing): {', '.join(summary['incomplete'])}.", ""]
    lines += ["Probability of improvement on exact test quality (rliable's P(X > Y)):", "",
              improvement_markdown(summary), ""]
    return "\n".join(lines)
