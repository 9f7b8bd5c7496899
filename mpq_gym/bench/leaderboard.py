"""The MPQ-Bench leaderboard: replay every submission and rebuild ``leaderboard/LEADERBOARD.md``.

``leaderboard/<suite>/<entry>/`` holds one submission: ``entry.json`` (suite, policy, method, link,
command), a short ``README.md``, and per task of the suite ``<task>/results.csv`` + ``<task>/bench.json``
(one policy's rows; :func:`submit` cuts them from a suite run). An entry is ranked only when

* it covers every (task, budget) of the suite, or of the tasks its ``entry.json`` lists under ``tasks``
  (a *partial* entry: e.g. the tasks whose weights the submitter has), with the suite's seeds (seed 0 alone
  for an entry that declares itself deterministic), every row within its budget and evaluation allowance;
* its ``bench.json`` files describe the suite's tasks (env id, kwargs, split, allowance, suite digest);
* every row carries its provenance, and ``validate`` replays every row: quality, FP32 quality, normalized
  score, costs (a fresh result store; nothing memoised is trusted).

Otherwise it is listed as failing, with the reason. Full entries are ranked in the suite's table; partial
entries are ranked only against entries of the same tasks, in a table of their own under it (an aggregate
over other problems is another number). The leaderboard replays configurations; it does not
rerun searches (a deterministic entry's claim and a method's code are for reviewers). Ranked by the IQM
of the normalized score across problems and runs, then of Δ vs FP32, with stratified-bootstrap intervals
(:mod:`mpq_gym.bench.suite_runner`).

``python -m mpq_gym.bench.leaderboard`` = ``mpq-gym leaderboard build``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mpq_gym.bench.report import profile_plot
from mpq_gym.bench.runner import BenchSpec, read_json, read_results, write_results
from mpq_gym.bench.suite_runner import (improvement_markdown, problem_names, ranking_markdown, scores_by_policy,
                                        select_tasks, summarize)
from mpq_gym.bench.suites import LOCATION_KWARGS, SUITES, Suite
from mpq_gym.bench.validate import (Replayer, recorded_library_differences, replayer_for, row_provenance_of,
                                    validate)
from mpq_gym.errors import ConfigError, InputFileError, MpqGymError

ENTRY_FILE = "entry.json"
ENTRY_KEYS = ("suite", "policy", "method", "link", "command", "deterministic")
#: optional: the tasks of a partial entry (absent: every task of the suite)
PARTIAL_KEY = "tasks"
BOARD = "LEADERBOARD.md"


@dataclass
class EntryCheck:
    """One entry's verdict: its metadata, its rows per task, and why it fails (empty: it is ranked)."""

    name: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    libraries: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the entry is ranked."""
        return not self.reasons

    def tasks(self, suite: Suite) -> list[str]:
        """The suite's tasks this entry covers, in the suite's order (every one unless it is partial)."""
        listed = self.meta.get(PARTIAL_KEY)
        return [t.name for t in suite.tasks if listed is None or t.name in listed]


# ------------------------------------------------------------------------------------------ submitting
def entry_readme(meta: Mapping[str, Any], suite: Suite) -> str:
    """The entry's README.md: method, link, the command that produced it, and how to replay it."""
    return "\n".join([
        f"# {meta['method']} on {suite.name}", "",
        f"- policy: `{meta['policy']}`" + (" (deterministic: seed 0 only)" if meta["deterministic"] else ""),
        f"- paper or code: {meta['link'] or '-'}",
        f"- command: `{meta['command']}`",
        f"- suite: {suite.name}, version {suite.version}, digest {suite.digest}",
        *([f"- partial entry, tasks: {', '.join(meta[PARTIAL_KEY])} (ranked against entries of the same tasks)"]
          if PARTIAL_KEY in meta else []), "",
        "Replay: `python -m mpq_gym.bench.leaderboard` (or `mpq-gym validate <task>/results.csv` per task).", ""])


