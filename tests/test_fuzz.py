"""Fuzzing with hypothesis: the bench command line and the env's action space.

Command lines: exit status is 0 or 2, stderr never holds a traceback, and a run that exits 0 wrote every
cell it was asked for (no cell is ever dropped silently). Actions: ``step`` either accepts an action of
the action space or raises :class:`ActionError`, nothing else.
"""
from __future__ import annotations

import csv
import itertools

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mpq_gym  # noqa: F401
from mpq_gym.cli.common import run_cli
from mpq_gym.cli.main import main
from mpq_gym.errors import ActionError

ENV = "MixedPrecision-DigitsCNN-v0"
NUMBERS = st.sampled_from(["0", "-1", "0.5", "0.3", "1e-9", "nan", "inf", "abc", "", "2", "1.5", "0.4,0.5", "0.5,,"])
KWARGS = st.lists(st.sampled_from([
    "budget=0.5", "budget=-1", "budget=nan", "budget=abc", "budget=1e-12", "enforcement=wall", "enforcement=mask",
    "reward_mode=exact", "reward_mode=x", "candidates=W4A8,W8A8", "candidates=W9A9", "foo=1", "novalue",
    "sensitivity_images=64", "sensitivity_images=0", "weight_rounding=x", "tied=residual", "tied=3",
    "budget_metric=size_bits", "budget_metric=watts", "penalty_coef=-2", "continuous=true", "surrogate_points=0",
]), max_size=3)


@pytest.fixture(scope="module")
def out_root(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budgets=NUMBERS, seeds=NUMBERS, evals=st.one_of(st.none(), NUMBERS),
       policies=st.sampled_from(["uniform", "ilp", "uniform,random", "nope", "", "os:system", "uniform,,ilp"]),
       split=st.sampled_from(["test", "search", "train", ""]), kwargs=KWARGS)
def test_bench_command_line(out_root, capsys, budgets, seeds, evals, policies, split, kwargs):
    out = out_root / f"run{next(_counter)}"
    argv = ["bench", "--env", ENV, "--budgets", budgets, "--seeds", seeds, "--policies", policies,
            "--report-split", split, "--out", str(out), "--quiet", "--env-kwargs", "sensitivity_images=64", *kwargs]
    if evals is not None:
        argv += ["--max-evaluations", evals]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code in (0, 2), err
    assert "Traceback" not in err
    if exit_info.value.code == 0:
        with (out / "results.csv").open() as f:
            rows = list(csv.DictReader(f))
        n_budgets = len(budgets.split(","))
        stochastic = sum(p == "random" for p in policies.split(","))
        expected = n_budgets * (len(policies.split(",")) - stochastic + stochastic * int(seeds))
        assert len(rows) == expected


_counter = itertools.count()


@pytest.fixture(scope="module", params=[False, True], ids=["discrete", "continuous"])
def env(request):
    kwargs = {"sensitivity_images": 64}
    env = gym.make("MixedPrecisionContinuous-DigitsCNN-v0" if request.param else ENV, **kwargs).unwrapped
    return env


ACTIONS = st.one_of(
    st.integers(-5, 10), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3), st.none(),
    st.lists(st.integers(0, 3), max_size=3), st.booleans(),
    st.builds(lambda v: np.array([v], dtype=np.float32), st.floats(-2, 2, width=32)),
    st.builds(np.int64, st.integers(-2, 5)),
)


def acceptable(env, action) -> bool:
    """Whether ``action`` is one action of ``env``'s space (one integer in range, or one value in [-1, 1])."""
    array = np.asarray(action)
    if array.size != 1 or array.dtype.kind not in ("iuf" if env.continuous else "iu"):
        return False
    value = float(array.reshape(-1)[0])
    if env.continuous:
        return bool(np.isfinite(value)) and -1.0 - 1e-6 <= value <= 1.0 + 1e-6
    return 0 <= value < env.n_candidates


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=ACTIONS)
def test_env_actions(env, action):
    env.reset(seed=0)
    try:
        env.step(action)
    except ActionError:
        assert not acceptable(env, action)
    else:
        assert acceptable(env, action)
