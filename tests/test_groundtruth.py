"""The ground-truth table (issue 17): builder, loader, fidelity numbers, and the measured pairwise terms."""
import gzip
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mpq_gym.bench import groundtruth as gt
from mpq_gym.config import FP32
from mpq_gym.errors import InputFileError
from mpq_gym.evaluate.groundtruth import (GROUNDTRUTH_FORMAT, correct_mask, correct_mask_hex, headroom,
                                          load_groundtruth, slice_fidelity)
from mpq_gym.evaluate.interactions import compute_pairwise
from mpq_gym.metrics import sqnr_db
from mpq_gym.problem import Problem

SHIPPED = gt.default_path("digits-low")


@pytest.fixture(scope="module")
def small_task(tmp_path_factory, monkeypatch_module):
    """A digits task with few rows per slice, built into a temporary table."""
    task = replace(gt.TASKS["digits-low"], budgets=(0.08, 0.12), rows_per_slice=22)
    monkeypatch_module.setitem(gt.TASKS, "digits-small", task)
    path = tmp_path_factory.mktemp("gt") / "digits-small.csv.gz"
    gt.build_groundtruth("digits-small", path, progress=False, limit=30)
    return path


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_build_is_resumable_and_deterministic(small_task):
    partial = load_groundtruth(small_task)
    assert len(partial.rows) == 30 and partial.header["rows"] == 30
    gt.build_groundtruth("digits-small", small_task, progress=False)  # resumes: only the missing rows
    table = load_groundtruth(small_task)
    assert len(table.rows) == 44 and table.rows[:30] == partial.rows
    assert len(table.keys()) == 44  # distinct within each slice
    for budget in table.budgets:
        rows = table.slice(budget)
        sources = [r["source"] for r in rows]
        assert sources.count("ilp") == 1 and "random" in sources and any(s.startswith("swap") for s in sources)
        assert all(r["within_budget"] == "True" for r in rows)
        assert all(float(r["bops_ratio"]) <= budget + 1e-9 for r in rows)


def test_rows_are_the_evaluators_numbers(small_task, digits):
    table = load_groundtruth(small_task)
    header = table.header
    problem = Problem(digits, header["env_kwargs"]["candidates"], progress=False)
    assert header["fingerprint"] == digits.fingerprint() and header["format"] == GROUNDTRUTH_FORMAT
    row = table.rows[7]
    choices = np.array([int(c) for c in row["choices"].split()])
    config = problem.config(choices)
    for split in ("search", "test"):
        assert float(row[f"{split}_top1"]) == pytest.approx(problem.evaluate(config, split)["top1"])
    outputs = problem.evaluator.outputs(config, "test")
    correct = (outputs.argmax(1) == digits.split("test").targets).numpy()
    assert np.array_equal(correct_mask(row["test_correct"], len(correct)), correct)
    assert float(row["test_top1"]) == pytest.approx(correct.mean() * 100)


def test_loader_refuses_other_formats_and_damaged_tables(small_task, tmp_path):
    lines = gzip.decompress(small_task.read_bytes()).decode().splitlines()
    header = json.loads(lines[0][2:])

    def write(name, header_line, body):
        path = tmp_path / name
        path.write_bytes(gzip.compress(("\n".join([header_line, *body]) + "\n").encode()))
        return path

    with pytest.raises(InputFileError, match="format 99.*rebuild"):
        load_groundtruth(write("v99.csv.gz", "# " + json.dumps({**header, "format": 99}), lines[1:]))
    with pytest.raises(InputFileError, match="lacks.*command"):
        load_groundtruth(write("nokey.csv.gz", "# " + json.dumps({k: v for k, v in header.items() if k != "command"}),
                               lines[1:]))
    with pytest.raises(InputFileError, match="columns.*search_top1"):
        load_groundtruth(write("nocol.csv.gz", lines[0], [lines[1].replace("search_top1", "x"), *lines[2:]]))
    with pytest.raises(InputFileError, match="not a gzip"):
        (tmp_path / "plain.csv.gz").write_text("budget,source\n")
        load_groundtruth(tmp_path / "plain.csv.gz")
    with pytest.raises(InputFileError, match="groundtruth build"):
        load_groundtruth(tmp_path / "absent.csv.gz")


def test_resuming_into_another_tasks_table_is_refused(small_task, monkeypatch):
    monkeypatch.setitem(gt.TASKS, "digits-other", replace(gt.TASKS["digits-low"], rows_per_slice=5))
    with pytest.raises(InputFileError, match="holds task 'digits-small'"):
        gt.build_groundtruth("digits-other", small_task, progress=False)


def test_fidelity_numbers():
    predicted = np.array([1.0, 2.0, 3.0, 4.0])
    fid = slice_fidelity(0.5, predicted, np.array([10.0, 20.0, 40.0, 30.0]))
    assert fid.kendall_tau == pytest.approx(4 / 6) and fid.regret == 10.0  # picks the 30, best is 40
    assert fid.mae == pytest.approx(np.mean([9, 18, 37, 26]))
    a, b = np.array([1, 1, 0, 1] * 25, bool), np.array([1, 0, 0, 1] * 25, bool)
    point, low, high = headroom(a, b)
    assert point == pytest.approx(25.0) and low < point < high and low > 0
    assert np.array_equal(correct_mask(correct_mask_hex(a[:13]), 13), a[:13])


