"""``gym.make(ID, workers=N)``: phase 1 and the surrogate's calibration on local worker processes give the
serial results, start no process when nothing is left to compute, and bad values are refused."""
import os
import shutil

import gymnasium as gym
import numpy as np
import pytest

import mpq_gym  # noqa: F401  (registers the ids)
from mpq_gym.envs.env import split_env_kwargs
from mpq_gym.errors import ConfigError
from mpq_gym.evaluate.sensitivity import pool_chunks
from mpq_gym.problem import ProblemSpec
from mpq_gym.workers import ProcessPool

ENV = "MixedPrecision-DigitsCNN-v0"
KWARGS = {"candidates": "W2A8,W3A8,W4A8,W8A8", "tabular": False, "surrogate_points": 6}


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    """A copy of the session cache without phase-1 tables or stored results (the trained DigitsCNN and the
    decoded data kept), so each problem computes its own."""
    def use(name):
        path = tmp_path / name
        shutil.copytree(os.environ["MPQ_GYM_CACHE"], path,
                        ignore=shutil.ignore_patterns("evaluations.sqlite*", "sensitivity"))
        monkeypatch.setenv("MPQ_GYM_CACHE", str(path))
        return path
    return use


def _problem(**kwargs):
    env = gym.make(ENV, **KWARGS, **kwargs)  # phase 1
    env.reset(seed=0)
    problem = env.unwrapped.problem
    problem.surrogate  # noqa: B018  (its calibration points: the first episode's reward needs them)
    return problem


def test_workers_give_the_serial_phase1_and_surrogate(fresh_cache):
    fresh_cache("serial")
    serial = _problem()
    fresh_cache("workers")
    parallel = _problem(workers=2)
    assert parallel.pool is None  # the processes are stopped once the work is done
    # the driver may run on more torch threads than a worker (one): sums in another order
    np.testing.assert_allclose(parallel.sensitivity.sqnr_db, serial.sensitivity.sqnr_db, rtol=0, atol=1e-3)
    np.testing.assert_allclose(parallel.surrogate.predict(parallel.surrogate_calibration_choices()),
                               serial.surrogate.predict(serial.surrogate_calibration_choices()), atol=1e-3)
    assert parallel.exact_evaluations >= KWARGS["surrogate_points"] - 1  # counted though computed by workers


def test_nothing_left_to_compute_starts_no_worker(fresh_cache, monkeypatch):
    fresh_cache("warm")
    _problem()  # fills the cache and the result store

    def refuse(*args, **kwargs):
        raise AssertionError("a worker pool was started for cached work")

    monkeypatch.setattr(ProcessPool, "qualities", refuse)
    monkeypatch.setattr(ProcessPool, "sensitivity_rows", refuse)
    problem = _problem(workers=2)
    assert problem.exact_evaluations == 0


def test_pool_chunks_cover_every_group_once_longest_first():
    chunks = pool_chunks(list(range(3, 40)), workers=2)
    assert len(chunks) == 4 and [g for c in chunks for g in c] == list(range(3, 40))
    assert pool_chunks([5], workers=4) == [[5]]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_workers_are_refused_naming_the_fix(bad):
    with pytest.raises(ConfigError, match="workers=.*whole number >= 1"):
        ProblemSpec(workers=bad)


def test_workers_need_a_workload_name(digits):
    with pytest.raises(ConfigError, match="workload='<name>' or workers=1"):
        ProblemSpec(workload=digits, workers=2)


def _dies():
    os._exit(3)  # a worker that cannot start (e.g. an unguarded script re-imported by spawn, or out of memory)


def test_a_worker_that_dies_is_one_error_naming_the_fix():
    with ProcessPool(_dies, 1) as pool, pytest.raises(ConfigError, match='if __name__ == "__main__"'):
        pool.qualities([[0, 0, 0, 0]], "search")


def test_fitted_quantizers_are_saved_so_workers_load_them(fresh_cache):
    fresh_cache("fit")
    spec = split_env_kwargs(ENV, KWARGS)[0]
    problem = spec.build()
    qmodel = problem.evaluator.qmodel
    qmodel.fit_quantizers(qmodel.layer_names, problem.candidates)
    copy = spec.build().evaluator.qmodel  # what a worker builds: it loads the saved quantizers
    assert copy is not qmodel
    saved = copy._cache_path.stat().st_mtime_ns
    for c in problem.candidates:
        copy.set_config({n: c for n in copy.layer_names})
    assert copy._cache_path.stat().st_mtime_ns == saved  # nothing was left to fit (and save)