def submit(run_dir: str | Path, suite: Suite, policy: str, entry_dir: str | Path, method: str = "", link: str = "",
           command: str = "", tasks: Sequence[str] | None = None) -> Path:
    """Cut ``policy``'s rows out of a suite run (``mpq-gym bench --suite ... --out run_dir``) into a leaderboard
    entry folder; returns it. Every task of the suite must have been run, or of ``tasks`` for a partial entry."""
    run_dir, entry_dir = Path(run_dir), Path(entry_dir)
    chosen = select_tasks(suite, tasks)
    rows = {}
    for task in chosen:
        mine = [r for r in read_results(run_dir / task.name / "results.csv") if r["policy"] == policy]
        if not mine:
            raise ConfigError(f"{run_dir / task.name} has no {policy!r} rows; run every task of {suite.name} "
                              f"(`mpq-gym bench --suite {suite.name} --policies {policy} --out {run_dir}`) first, "
                              "or submit a partial entry of the tasks you ran (--tasks a,b)")
        rows[task.name] = mine
    deterministic = all({int(r["seed"]) for r in task_rows} == {0} for task_rows in rows.values())
    meta = {"suite": suite.name, "policy": policy, "method": method or policy, "link": link,
            "command": command or f"mpq-gym bench --suite {suite.name} --policies {policy} --out {run_dir}",
            "deterministic": deterministic}
    if len(chosen) < len(suite.tasks):
        meta[PARTIAL_KEY] = [t.name for t in chosen]
    for task, task_rows in rows.items():
        (entry_dir / task).mkdir(parents=True, exist_ok=True)
        spec = read_json(run_dir / task / "bench.json")
        (entry_dir / task / "bench.json").write_text(json.dumps({**spec, "policies": [policy]}, indent=2))
        write_results(entry_dir / task / "results.csv", task_rows)
    (entry_dir / ENTRY_FILE).write_text(json.dumps(meta, indent=2))
    (entry_dir / "README.md").write_text(entry_readme(meta, suite))
    return entry_dir


# ------------------------------------------------------------------------------------------ checking
def _read_meta(check: EntryCheck, suite: Suite) -> None:
    """entry.json into ``check.meta`` (a reason when missing or wrong)."""
    try:
        meta = read_json(check.path / ENTRY_FILE)
    except (InputFileError, FileNotFoundError):
        check.reasons.append(f"{ENTRY_FILE} is missing or not JSON")
        return
    if not isinstance(meta, dict) or sorted(set(meta) - {PARTIAL_KEY}) != sorted(ENTRY_KEYS):
        check.reasons.append(f"{ENTRY_FILE} must hold exactly {list(ENTRY_KEYS)} (and {PARTIAL_KEY!r} when partial)")
        return
    if meta["suite"] != suite.name:
        check.reasons.append(f"{ENTRY_FILE} names suite {meta['suite']!r}, but the entry is filed under {suite.name}")
    names = [t.name for t in suite.tasks]
    listed = meta.get(PARTIAL_KEY, names)
    if (not isinstance(listed, list) or not listed or len(set(listed)) != len(listed)
            or any(t not in names for t in listed)):
        check.reasons.append(f"{ENTRY_FILE}: {PARTIAL_KEY!r} must list distinct tasks of {suite.name} ({names})")
        return
    check.meta = meta
    extra = [n for n in names if n not in listed and (check.path / n).exists()]
    if extra:
        check.reasons.append(f"task folders {extra} are not among the entry's {PARTIAL_KEY} {listed}")


def _spec_reasons(spec: BenchSpec, suite: Suite, task_name: str) -> list[str]:
    """Where a task folder's bench.json departs from the suite's task."""
    task = suite.task(task_name)
    kwargs = {k: v for k, v in spec.env_kwargs.items() if k not in LOCATION_KWARGS}
    wanted = {"env_id": task.env_id, "env_kwargs": dict(task.env_kwargs), "report_split": task.report_split,
              "max_evaluations": task.max_evaluations, "suite": suite.record(task_name)}
    found = {"env_id": spec.env_id, "env_kwargs": kwargs, "report_split": spec.report_split,
             "max_evaluations": spec.max_evaluations, "suite": spec.suite}
    return [f"{task_name}: bench.json has {k}={found[k]!r}, the suite fixes {wanted[k]!r}"
            for k in wanted if found[k] != wanted[k]]