def test_shipped_digits_table_matches_the_code(digits):
    """The shipped table is what the builder computes: same fingerprint, same plan, a sampled row re-evaluated."""
    table = load_groundtruth(SHIPPED)
    task = gt.get_task("digits-low")
    assert table.header["fingerprint"] == digits.fingerprint()
    assert table.header["budgets"] == list(task.budgets) and len(table.rows) >= 200
    problem, _ = gt.make_problem(task.env_id, task.env_kwargs, progress=False)
    plan = gt.planned_rows(problem, task, seed=0)
    assert {(round(b, 6), gt.choices_text(c)) for b, _, c in plan} == table.keys()
    row = table.rows[len(table.rows) // 2]
    again = gt.evaluate_row(problem, float(row["budget"]), row["source"],
                            np.array([int(c) for c in row["choices"].split()]), task.budget_metric)
    assert again["test_correct"] == row["test_correct"]
    assert again["search_top1"] == pytest.approx(float(row["search_top1"]))


def test_pairwise_terms_match_whole_network_runs(digits):
    problem = Problem(digits, "W2A2,W4A4,W8A8", sensitivity_images=64, progress=False)
    inputs = problem.sensitivity_inputs()
    qm = problem.evaluator.qmodel
    table = compute_pairwise(qm, inputs, problem.groups, problem.candidates, progress=False)
    assert table.sqnr_db.shape == (len(problem.groups) - 1, 3, 3)
    fp32 = problem.uniform(FP32)
    with torch.no_grad():
        qm.set_config(fp32)
        reference = qm(inputs)
        for p, (g, h) in enumerate(table.pairs):
            config = {**fp32, **{l: problem.candidates[0] for l in problem.groups[g].layers},
                      **{l: problem.candidates[2] for l in problem.groups[h].layers}}
            qm.set_config(config)
            assert sqnr_db(qm(inputs), reference) == pytest.approx(table.sqnr_db[p, 0, 2], abs=1e-3)
    interactions = table.interactions(problem.sensitivity)
    assert interactions.shape == (len(table.pairs), 3, 3) and np.isfinite(interactions).all()


def test_a_fit_on_digits_ground_truth_beats_the_additive_surrogate_on_held_out_slices():
    """The learned SQNR correction, fitted leave-one-slice-out on the shipped DigitsCNN table, ranks and values
    every held-out slice better than the additive surrogate (Kendall τ and mean absolute error in dB)."""
    from scipy.stats import kendalltau

    from mpq_gym.evaluate.groundtruth import leave_one_slice_out_sqnr
    table = load_groundtruth(SHIPPED)
    additive = table.surrogate()
    predicted_add = additive.predicted_sqnr(table.choices())
    predicted_fit = leave_one_slice_out_sqnr(table, [additive])
    again = leave_one_slice_out_sqnr(table, [additive])
    assert np.array_equal(predicted_fit, again)  # deterministic
    exact, budgets = table.column("search_sqnr_db"), table.column("budget")
    for budget in table.budgets:
        m = np.isclose(budgets, budget)
        assert kendalltau(predicted_fit[m], exact[m]).statistic > kendalltau(predicted_add[m], exact[m]).statistic
        assert np.abs(predicted_fit[m] - exact[m]).mean() < np.abs(predicted_add[m] - exact[m]).mean()


def test_pairwise_surrogate_adds_the_measured_terms(digits):
    """With two groups the pairwise surrogate's noise is the measured joint noise; with zero terms it is the
    additive surrogate; the metric is a monotone function of the predicted SQNR; repeated calls agree."""
    from mpq_gym.evaluate.surrogate import Surrogate
    from mpq_gym.metrics import noise_power
    problem = Problem(digits, "W2A2,W4A4,W8A8", tied=[digits_layers(digits)[:2], digits_layers(digits)[2:]],
                      sensitivity_images=64, surrogate_points=6, progress=False)
    pairwise = problem.pairwise_surrogate
    assert pairwise.kind == "pairwise" and problem.surrogate.kind == "additive"
    choices = np.array([[c, d] for c in range(3) for d in range(3)])
    joint = noise_power(problem.pairwise.sqnr_db[0])  # [C, C]
    single_max = np.maximum(*np.meshgrid(pairwise.noise[0], pairwise.noise[1], indexing="ij"))
    assert np.allclose(pairwise.predicted_noise(choices), np.maximum(joint, single_max).reshape(-1))
    zero = Surrogate(problem.sensitivity, problem.surrogate.metric_fit, problem.pairwise.pairs,
                     np.zeros_like(problem.pairwise.interactions(problem.sensitivity)))
    assert np.allclose(zero.predict(choices), problem.surrogate.predict(choices))
    order = np.argsort(pairwise.predicted_sqnr(choices))
    assert np.all(np.diff(pairwise.predict(choices)[order]) >= -1e-12)
    assert np.array_equal(pairwise.predict(choices), pairwise.predict(choices))


def digits_layers(workload) -> list[str]:
    """DigitsCNN's quantizable layers in execution order."""
    from mpq_gym.quant.graph import quantizable_layers
    return [layer.name for layer in quantizable_layers(workload.model, workload.example_input())]
