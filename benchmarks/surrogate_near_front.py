"""Surrogate fidelity near the front, from the ground-truth tables (issue 17).

For every budget slice of a table: Kendall τ of each surrogate's prediction against the exact search-split
metric and against the exact output SQNR (label-free, no sampling noise of a 256-image top-1), the mean
absolute error in metric units, and the regret (the slice's best exact quality minus that of the
surrogate's pick) on the search and the test split. The *noise ceiling* is τ between the exact search and
test metrics of the same rows: no predictor of the search metric can rank the slice much better than two
independent draws of images agree with each other. Surrogates:

- ``additive``: phase-1 noise powers summed (today's reward, the ILP's objective);
- ``pairwise``: plus the measured adjacent-pair interactions (:mod:`mpq_gym.evaluate.interactions`);
- ``learned``: a ridge regression of the exact SQNR on the additive and pairwise predictions and the noise
  per depth quarter, fitted on the *other* slices of the table (leave-one-slice-out), so every number is
  on configurations it never saw.

All three go through the same SQNR -> metric map (the table's calibrated logistic fit). Also the headroom:
best exact test quality in the slice minus the ILP's, with a paired bootstrap CI over test images.

    python -m benchmarks.surrogate_near_front --task lite0-hardware --table /work/gt/lite0-hardware.csv.gz
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from benchmarks.common import peak_rss_gb, print_report
from mpq_gym.bench.cells import make_problem
from mpq_gym.bench.groundtruth import fidelity_report, get_task
from mpq_gym.evaluate.groundtruth import GroundTruthTable, leave_one_slice_out_sqnr, load_groundtruth, slice_fidelity
from mpq_gym.evaluate.interactions import compute_pairwise
from mpq_gym.evaluate.surrogate import Surrogate

MODULE = "benchmarks.surrogate_near_front"


def slice_rows(table: GroundTruthTable, predictions: dict[str, np.ndarray], sqnr: dict[str, np.ndarray]) -> list[dict]:
    """Per slice and surrogate: τ vs metric and vs SQNR, MAE, regret on search and test, noise ceiling."""
    metric = table.primary_metric
    budgets, search, test = table.column("budget"), table.column(f"search_{metric}"), table.column(f"test_{metric}")
    exact_sqnr = table.column("search_sqnr_db")
    rows = []
    for b in np.unique(budgets):
        m = np.isclose(budgets, b)
        ceiling = float(kendalltau(search[m], test[m]).statistic)
        for name, pred in predictions.items():
            fid = slice_fidelity(float(b), pred[m], search[m])
            rows.append({"budget": float(b), "surrogate": name, "rows": fid.rows, "tau_metric": fid.kendall_tau,
                         "tau_sqnr": slice_fidelity(float(b), sqnr[name][m], exact_sqnr[m]).kendall_tau,
                         "mae": fid.mae, "regret_search": fid.regret,
                         "regret_test": slice_fidelity(float(b), pred[m], test[m]).regret,
                         "noise_ceiling_tau": ceiling})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--no-pairwise", action="store_true", help="skip measuring the pairwise terms")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    table = load_groundtruth(args.table)
    surrogates = {"additive": table.surrogate()}
    single, fit = surrogates["additive"].table, surrogates["additive"].metric_fit
    pairwise_seconds = None
    if not args.no_pairwise:
        task = get_task(args.task)
        problem, _ = make_problem(task.env_id, task.env_kwargs, progress=True)
        start = time.perf_counter()
        pw = compute_pairwise(problem.evaluator.qmodel, problem.sensitivity_inputs(), problem.groups,
                              problem.candidates, cache_key=problem.workload.fingerprint(),
                              batch_size=problem.workload.batch_size)
        pairwise_seconds = time.perf_counter() - start
        surrogates["pairwise"] = Surrogate(single, fit, pw.pairs, pw.interactions(problem.sensitivity))
    choices = table.choices()
    sqnr = {name: s.predicted_sqnr(choices) for name, s in surrogates.items()}
    sqnr["learned"] = leave_one_slice_out_sqnr(table, list(surrogates.values()))
    predictions = {name: fit(value) for name, value in sqnr.items()}
    rows = slice_rows(table, predictions, sqnr)
    start = time.perf_counter()
    for _ in range(10):
        surrogates[list(surrogates)[-1]].predict(np.tile(choices, (10, 1)))
    per_config_ms = (time.perf_counter() - start) / (10 * 10 * len(choices)) * 1e3
    print_report(f"Surrogate fidelity near the front: {args.task} ({len(table.rows)} configurations)",
                 ["budget", "surrogate", "rows", "τ vs metric", "τ vs SQNR", "MAE", "regret search", "regret test",
                  "noise ceiling τ"],
                 [[r["budget"], r["surrogate"], r["rows"], f"{r['tau_metric']:.3f}", f"{r['tau_sqnr']:.3f}",
                   f"{r['mae']:.3f}", f"{r['regret_search']:.3f}", f"{r['regret_test']:.3f}",
                   f"{r['noise_ceiling_tau']:.3f}"] for r in rows], started, MODULE, argv)
    print(f"prediction: {per_config_ms:.5f} ms per configuration, batched ({list(surrogates)[-1]})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"task": args.task, "rows": rows, "headroom": fidelity_report(table),
                                        "pairwise_seconds": pairwise_seconds, "ms_per_config": per_config_ms,
                                        "peak_rss_gb": peak_rss_gb()}, indent=1))


if __name__ == "__main__":
    main()