def _row_reasons(rows: list[dict[str, str]], suite: Suite, task_name: str, meta: Mapping[str, Any]) -> list[str]:
    """Cells missing or extra, rows of another policy, over budget or allowance, or without provenance."""
    task = suite.task(task_name)
    reasons = []
    policy = meta.get("policy")
    if any(r["policy"] != policy for r in rows):
        reasons.append(f"{task_name}: rows of policies other than {policy!r}")
    seeds = [0] if meta.get("deterministic") else list(range(task.seeds))
    wanted = sorted((float(b), s) for b in task.budgets for s in seeds)
    found = sorted((float(r["budget"]), int(r["seed"])) for r in rows)
    if found != wanted:
        reasons.append(f"{task_name}: cells (budget, seed) {found} but the suite needs {wanted}")
    for i, row in enumerate(rows, start=2):
        if row["within_budget"] != "True":
            reasons.append(f"{task_name}: row {i} exceeds its budget")
        if task.max_evaluations is not None and int(row["exact_evaluations"]) > task.max_evaluations:
            reasons.append(f"{task_name}: row {i} used {row['exact_evaluations']} exact evaluations "
                           f"(allowance {task.max_evaluations})")
        if not row.get("provenance") or row.get("suite") != suite.name or row.get("task") != task_name:
            reasons.append(f"{task_name}: row {i} lacks its provenance or names another suite / task")
    return reasons


def _flag_text(task_name: str, flag: Mapping[str, Any]) -> str:
    what = ", ".join(f"{column} recorded {old} replayed {new}"
                     for column, (old, new) in flag["recorded_vs_replayed"].items())
    return f"{task_name}: row {flag['row']} does not reproduce ({what})"


def check_task(check: EntryCheck, suite: Suite, task_name: str, replayer: Replayer | None = None,
               progress: bool = False, replay: bool = True) -> None:
    """Check one task folder of an entry, adding its rows, library differences and reasons to ``check``
    (``replay=False``: the structure only, no network run)."""
    folder = check.path / task_name
    try:
        spec = BenchSpec.load(folder)
        rows = read_results(folder / "results.csv")
    except MpqGymError as exc:
        check.reasons.append(f"{task_name}: {exc}")
        return
    if not rows:
        check.reasons.append(f"{task_name}: results.csv is missing or empty")
        return
    check.rows[task_name] = rows
    check.libraries.update(recorded_library_differences(spec, rows))
    spec_reasons = _spec_reasons(spec, suite, task_name)
    check.reasons += spec_reasons + _row_reasons(rows, suite, task_name, check.meta)
    if spec_reasons or not replay:
        return  # not the suite's problem: nothing to replay against
    try:
        flagged = validate(folder / "results.csv", progress=progress, replayer=replayer)
    except MpqGymError as exc:
        check.reasons.append(f"{task_name}: replay failed ({exc})")
        return
    check.reasons += [_flag_text(task_name, f) for f in flagged]


def check_entry(path: Path, suite: Suite, replay: bool = True, progress: bool = False) -> EntryCheck:
    """Every check of the module docstring on one entry folder (``replay=False``: all but the replay)."""
    check = EntryCheck(path.name, path)
    _read_meta(check, suite)
    for task in check.tasks(suite):
        check_task(check, suite, task, progress=progress, replay=replay)
    return check


