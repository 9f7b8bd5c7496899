"""Summaries of a results.csv: per-cell aggregates, a markdown table, the Pareto plot (quality vs cost, the
policies' fronts), the sample-efficiency plot and performance profiles."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mpq_gym.bench.aggregate import iqm, iqm_interval
from mpq_gym.bench.runner import read_results
from mpq_gym.markdown import markdown_table



def _finish(fig: Any, ax: Any, path: Path) -> Path:
    """Legend, grid, tight layout; save ``fig`` to ``path`` and close it."""
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path

def aggregate(rows: list[dict[str, str]]) -> list[dict[str, float | str | int]]:
    """One entry per (budget, policy): IQM of quality with its 95 % CI across seeds, mean costs and search cost."""
    cells: dict[tuple[float, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        cells[(float(row["budget"]), row["policy"])].append(row)
    out = []
    for (budget, policy), group in sorted(cells.items()):
        quality = np.array([float(r["quality"]) for r in group])
        point, low, high = iqm_interval(quality)
        out.append({
            "budget": budget, "policy": policy, "seeds": len(group), "quality_iqm": point, "ci_low": low,
            "ci_high": high, "quality_min": float(quality.min()), "quality_max": float(quality.max()),
            "fp32_quality": float(group[0]["fp32_quality"]),
            "normalized_iqm": iqm_interval(np.array([float(r["normalized_score"]) for r in group]))[0],
            "bops_ratio": float(np.mean([float(r["bops_ratio"]) for r in group])),
            "size_bits_ratio": float(np.mean([float(r["size_bits_ratio"]) for r in group])),
            "within_budget": all(r["within_budget"] == "True" for r in group),
            "exact_evaluations": float(np.mean([int(r["exact_evaluations"]) for r in group])),
            "surrogate_evaluations": float(np.mean([int(r["surrogate_evaluations"]) for r in group])),
            "wall_s": float(np.mean([float(r["wall_s"]) for r in group])),
        })
    return out


def markdown(summary: list[dict]) -> str:
    """Markdown table of :func:`aggregate`'s output."""
    header = ["budget", "policy", "seeds", "quality IQM [95 % CI]", "Δ vs FP32", "normalized", "BOPs ratio", "size ratio",
              "in budget", "exact evals (+ surrogate calib.)", "search wall s"]
    rows = []
    for s in summary:
        d = 4 if abs(s["fp32_quality"]) <= 1 else 2  # correlations (Spearman) need more decimals than top-1 %
        ci = f" [{s['ci_low']:.{d}f}, {s['ci_high']:.{d}f}]" if s["seeds"] > 1 else ""
        extra = f" (+{s['surrogate_evaluations']:.0f})" if s["surrogate_evaluations"] else ""
        rows.append([f"{s['budget']:g}", s["policy"], s["seeds"], f"{s['quality_iqm']:.{d}f}{ci}",
                     f"{s['quality_iqm'] - s['fp32_quality']:+.{d}f}", f"{s['normalized_iqm']:.3f}",
                     f"{s['bops_ratio']:.4f}",
                     f"{s['size_bits_ratio']:.4f}", "yes" if s["within_budget"] else "NO",
                     f"{s['exact_evaluations']:.1f}{extra}", f"{s['wall_s']:.1f}"])
    return markdown_table(header, rows) + "\n"


MARKERS = "osD^v<>Ph*X"


