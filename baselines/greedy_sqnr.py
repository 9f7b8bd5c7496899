"""Greedy SQNR search, the AIMET post-training mixed-precision algorithm.

Phase 1 (shared, :attr:`Problem.sensitivity`): output SQNR of every (group, candidate) alone.
Phase 2: start with every group at its widest candidate and list every cheaper (group, candidate)
flip, most harmless first (highest SQNR). Applying the flips cumulatively traces a path of
configurations of falling cost and (roughly) falling quality.
Phase 3: pick a point on the path:
- budget target: the first (least quantized) configuration within the cost budget; no exact
  evaluation is needed to choose it;
- accuracy target: the cheapest configuration whose exact quality still meets the target, found with
  ``sequential``, ``binary`` or ``binary+interpolation`` search along the path (quality is assumed
  monotone along it, as AIMET does).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mpq_gym.search import SearchContext, choices_key
from mpq_gym.metrics import noise_power

FLIP_ORDERS = ("sqnr", "sqnr_per_cost")
SEARCH_METHODS = ("sequential", "binary", "binary+interpolation")


def flip_path(sqnr_db: np.ndarray, cost: np.ndarray, order: str = "sqnr") -> np.ndarray:
    """Configurations [K + 1, G] after 0..K cumulative flips, from all-widest to cheapest.

    ``order="sqnr"`` applies flips by descending SQNR (AIMET); ``"sqnr_per_cost"`` by the fewest dB of
    noise above the start per unit of cost saved.
    """
    if order not in FLIP_ORDERS:
        raise ValueError(f"order must be one of {FLIP_ORDERS}, got {order!r}")
    groups = np.arange(cost.shape[0])
    # widest = most expensive candidate; among equally expensive ones the most accurate
    start = np.lexsort((sqnr_db, cost), axis=-1)[:, -1]
    start_cost = cost[groups, start]
    g_idx, c_idx = np.nonzero(cost < start_cost[:, None])
    sqnr = np.where(np.isfinite(sqnr_db[g_idx, c_idx]), sqnr_db[g_idx, c_idx], 1e9)
    if order == "sqnr":
        key = -sqnr
    else:
        noise = noise_power(sqnr)
        key = noise / (start_cost[g_idx] - cost[g_idx, c_idx])
    current = start.copy()
    path = [current.copy()]
    for k in np.lexsort((c_idx, g_idx, key)):  # stable, deterministic tie-break
        g, c = g_idx[k], c_idx[k]
        if cost[g, c] < cost[g, current[g]]:
            current[g] = c
            path.append(current.copy())
    return np.stack(path)


def last_passing(n: int, passes: Callable[[int], bool], values: Callable[[int], float | None] | None = None,
                 method: str = "binary", target: float | None = None) -> int:
    """Largest k in [0, n) with ``passes(k)``, assuming passes is True up to some point then False.

    Returns -1 when even k = 0 fails. ``binary+interpolation`` guesses the crossing by interpolating
    ``values`` (``None`` where unknown) between the bracket ends toward ``target``, alternating with
    bisection so that the number of probes stays logarithmic.
    """
    if method not in SEARCH_METHODS:
        raise ValueError(f"method must be one of {SEARCH_METHODS}, got {method!r}")
    if method == "sequential":
        k = -1
        while k + 1 < n and passes(k + 1):
            k += 1
        return k
    if not passes(0):
        return -1
    lo, hi = 0, n  # passes(lo); hi is the first known failure (n = none known)
    if n > 1 and passes(n - 1):
        return n - 1
    hi = n - 1
    interpolate = method == "binary+interpolation"
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if interpolate and values is not None and target is not None:
            v_lo, v_hi = values(lo), values(hi)
            if v_lo is not None and v_hi is not None and v_lo > v_hi:
                guess = lo + int(round((v_lo - target) / (v_lo - v_hi) * (hi - lo)))
                mid = min(max(guess, lo + 1), hi - 1)
        interpolate = not interpolate if method == "binary+interpolation" else False
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return lo


def greedy_sqnr_search(ctx: SearchContext, seed: int = 0, order: str = "sqnr", accuracy_target: float | None = None,
                       accuracy_drop: float | None = None, method: str = "binary+interpolation") -> np.ndarray:
    """AIMET greedy search on ``ctx``.

    Budget-target mode by default: the first path point within the budget. With ``accuracy_target``
    (metric units) or ``accuracy_drop`` (points below FP32 on the search split): the cheapest point
    within the budget whose exact quality meets the target; when none does, the first point within the
    budget (the most accurate one the budget allows).
    """
    path = flip_path(np.asarray(ctx.sensitivity.sqnr_db, dtype=np.float64), ctx.budget_table.table, order)
    first_fit = next(k for k, p in enumerate(path) if ctx.fits(p))  # exists once the budget is feasible
    if accuracy_drop is not None:
        accuracy_target = ctx.problem.fp32_quality - accuracy_drop
    if accuracy_target is None:
        return path[first_fit]
    candidates = path[first_fit:]

    def passes(i: int) -> bool:  # once the evaluation budget is spent, unevaluated points count as failing
        affordable = bool(ctx.affordable([candidates[i]])[0])
        return affordable and ctx.quality(candidates[i]) >= accuracy_target

    def known(i: int) -> float | None:
        return ctx.evaluated.get(choices_key(candidates[i]))

    k = last_passing(len(candidates), passes, known, method, accuracy_target)
    return candidates[max(k, 0)]


def greedy_accuracy_search(ctx: SearchContext, seed: int = 0) -> np.ndarray:
    """Greedy SQNR search for the cheapest configuration within 1 point of FP32 (binary+interpolation)."""
    return greedy_sqnr_search(ctx, seed, accuracy_drop=1.0)