def entry_folders(root: Path, suite: Suite) -> list[Path]:
    """The entry folders of ``suite`` under ``root`` (sorted by name)."""
    folder = root / suite.name
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def check_suite_entries(root: Path, suite: Suite, overrides: Mapping[str, Any] | None = None,
                        progress: bool = False) -> list[EntryCheck]:
    """:func:`check_entry` on every entry of ``suite``, task by task with one replay problem per task shared
    by the entries (one network in memory at a time, each distinct configuration evaluated once). The replay
    finds data where this machine keeps it (``overrides``: e.g. ``{"data_dir": ...}``), never where the
    submitter's did."""
    checks = [EntryCheck(p.name, p) for p in entry_folders(root, suite)]
    for check in checks:
        _read_meta(check, suite)
    for task in suite.tasks:
        covering = [c for c in checks if task.name in c.tasks(suite)]
        if not any((c.path / task.name / "bench.json").exists() for c in covering):
            for check in covering:  # nothing to replay: each gets check_task's reason for a missing folder
                check_task(check, suite, task.name, replay=False)
            continue
        spec = BenchSpec(task.env_id, {**dict(task.env_kwargs), **dict(overrides or {})}, ["uniform"],
                         list(task.budgets))
        replayer = replayer_for(spec, progress)
        try:
            for check in covering:
                check_task(check, suite, task.name, replayer, progress)
        finally:
            replayer.close()
    return checks


# ------------------------------------------------------------------------------------------ the board
def _recorded(check: EntryCheck) -> str:
    """Where the entry's rows were computed: commit (+ "dirty"), device and CPU count, first and last date."""
    records = [row_provenance_of(r) for rows in check.rows.values() for r in rows]
    dates = sorted(r.get("date", "")[:10] for r in records if r.get("date"))
    first = records[0] if records else {}
    commit = (first.get("commit") or "no git")[:10] + (" dirty" if first.get("dirty") else "")
    span = dates[0] if dates and dates[0] == dates[-1] else f"{dates[0]}..{dates[-1]}" if dates else "-"
    return f"{commit}, {first.get('device', '?')} x{first.get('cpu_count', '?')}, {span}"


def _library_note(check: EntryCheck) -> str:
    """"torch 2.4.0 → 2.5.1" for every library recorded at another version than this replay's."""
    return "; ".join(f"{name} {info['recorded']} → {info['now']}" for name, info in check.libraries.items()) or "-"


def _ranked_block(suite: Suite, ranked: Sequence[EntryCheck], tasks: Sequence[str], out: Path,
                  plot: str) -> tuple[list[str], dict[str, Any]]:
    """The ranked table, P(X > Y) and profile plot (``out/plot``) of entries covering the same ``tasks``."""
    scores = {}
    for check in ranked:
        by_task = {t: [{**r, "policy": check.name} for r in rows] for t, rows in check.rows.items()}
        scores.update(scores_by_policy(by_task, suite))
    summary = summarize(scores, problem_names(suite, tasks))
    meta = {c.name: (f"[{c.meta['method']}]({c.meta['link']})" if c.meta["link"] else c.meta["method"],
                     f"`{c.meta['policy']}`", _recorded(c), _library_note(c)) for c in ranked}
    lines = [ranking_markdown(summary, meta, ("method", "policy", "recorded (commit, device, date)",
                                              "libraries differing from the replay"), "entry"), "",
             f"Ranked by the IQM of the normalized score across problems and runs (ties: Δ vs FP32). "
             f"Quality: exact, on each task's report split; Δ vs FP32 in points. 95 % intervals: stratified "
             f"bootstrap over runs, {summary['resamples']} replicates ({summary['backend']}); a deterministic "
             f"entry has one run per problem.", "",
             "Probability of improvement on exact test quality, P(row > column):", "",
             improvement_markdown(summary), ""]
    out.mkdir(parents=True, exist_ok=True)
    taus = np.asarray(summary["profile_taus"])
    profile_plot({n: (taus, *map(np.asarray, p)) for n, p in summary["profiles"].items()}, out / plot)
    lines += [f"![performance profile of {suite.name}, tasks {', '.join(tasks)}]({suite.name}/{plot})", ""]
    return lines, summary


