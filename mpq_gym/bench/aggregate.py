"""Aggregates of benchmark runs, with rliable's definitions (Agarwal et al., 2021, "Deep RL at the Edge of the
Statistical Precipice").

One task: the IQM (mean of the middle 50 % of runs, ``scipy.stats.trim_mean(x, 0.25)``) with a percentile
bootstrap interval (:func:`iqm_interval`).

Across tasks, ``scores`` is one array of run scores per task (here a task is a (suite task, budget) pair):

* IQM: the 25 %-trimmed mean of all runs of all tasks pooled (rliable ``metrics.aggregate_iqm``);
* stratified bootstrap: each replicate resamples, with replacement, the runs *within* each task
  (rliable ``StratifiedBootstrap`` with ``task_bootstrap=False``), percentile interval;
* performance profile: the score distribution, the fraction of runs with a score above tau, averaged over
  tasks (rliable ``create_performance_profile`` with ``use_score_distribution=True``);
* probability of improvement P(X > Y): per task the Mann-Whitney U of X over Y divided by m n (a tie counts
  1/2), averaged over tasks, with X and Y resampled independently within each task for its interval
  (rliable ``probability_of_improvement`` and ``StratifiedIndependentBootstrap``).

When the ``rliable`` package is importable (``pip install 'mpq-gym[bench]'``) and every task has the same
number of runs, rliable computes them (:func:`backend` says which); otherwise this module's numpy code does.
Point estimates agree exactly; intervals agree up to Monte Carlo noise (both draw ``RESAMPLES`` replicates).
A deterministic policy (one run per task) gets an interval of zero width: the bootstrap is over runs.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import bootstrap, trim_mean

#: bootstrap replicates of the across-task intervals
RESAMPLES = 2000
Scores = Sequence[np.ndarray]


def iqm(values: np.ndarray) -> float:
    """Interquartile mean."""
    return float(trim_mean(np.asarray(values, dtype=np.float64), 0.25))


def iqm_interval(values: np.ndarray, confidence: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """(IQM, low, high) of one task's runs; the interval collapses to the value for fewer than 2 distinct runs."""
    values = np.asarray(values, dtype=np.float64)
    point = iqm(values)
    if len(values) < 2 or np.ptp(values) == 0:
        return point, point, point
    result = bootstrap((values,), lambda x, axis: trim_mean(x, 0.25, axis=axis), confidence_level=confidence,
                       n_resamples=resamples, method="percentile", rng=np.random.default_rng(seed))
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile interval."""

    point: float
    low: float
    high: float


def backend() -> str:
    """"rliable" when the rliable package is importable, else "numpy"."""
    return "rliable" if importlib.util.find_spec("rliable") is not None else "numpy"


def _tasks(scores: Scores) -> list[np.ndarray]:
    tasks = [np.asarray(s, dtype=np.float64).ravel() for s in scores]
    if not tasks or any(len(t) == 0 for t in tasks):
        raise ValueError("every task needs at least one run")
    return tasks


def _rectangular(*groups: list[np.ndarray]) -> bool:
    return all(len({len(t) for t in g}) == 1 for g in groups)


def _resample(tasks: list[np.ndarray], reps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """[reps, n_m] resamples of each task's runs (within-task, with replacement)."""
    return [t[rng.integers(0, len(t), size=(reps, len(t)))] for t in tasks]


