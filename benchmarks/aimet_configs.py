"""mpq-gym's searches at given BOPs budgets, written as configurations the AIMET parity harness evaluates.

    python -m benchmarks.aimet_configs --candidates W4A8,W8A8 --budgets 0.5 0.44 0.4 0.375 0.34 \
        --out docs/data/aimet_configs_a8.json
    python -m benchmarks.aimet_configs --candidates hardware --budgets 0.439 0.398 0.365 0.343 \
        --bops-scale 0.9603 --select-on search --out docs/data/aimet_configs_amp.json

Each policy (ILP, greedy by SQNR, greedy by SQNR per BOPs saved) searches EfficientNet-Lite0 with
mpq-gym's default quantizer, phase 1 on ``--sensitivity-images`` calibration images (AIMET's AMP used
128). ``--bops-scale`` converts the budgets from AIMET's BOPs accounting to mpq-gym's (the issue 19
configuration is r = 0.378 in AIMET's accounting and 0.363 in mpq-gym's: scale 0.363 / 0.378 = 0.9603),
so an mpq-gym answer is not given a larger budget than AIMET had. With ``--select-on search`` each
budget also gets ``best@r``: the policy whose answer scores highest on the search split (exact, the
split the searches may see), which is mpq-gym's "best policy" without looking at the reported images.

The output JSON maps ``policy@r`` to ``{"w": [weight bits per layer], "a": [input bits per layer],
"bops_ratio": mpq-gym's BOPs ratio, "search_top1": ...}``, layers in the quantized model's layer order
(execution order; the harness checks the shapes against AIMET's).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from baselines.greedy_sqnr import greedy_sqnr_search
from baselines.ilp import ilp_search
from benchmarks.aimet_parity_common import peak_rss_mb
from mpq_gym.budget import Budget
from mpq_gym.problem import ProblemSpec
from mpq_gym.search import SearchContext

POLICIES = {
    "ilp": ilp_search,
    "greedy": lambda ctx, seed: greedy_sqnr_search(ctx, seed),
    "greedy_per_cost": lambda ctx, seed: greedy_sqnr_search(ctx, seed, order="sqnr_per_cost"),
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", default="W4A8,W8A8")
    ap.add_argument("--budgets", nargs="+", type=float, required=True, help="BOPs ratios (of uniform W8A16)")
    ap.add_argument("--bops-scale", type=float, default=1.0, help="mpq-gym budget = budget x this")
    ap.add_argument("--sensitivity-images", type=int, default=128)
    ap.add_argument("--select-on", choices=["none", "search"], default="none")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    start = time.time()
    problem = ProblemSpec("efficientnet_lite0", candidates=args.candidates,
                          sensitivity_images=args.sensitivity_images).build(progress=True)
    names = problem.evaluator.qmodel.layer_names
    out: dict[str, dict] = {}
    for r in args.budgets:
        ctx = SearchContext(problem, Budget("bops", r * args.bops_scale))
        for name, policy in POLICIES.items():
            choices = policy(ctx, 0)
            config = problem.config(choices)
            entry = {"w": [config[n].w_bits for n in names], "a": [config[n].a_bits for n in names],
                     "bops_ratio": float(ctx.budget_table.total(choices) / ctx.budget_table.reference_cost)}
            if args.select_on == "search":
                entry["search_top1"] = ctx.quality(choices)
            out[f"{name}@{r:g}"] = entry
            print(f"{name}@{r:g}: {entry.get('search_top1', '')} "
                  f"{''.join(str(b) for b in entry['w'])} a={sorted(set(entry['a']))}", flush=True)
        if args.select_on == "search":
            best = max(POLICIES, key=lambda p: out[f"{p}@{r:g}"]["search_top1"])
            out[f"best@{r:g}"] = {**out[f"{best}@{r:g}"], "policy": best}
        Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wall {time.time() - start:.0f} s, peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