def suite_section(suite: Suite, checks: Sequence[EntryCheck], out: Path) -> tuple[str, dict[str, Any]]:
    """The markdown section of one suite (the ranked table of full entries, one table per task set of partial
    entries, failing entries, P(X > Y), the profile plots under ``out``) and its summary."""
    lines = [f"## {suite.name}", "", f"Version {suite.version}, digest `{suite.digest}`. {suite.description}", ""]
    lines += ["Problems (task @ budget): " + ", ".join(problem_names(suite)) + ".", ""]
    everything = [t.name for t in suite.tasks]
    groups: dict[tuple[str, ...], list[EntryCheck]] = {}
    for check in (c for c in checks if c.ok):
        groups.setdefault(tuple(check.tasks(suite)), []).append(check)
    summary: dict[str, Any] = {"ranked": [], "failing": {c.name: c.reasons for c in checks if not c.ok}}
    if tuple(everything) in groups:
        block, full = _ranked_block(suite, groups.pop(tuple(everything)), everything, out, "profile.png")
        lines += block
        summary = {**full, "failing": summary["failing"]}
    else:
        lines += ["No ranked entries yet." if not groups else "No ranked entry covers every task yet.", ""]
    summary["partial"] = []
    for number, (tasks, ranked) in enumerate(sorted(groups.items(), key=lambda g: (-len(g[0]), g[0])), start=1):
        lines += [f"### {suite.name}, partial entries: tasks {', '.join(tasks)}", "",
                  f"Entries that ran only these tasks of the suite (for example, where the other tasks' weights "
                  f"are not available), ranked against each other over problems "
                  f"{', '.join(problem_names(suite, tasks))}; not comparable with the full table.", ""]
        block, partial = _ranked_block(suite, ranked, tasks, out, f"profile_partial{number}.png")
        lines += block
        summary["partial"].append({"tasks": list(tasks), **partial})
    failing = [c for c in checks if not c.ok]
    if failing:
        lines += ["Failing entries (not ranked):", "",
                  *(f"- **{c.name}**: " + "; ".join(c.reasons[:5]) + (f" (+{len(c.reasons) - 5} more)"
                                                                     if len(c.reasons) > 5 else "") for c in failing),
                  ""]
    return "\n".join(lines), summary


def build_leaderboard(root: str | Path = "leaderboard", suites: Mapping[str, Suite] | None = None,
                      overrides: Mapping[str, Any] | None = None, progress: bool = False) -> Path:
    """Replay every entry under ``root`` and write ``root/LEADERBOARD.md`` (and ``root/leaderboard.json``);
    returns the markdown's path. ``suites``: default every named suite (:data:`SUITES`)."""
    root = Path(root)
    bad = sorted(k for k in (overrides or {}) if k not in LOCATION_KWARGS)
    if bad:
        raise ConfigError(f"--env-kwargs {bad} would change the tasks; the replay takes only {list(LOCATION_KWARGS)}")
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; give the leaderboard folder (leaderboard/<suite>/<entry>/)")
    suites = dict(SUITES if suites is None else suites)
    unknown = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in suites)
    sections, data = [], {}
    for suite in suites.values():
        text, summary = suite_section(suite, check_suite_entries(root, suite, overrides, progress), root / suite.name)
        sections.append(text)
        data[suite.name] = summary
    header = ["# MPQ-Bench leaderboard", "",
              "Generated by `python -m mpq_gym.bench.leaderboard` (= `mpq-gym leaderboard build`), which replays "
              "every row of every entry; do not edit by hand. An entry is one policy's results on every task of "
              "a suite (or, as a partial entry, on the tasks its `entry.json` lists): "
              "`leaderboard/<suite>/<entry>/` with `entry.json`, `README.md` and `<task>/results.csv` + "
              "`<task>/bench.json` (`mpq-gym leaderboard submit` makes one from a suite run).", ""]
    if unknown:
        header += [f"Folders that name no suite (ignored): {', '.join(unknown)}.", ""]
    board = root / BOARD
    board.write_text("\n".join(header + sections))
    (root / "leaderboard.json").write_text(json.dumps(data, indent=2))
    return board


if __name__ == "__main__":  # python -m mpq_gym.bench.leaderboard: the command line's entry shim, as __main__.py is
    import runpy
    runpy.run_module("mpq_gym.cli.leaderboard", run_name="__main__")
