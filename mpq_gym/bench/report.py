"""Summaries of a results.csv: per-cell aggregates, a markdown table and a Pareto plot (quality vs BOPs)."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from mpq_gym.bench.aggregate import iqm_interval
from mpq_gym.bench.runner import read_results
from mpq_gym.markdown import markdown_table


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


def pareto_plot(rows: list[dict[str, str]], path: Path, title: str = "") -> Path:
    """Scatter of every run's quality against its BOPs ratio, one colour per policy, FP32 as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    policies = sorted({r["policy"] for r in rows})
    markers = "osD^v<>Ph*X"
    for i, policy in enumerate(policies):
        mine = [r for r in rows if r["policy"] == policy]
        ax.scatter([float(r["bops_ratio"]) for r in mine], [float(r["quality"]) for r in mine],
                   label=policy, marker=markers[i % len(markers)], alpha=0.75)
    if rows:
        ax.axhline(float(rows[0]["fp32_quality"]), color="gray", linestyle="--", label="FP32")
        for budget in sorted({float(r["budget"]) for r in rows}):
            ax.axvline(budget, color="lightgray", linewidth=0.8)
    ax.set_xlabel("BOPs ÷ BOPs of uniform W8A16")
    ax.set_ylabel(f"quality on the {rows[0]['report_split'] if rows else ''} split")
    ax.set_title(title or (rows[0]["env"] if rows else ""))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(results: Path) -> dict[str, Path]:
    """Write ``summary.json``, ``results.md`` and ``pareto.png`` beside ``results.csv``."""
    rows = read_results(results)
    summary = aggregate(rows)
    out = results.parent
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "results.md").write_text(markdown(summary))
    return {"summary": out / "summary.json", "table": out / "results.md", "plot": pareto_plot(rows, out / "pareto.png")}
