import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

import mpq_gym.evaluate.sensitivity as sensitivity_module
from mpq_gym.candidates import make_groups, parse_candidates
from mpq_gym.config import Candidate
from mpq_gym.errors import ConfigError
from mpq_gym.metrics import sqnr_db
from mpq_gym.evaluate.sensitivity import compute_sensitivity
from mpq_gym.quant.stages import StageChain
from mpq_gym.problem import Problem, graded_random_choices
from mpq_gym.quant.graph import quantizable_layers
from mpq_gym.workloads import get_workload


@pytest.fixture(scope="module")
def problem(digits):
    return Problem(digits, "W2A8,W3A4,W4A4,W8A8", sensitivity_images=128, surrogate_points=10, progress=False)


def test_candidate_sets_and_groups():
    assert [str(c) for c in parse_candidates("hardware")] == ["W4A8", "W8A8", "W8A16"]
    assert len(parse_candidates("expanded")) == 8
    with pytest.raises(ConfigError, match="repeats"):
        parse_candidates("W8A8,W8A8")
    groups = make_groups(["a", "b", "c", "d"], tied=[["d", "b"]])
    assert [(g.name, g.layers) for g in groups] == [("a", ("a",)), ("b", ("b", "d")), ("c", ("c",))]
    with pytest.raises(ConfigError, match="unknown layer"):
        make_groups(["a"], tied=[["zz"]])
    with pytest.raises(ConfigError, match="two tied groups"):
        make_groups(["a", "b", "c"], tied=[["a", "b"], ["b", "c"]])


def test_tied_layers_always_share_a_choice(digits):
    names = [l.name for l in Problem(digits, "hardware", progress=False).layers]
    problem = Problem(digits, "hardware", tied=[[names[0], names[2]]], progress=False)
    assert len(problem.groups) == len(names) - 1
    config = problem.config([0, 1, 2])
    assert config[names[0]] == config[names[2]] == Candidate(4, 8)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_networks_decompose_into_a_verified_chain(name):
    workload = get_workload(name, random_weights=True)
    stages = StageChain.build(workload.model.eval(), workload.example_input()).stages
    assert len(stages) > 5 and stages[0][0] != ""


def test_non_chain_models_are_cut_from_their_fx_graph():
    workload = get_workload("mobilenet_v2", random_weights=True)  # pools functionally: no top-level chain
    chain = StageChain.build(workload.model.eval(), workload.example_input())
    assert chain.method == "fx" and len(chain) > 5 and chain.names[0] != ""
    # untraceable models (data-dependent control flow) still fall back: tests/test_stages.py


def test_sensitivity_matches_full_network_evaluation(problem):
    """Suffix-only re-runs must give exactly what quantizing one group in the whole network gives."""
    table = problem.sensitivity
    assert table.sqnr_db.shape == (4, 4) and np.isfinite(table.sqnr_db).all()
    inputs = next(problem.workload.split("calibration").batches(128))[0]
    qm = problem.evaluator.qmodel
    fp32 = problem.uniform(Candidate(32, 32))
    with torch.no_grad():
        qm.set_config(fp32)
        reference = qm(inputs)
        for g, group in enumerate(problem.groups):
            qm.set_config({**fp32, group.layers[0]: problem.candidates[0]})
            assert sqnr_db(qm(inputs), reference) == pytest.approx(table.sqnr_db[g, 0], abs=1e-3)
    assert (table.sqnr_db[:, -1] > table.sqnr_db[:, 0]).all()  # W8A8 beats W2A8 everywhere


def test_interrupted_sensitivity_resumes(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("MPQ_GYM_CACHE", str(tmp_path))
    problem = Problem(digits, "W4A4,W8A8", progress=False)
    inputs = next(digits.split("calibration").batches(64))[0]
    args = (problem.evaluator.qmodel, inputs, problem.groups, problem.candidates)
    real = sensitivity_module.sqnr_db
    calls = []

    def crash_after_five(*a):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real(*a)
    monkeypatch.setattr(sensitivity_module, "sqnr_db", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        compute_sensitivity(*args, cache_key="resume-test", progress=False)
    monkeypatch.setattr(sensitivity_module, "sqnr_db", lambda *a: calls.append(1) or real(*a))
    calls.clear()
    resumed = compute_sensitivity(*args, cache_key="resume-test", progress=False)
    assert len(calls) == 2 * len(problem.groups) - 4  # two rows were saved before the crash
    fresh = compute_sensitivity(*args, cache_key=None, progress=False)
    assert np.allclose(resumed.sqnr_db, fresh.sqnr_db)


def test_surrogate_ranks_configurations_like_exact_evaluation(problem):
    surrogate = problem.surrogate
    choices = graded_random_choices(np.random.default_rng(1), 30, len(problem.groups), len(problem.candidates))
    predicted = surrogate.predict(choices)
    exact_sqnr = np.array([problem.evaluate(problem.config(c))["sqnr_db"] for c in choices])
    tau, _ = kendalltau(surrogate.predicted_sqnr(choices), exact_sqnr)
    assert tau > 0.6
    assert predicted.shape == (30,) and (predicted <= problem.fp32_quality + 1e-6).all()


def test_surrogate_is_monotone_and_batched(problem):
    surrogate = problem.surrogate
    sqnr = np.linspace(-10, 60, 50)
    values = surrogate.metric_fit(sqnr)
    assert (np.diff(values) >= 0).all()
    with pytest.raises(ValueError, match="choices per configuration"):
        surrogate.predicted_sqnr(np.zeros((2, 7), dtype=int))


def test_residual_adds_tie_their_producers():
    from mpq_gym.quant.residual import residual_groups
    groups = residual_groups(get_workload("resnet50", random_weights=True).model)
    assert [len(g) for g in groups] == [4, 5, 7, 4]  # per stage: the blocks' conv3 + the downsample conv
    assert ["layer1.0.conv3", "layer1.0.downsample.0", "layer1.1.conv3", "layer1.2.conv3"] in groups
    assert residual_groups(get_workload("digits_cnn").model) == []
    resnet = get_workload("resnet50", random_weights=True)
    names = [l.name for l in quantizable_layers(resnet.model, resnet.example_input())]
    assert len(make_groups(names, groups)) == 38


def test_residual_tying_in_a_problem(digits):
    problem = Problem(digits, "hardware", tied="residual", progress=False)
    assert len(problem.groups) == 4  # no residual adds in DigitsCNN
