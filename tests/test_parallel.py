"""Ray: parallel evaluation gives the serial results (fresh caches, so nothing is shared by memo)."""
import os
import shutil
from functools import partial

import numpy as np
import pytest

from mpq_gym.baselines import evolutionary_search, random_search
from mpq_gym.bench import BenchSpec, run_benchmark
from mpq_gym.bench.runner import read_results
from mpq_gym.budget import Budget
from mpq_gym.envs.env import problem_from_env
from mpq_gym.bench.parallel import RayPool
from mpq_gym.search import EvaluationBudgetExhausted, SearchContext

ENV = "MixedPrecision-DigitsCNN-v0"
KWARGS = {"candidates": "W2A8,W3A8,W4A8,W8A8"}
IGNORED = ("wall_s", "provenance")  # provenance: the date and the process that ran the row


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local Ray instance for the module (its start-up is the slow part); pools add their own actors."""
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """Model, quantization and phase-1 caches built once (the session cache), without its result store."""
    problem_from_env(ENV, KWARGS)
    base = tmp_path_factory.mktemp("warm")
    shutil.copytree(os.environ["MPQ_GYM_CACHE"], base, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("evaluations.sqlite*"))
    return base


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch, warm_cache):
    """A copy of the warm cache with an empty result store, so no run can read another's evaluations."""
    def use(name):
        path = tmp_path / name
        shutil.copytree(warm_cache, path)
        monkeypatch.setenv("MPQ_GYM_CACHE", str(path))
        return path
    return use


def _rows(path):
    return sorted(tuple((k, v) for k, v in r.items() if k not in IGNORED) for r in read_results(path))


def test_ray_benchmark_equals_serial(tmp_path, fresh_cache):
    spec = BenchSpec(ENV, KWARGS, ["random", "evolution", "ilp"], [0.2, 0.3], seeds=2, max_evaluations=4)
    fresh_cache("serial")
    serial = run_benchmark(spec, tmp_path / "serial_out", progress=False)
    fresh_cache("ray")
    parallel = run_benchmark(spec, tmp_path / "ray_out", progress=False, ray="", workers=2)
    assert _rows(serial) == _rows(parallel) and len(_rows(serial)) == 2 * (2 + 2 + 1)


def test_pool_fills_phase1_and_evaluates_populations_like_serial(fresh_cache):
    fresh_cache("serial")
    problem = problem_from_env(ENV, KWARGS)
    table = problem.sensitivity.sqnr_db
    serial = [SearchContext(problem, Budget("bops", 0.3), max_evaluations=6) for _ in range(2)]
    expected = [random_search(serial[0], 1), evolutionary_search(serial[1], 1, fitness="exact", population=6,
                                                                  generations=3)]
    fresh_cache("pool")
    problem = problem_from_env(ENV, KWARGS)
    with RayPool(partial(problem_from_env, ENV, KWARGS), workers=2) as pool:
        problem.pool = pool
        np.testing.assert_allclose(problem.sensitivity.sqnr_db, table, rtol=0, atol=1e-3)  # one vs two threads
        pooled = [SearchContext(problem, Budget("bops", 0.3), max_evaluations=6, pool=pool) for _ in range(2)]
        got = [random_search(pooled[0], 1), evolutionary_search(pooled[1], 1, fitness="exact", population=6,
                                                               generations=3)]
        assert all(np.array_equal(a, b) for a, b in zip(expected, got))
        assert [c.evaluated for c in pooled] == [c.evaluated for c in serial]
        with pytest.raises(EvaluationBudgetExhausted):
            pooled[0].qualities([[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]])