def _percentiles(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = 100 * (1 - confidence) / 2
    return np.percentile(replicates, alpha, axis=0), np.percentile(replicates, 100 - alpha, axis=0)


# ---------------------------------------------------------------- statistics on [reps, n_m] batches
def _batch_iqm(batches: list[np.ndarray]) -> np.ndarray:
    return trim_mean(np.concatenate(batches, axis=1), 0.25, axis=1)


def _batch_profile(batches: list[np.ndarray], taus: np.ndarray) -> np.ndarray:
    return np.mean([np.mean(b[:, :, None] > taus, axis=1) for b in batches], axis=0)


def _batch_poi(xs: list[np.ndarray], ys: list[np.ndarray]) -> np.ndarray:
    per_task = [np.mean((x[:, :, None] > y[:, None, :]) + 0.5 * (x[:, :, None] == y[:, None, :]), axis=(1, 2))
                for x, y in zip(xs, ys)]
    return np.mean(per_task, axis=0)


def _numpy_interval(statistic: Callable[..., np.ndarray], groups: list[list[np.ndarray]], reps: int,
                    confidence: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point, low, high) of ``statistic`` with each group stratified-resampled independently."""
    point = statistic(*[[t[None, :] for t in g] for g in groups])[0]
    rng = np.random.default_rng(seed)
    low, high = _percentiles(statistic(*[_resample(g, reps, rng) for g in groups]), confidence)
    return point, low, high


def _rliable_interval(func: Callable[..., Any], groups: list[list[np.ndarray]], reps: int, confidence: float,
                      seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same with rliable's ``get_interval_estimates`` on (runs x tasks) matrices (its bootstrap draws from
    numpy's global generator, seeded here and restored after)."""
    from rliable import library

    matrices = [np.stack(g, axis=1) for g in groups]
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        data = {"x": matrices[0] if len(matrices) == 1 else matrices}
        points, intervals = library.get_interval_estimates(data, func, reps=reps,
                                                           confidence_interval_size=confidence)
    finally:
        np.random.set_state(state)
    return np.asarray(points["x"]), np.asarray(intervals["x"][0]), np.asarray(intervals["x"][1])


def _interval(numpy_statistic: Callable[..., np.ndarray], rliable_func: Callable[..., Any] | None,
              groups: list[list[np.ndarray]], reps: int, confidence: float, seed: int):
    if rliable_func is not None and backend() == "rliable" and _rectangular(*groups):
        return _rliable_interval(rliable_func, groups, reps, confidence, seed)
    return _numpy_interval(numpy_statistic, groups, reps, confidence, seed)


def _as_interval(values: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Interval:
    return Interval(*(float(np.asarray(v).ravel()[0]) for v in values))


# ---------------------------------------------------------------- the aggregates
def aggregate_iqm(scores: Scores, reps: int = RESAMPLES, confidence: float = 0.95, seed: int = 0) -> Interval:
    """IQM of every run of every task pooled, with its stratified-bootstrap interval."""
    tasks = _tasks(scores)

    def rliable_iqm(matrix: np.ndarray) -> np.ndarray:
        from rliable import metrics
        return np.array([metrics.aggregate_iqm(matrix)])

    return _as_interval(_interval(lambda b: _batch_iqm(b)[:, None], rliable_iqm, [tasks], reps, confidence, seed))


def probability_of_improvement(x: Scores, y: Scores, reps: int = RESAMPLES, confidence: float = 0.95,
                               seed: int = 0) -> Interval:
    """P(X > Y): average over tasks of P(a run of X beats a run of Y) (ties 1/2), with its interval."""
    xs, ys = _tasks(x), _tasks(y)
    if len(xs) != len(ys):
        raise ValueError(f"X has {len(xs)} tasks and Y {len(ys)}: compare them on the same tasks")

    def rliable_poi(mx: np.ndarray, my: np.ndarray) -> np.ndarray:
        from rliable import metrics
        return np.array([metrics.probability_of_improvement(mx, my)])

    return _as_interval(_interval(lambda a, b: _batch_poi(a, b)[:, None], rliable_poi, [xs, ys], reps, confidence,
                                  seed))


def performance_profile(scores: Scores, taus: np.ndarray, reps: int = RESAMPLES, confidence: float = 0.95,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fraction of runs with score > tau, low, high) for each tau: the score distribution."""
    tasks, taus = _tasks(scores), np.asarray(taus, dtype=np.float64)

    def rliable_profile(matrix: np.ndarray) -> np.ndarray:
        from rliable import library
        return library.score_distributions(matrix, taus)

    point, low, high = _interval(lambda b: _batch_profile(b, taus), rliable_profile, [tasks], reps, confidence, seed)
    return np.asarray(point, dtype=np.float64), np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