def _pyplot():
    """matplotlib's pyplot on the file-only backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _log_x(ax) -> None:
    """A log x axis labelled in plain numbers (1, 2, 5 of each decade)."""
    from matplotlib.ticker import FuncFormatter

    def label(x: float, _: int) -> str:
        mantissa = round(x / 10 ** np.floor(np.log10(x)), 6) if x > 0 else 0
        return f"{x:g}" if mantissa in (1, 2, 5) else ""

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(label))
    ax.xaxis.set_minor_formatter(FuncFormatter(label))


def policy_front(rows: list[dict[str, str]], cost_column: str) -> list[dict[str, float]]:
    """One point per budget of one policy's rows: mean cost ratio, IQM quality and its 95 % CI across seeds,
    sorted by cost (the policy's front)."""
    by_budget: dict[float, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_budget[float(row["budget"])].append(row)
    front = []
    for budget, group in by_budget.items():
        point, low, high = iqm_interval(np.array([float(r["quality"]) for r in group]))
        front.append({"budget": budget, "cost": float(np.mean([float(r[cost_column]) for r in group])),
                      "quality": point, "low": low, "high": high})
    return sorted(front, key=lambda p: p["cost"])


def pareto_plot(rows: list[dict[str, str]], path: Path, title: str = "",
                references: dict | None = None) -> Path:
    """The papers' Pareto figure: per policy its front across budgets (IQM quality with 95 % CI bars across
    seeds, joined by a line; single runs faint behind), the uniform configurations as reference points
    (``references``: a ``reference.json``), FP32 as a dashed line, the budgets as light vertical lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    metric = rows[0]["budget_metric"] if rows else "bops"
    column = f"{metric}_ratio"
    for i, policy in enumerate(sorted({r["policy"] for r in rows})):
        mine = [r for r in rows if r["policy"] == policy]
        front = policy_front(mine, column)
        line = ax.errorbar([p["cost"] for p in front], [p["quality"] for p in front],
                           yerr=[[p["quality"] - p["low"] for p in front], [p["high"] - p["quality"] for p in front]],
                           marker=MARKERS[i % len(MARKERS)], capsize=3, label=policy, linewidth=1.2)
        ax.scatter([float(r[column]) for r in mine], [float(r["quality"]) for r in mine], s=10, alpha=0.25,
                   color=line[0].get_color())
    if references:
        points = references.get("uniform", [])
        ax.scatter([p["cost_ratio"] for p in points], [p["quality"] for p in points], marker="x", color="black",
                   label="uniform configurations", zorder=3)
        for p in points:
            ax.annotate(p["candidate"], (p["cost_ratio"], p["quality"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    if rows:
        ax.axhline(float(rows[0]["fp32_quality"]), color="gray", linestyle="--", label="FP32")
        for budget in sorted({float(r["budget"]) for r in rows}):
            ax.axvline(budget, color="lightgray", linewidth=0.8)
    costs = [float(r[column]) for r in rows] + [p["cost_ratio"] for p in (references or {}).get("uniform", [])]
    wide = bool(costs) and min(costs) > 0 and max(costs) / min(costs) > 8
    if wide:  # e.g. W2A2 at 0.03 beside W8A8 at 0.5: a log axis keeps the low-bit end readable
        _log_x(ax)
    ax.set_xlabel(f"{metric} ÷ {metric} of uniform W8A16" + (" (log scale)" if wide else ""))
    ax.set_ylabel(f"quality on the {rows[0]['report_split'] if rows else ''} split (IQM, 95 % CI)")
    ax.set_title(title or (rows[0]["env"] if rows else ""))
    return _finish(fig, ax, path)


def sample_efficiency_plot(panels: dict[str, list[dict[str, str]]], path: Path) -> Path:
    """Quality against the exact evaluations a search used (its own plus the surrogate's calibration points),
    one panel per problem (e.g. task @ budget), every run faint and each policy's IQM marked."""
    plt = _pyplot()
    n = len(panels)
    cols = min(3, max(n, 1))
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.6 * cols, 3.6 * ((n + cols - 1) // cols)),
                             squeeze=False)
    policies = sorted({r["policy"] for rows in panels.values() for r in rows})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (name, rows) in zip(axes.flat, panels.items()):
        for i, policy in enumerate(policies):
            mine = [r for r in rows if r["policy"] == policy]
            if not mine:
                continue
            used = np.array([int(r["exact_evaluations"]) + int(r["surrogate_evaluations"]) for r in mine])
            quality = np.array([float(r["quality"]) for r in mine])
            colour = colours[i % len(colours)]
            ax.scatter(used, quality, s=12, alpha=0.3, color=colour)
            ax.scatter([np.median(used)], [iqm(quality)], marker=MARKERS[i % len(MARKERS)], s=60, color=colour,
                       edgecolor="black", label=policy)
        if rows:
            ax.axhline(float(rows[0]["fp32_quality"]), color="gray", linestyle="--", linewidth=0.8)
        _log_x(ax)  # every search spends >= 1 (its answer is scored on the search split)
        ax.margins(x=0.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("exact evaluations (search + surrogate calibration)", fontsize=8)
        ax.set_ylabel("test quality", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def profile_plot(profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], path: Path,
                 xlabel: str = "normalized score τ") -> Path:
    """Performance profiles (rliable's score distributions): per name (taus, fraction > tau, low, high)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (taus, point, low, high) in profiles.items():
        line, = ax.plot(taus, point, label=name)
        ax.fill_between(taus, low, high, alpha=0.2, color=line.get_color())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    return _finish(fig, ax, path)


def write_report(results: Path, title: str = "") -> dict[str, Path]:
    """Write ``summary.json``, ``results.md`` and ``pareto.png`` beside ``results.csv``."""
    rows = read_results(results)
    summary = aggregate(rows)
    out = results.parent
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "results.md").write_text(markdown(summary))
    references = json.loads((out / "reference.json").read_text()) if (out / "reference.json").exists() else None
    plot = pareto_plot(rows, out / "pareto.png", title, references)
    return {"summary": out / "summary.json", "table": out / "results.md", "plot": plot}
