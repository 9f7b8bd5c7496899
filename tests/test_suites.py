"""MPQ-Bench suites on DigitsCNN: definitions and their immutability, a suite run (one folder per task,
provenance in every row, resume), the cross-task scores with rliable's definitions, backward-compatible
results files, and the command line."""
import csv
import json
import shutil

import numpy as np
import pytest
from scipy.stats import trim_mean

from mpq_gym.bench import aggregate
from mpq_gym.bench.cells import CELL_COLUMNS, COLUMNS
from mpq_gym.bench.runner import BenchSpec, read_results, run_benchmark, write_results
from mpq_gym.bench.suite_runner import preflight, run_suite, task_spec, write_suite_report
from mpq_gym.bench.suites import RELEASED, SUITES, Suite, SuiteTask, check_suite, get_suite
from mpq_gym.bench.validate import validate
from mpq_gym.cli.bench import main as bench_main
from mpq_gym.cli.common import run_cli
from mpq_gym.cli.validate import main as validate_main
from mpq_gym.errors import ConfigError, MissingWeightsError, MpqGymError

ENV = "MixedPrecision-DigitsCNN-v0"
LOW = {"candidates": "W2A2,W2A4,W3A3,W4A2,W4A4,W8A8", "weight_rounding": "nearest"}
TINY = Suite("test-tiny", 1, "two DigitsCNN tasks", (
    SuiteTask("low", ENV, LOW, (0.05, 0.08), seeds=2, max_evaluations=4, track="nearest"),
    SuiteTask("hw", ENV, {"candidates": "W2A8,W4A8,W8A8", "weight_rounding": "nearest"}, (0.2,), seeds=2,
              max_evaluations=4, track="nearest")))
POLICIES = ["uniform", "ilp", "random"]
PROVENANCE_KEYS = {"mpq_gym", "commit", "dirty", "torch", "gymnasium", "stable-baselines3", "numpy", "device",
                   "cpu_count", "date", "suite_version", "suite_digest"}


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    run_suite(TINY, POLICIES, out, progress=False)
    return out


def test_every_shipped_suite_is_released_and_keeps_its_digest():
    assert set(RELEASED) == set(SUITES)
    for name, suite in SUITES.items():
        assert suite.digest == RELEASED[name], f"{name} was edited: give the changed suite a new name"
        assert get_suite(name) is suite


def test_an_edited_released_suite_is_refused(monkeypatch):
    monkeypatch.setitem(RELEASED, "mpqbench-v1-lite", "0" * 16)
    with pytest.raises(MpqGymError, match="new name"):
        get_suite("mpqbench-v1-lite")
    with pytest.raises(ConfigError, match="unknown suite"):
        get_suite("mpqbench-v0")


def test_the_full_suite_validates_its_kwargs_without_building_anything():
    suite = get_suite("mpqbench-v1")
    assert check_suite(suite) == [t.name for t in suite.tasks]
    budgets = {t.name: t.budgets for t in suite.tasks}
    assert budgets["lite0-hardware"] == (0.5, 0.375, 0.3) and budgets["lite0-expanded"] == (0.25, 0.2)
    assert budgets["minilm-expanded"] == (0.2, 0.15)
    for task in suite.tasks:
        assert task.report_split == "test"
        assert task.env_kwargs["weight_rounding"] == ("adaround" if task.track == "reconstruction" else "nearest")
    assert {t.env_id.split("-")[1] for t in suite.tasks} >= {"ResNet18", "ResNet50", "MobileNetV2"}


def test_tasks_refuse_a_wrong_track_fixed_weights_and_bad_kwargs():
    with pytest.raises(ConfigError, match="weight_rounding='adaround'"):
        SuiteTask("t", ENV, LOW, (0.1,), 1, None, track="reconstruction")
    with pytest.raises(ConfigError, match="track 'fast' is unknown"):
        SuiteTask("t", ENV, LOW, (0.1,), 1, None, track="fast")
    with pytest.raises(ConfigError, match="may not fix"):
        SuiteTask("t", ENV, {**LOW, "random_weights": True}, (0.1,), 1, None, track="nearest")
    bad = Suite("bad", 1, "", (SuiteTask("t", ENV, {**LOW, "sensitivty_images": 8}, (0.1,), 1, None, "nearest"),))
    with pytest.raises(ConfigError, match="task t: unknown keyword"):
        check_suite(bad)
    with pytest.raises(ConfigError, match="would change"):
        task_spec(TINY, TINY.tasks[0], POLICIES, {"candidates": "W8A8"})


def test_a_task_without_its_weights_fails_with_the_missing_weights_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch hub cache
    monkeypatch.setenv("MPQ_GYM_OFFLINE", "1")
    resnet = get_suite("mpqbench-v1").task("resnet18")
    with pytest.raises(MissingWeightsError, match="resnet18: pretrained weights are not in the cache"):
        preflight([resnet])


def test_a_suite_run_has_one_folder_per_task_and_provenance_in_every_row(suite_dir):
    record = json.loads((suite_dir / "suite.json").read_text())
    assert record == {**TINY.identity(), "tasks": ["hw", "low"], "policies": sorted(POLICIES)}
    for task in TINY.tasks:
        spec = BenchSpec.load(suite_dir / task.name)
        assert spec.suite == TINY.record(task.name) and spec.budgets == list(task.budgets)
        rows = read_results(suite_dir / task.name / "results.csv")
        assert len(rows) == len(task.budgets) * (2 + task.seeds)  # uniform, ilp once; random per seed
        for row in rows:
            assert (row["suite"], row["task"]) == (TINY.name, task.name)
            prov = json.loads(row["provenance"])
            assert PROVENANCE_KEYS <= set(prov) and prov["suite_digest"] == TINY.digest
            assert float(row["wall_s"]) > 0 and int(row["exact_evaluations"]) <= 4
        references = json.loads((suite_dir / task.name / "reference.json").read_text())
        assert [r["candidate"] for r in references["uniform"]] == task.env_kwargs["candidates"].split(",")


def test_a_rerun_resumes_and_another_suite_in_the_folder_is_refused(suite_dir):
    before = {t.name: (suite_dir / t.name / "results.csv").read_text() for t in TINY.tasks}
    run_suite(TINY, ["uniform", "random"], suite_dir, progress=False)
    assert {t.name: (suite_dir / t.name / "results.csv").read_text() for t in TINY.tasks} == before
    other = Suite("test-other", 1, "", TINY.tasks)
    with pytest.raises(ConfigError, match="new --out"):
        run_suite(other, ["uniform"], suite_dir, progress=False)


def test_the_suite_report_scores_across_problems_with_rliables_definitions(suite_dir, monkeypatch):
    monkeypatch.setattr(aggregate, "backend", lambda: "numpy")
    paths = write_suite_report(suite_dir, TINY)
    summary = json.loads(paths["summary"].read_text())
    assert summary["problems"] == ["low@0.05", "low@0.08", "hw@0.2"]
    ranked = {e["name"]: e for e in summary["ranked"]}
    assert set(ranked) == set(POLICIES) and ranked["ilp"]["normalized"]["iqm"] == pytest.approx(1.0)
    rows = [r for t in TINY.tasks for r in read_results(suite_dir / t.name / "results.csv") if r["policy"] == "random"]
    pooled = [float(r["normalized_score"]) for r in rows]
    assert ranked["random"]["normalized"]["iqm"] == pytest.approx(trim_mean(pooled, 0.25))
    assert ranked["random"]["runs"] == [2, 2, 2] and ranked["ilp"]["runs"] == [1, 1, 1]
    for entry in ranked.values():
        for score in ("normalized", "delta"):
            assert entry[score]["low"] <= entry[score]["iqm"] <= entry[score]["high"]
    poi = summary["probability_of_improvement"]
    for a in POLICIES:
        for b in POLICIES:
            if a != b:
                assert poi[a][b]["point"] + poi[b][a]["point"] == pytest.approx(1.0)
    table = paths["table"].read_text()
    assert "| 1 | ilp |" in table and "P(row > column)" in table
    for name in ("profile", "sample_efficiency"):
        assert paths[name].stat().st_size > 10_000
    assert (suite_dir / "low" / "pareto.png").stat().st_size > 10_000


def test_rliable_aggregates_by_hand(monkeypatch):
    monkeypatch.setattr(aggregate, "backend", lambda: "numpy")
    x = [np.array([1.0, 2.0]), np.array([3.0, 3.0])]
    y = [np.array([0.0, 2.0]), np.array([3.0, 1.0])]
    # task 1: (1>0) + (1<2) 0 + (2>0) + (2=2) 1/2 = 2.5 of 4; task 2: 3>3? tie 1/2, 3>1 -> (0.5+1+0.5+1)/4 = 0.75
    assert aggregate.probability_of_improvement(x, y).point == pytest.approx((0.625 + 0.75) / 2)
    assert aggregate.aggregate_iqm(x).point == pytest.approx(trim_mean([1, 2, 3, 3], 0.25))
    profile, low, high = aggregate.performance_profile(x, np.array([0.5, 1.5, 2.5, 3.5]))
    assert profile.tolist() == pytest.approx([1.0, 0.75, 0.5, 0.0])  # mean over tasks of the fraction above tau
    assert np.all(low <= profile) and np.all(profile <= high)
    single = aggregate.aggregate_iqm([np.array([0.3]), np.array([0.9])])  # one run per task: nothing to resample
    assert single.low == single.point == single.high == pytest.approx(0.6)
    spread = aggregate.aggregate_iqm([np.arange(8.0), np.arange(8.0) + 10])
    assert spread.low < spread.point < spread.high


def test_validate_replays_the_normalized_score_and_choices(suite_dir, tmp_path):
    folder = tmp_path / "low"
    shutil.copytree(suite_dir / "low", folder)
    rows = read_results(folder / "results.csv")
    rows[0]["normalized_score"] = str(float(rows[0]["normalized_score"]) + 0.1)
    rows[1]["fp32_quality"] = str(float(rows[1]["fp32_quality"]) - 1.0)
    write_results(folder / "results.csv", rows)
    flagged = validate(folder / "results.csv", progress=False)
    assert [(f["row"], sorted(f["recorded_vs_replayed"])) for f in flagged] == [
        (2, ["normalized_score"]), (3, ["fp32_quality"])]


def test_old_results_without_provenance_columns_still_validate_and_resume(suite_dir, tmp_path, capsys):
    folder = tmp_path / "old"
    shutil.copytree(suite_dir / "hw", folder)
    rows = read_results(folder / "results.csv")
    with (folder / "results.csv").open("w", newline="") as f:  # the columns before this version
        writer = csv.DictWriter(f, fieldnames=CELL_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    spec = json.loads((folder / "bench.json").read_text())
    del spec["suite"]  # nor did bench.json know suites
    (folder / "bench.json").write_text(json.dumps(spec))
    assert all(r["provenance"] == "" for r in read_results(folder / "results.csv"))
    assert validate_main([str(folder / "results.csv"), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["flagged"] == []
    bigger = BenchSpec(ENV, TINY.tasks[1].env_kwargs, ["uniform", "ilp", "greedy"], [0.2], 2, 4)
    run_benchmark(bigger, folder, progress=False)  # resumes: the file gets today's columns, old rows kept
    with (folder / "results.csv").open(newline="") as f:
        assert next(csv.reader(f)) == list(COLUMNS)
    after = read_results(folder / "results.csv")
    assert [r["config"] for r in after[:len(rows)]] == [r["config"] for r in rows]
    assert [r["policy"] for r in after[len(rows):]] == ["greedy"] and after[-1]["provenance"]


def test_the_command_line_runs_a_suite_and_refuses_what_a_suite_fixes(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(SUITES, TINY.name, TINY)
    out = tmp_path / "cli"
    assert bench_main(["--suite", TINY.name, "--tasks", "hw", "--policies", "uniform,ilp", "--out", str(out),
                       "--quiet"]) == 0
    assert "hw@0.2" in capsys.readouterr().out and not (out / "low").exists()
    for argv, message in ((["--seeds", "3"], "fixes --seeds"), (["--env-kwargs", "candidates=W8A8"], "would change"),
                          (["--tasks", "nope"], "no task 'nope'")):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(bench_main, ["--suite", TINY.name, "--out", str(tmp_path / "x"), *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run_cli(bench_main, ["--env", ENV, "--tasks", "hw", "--out", str(tmp_path / "y")])
    assert exit_info.value.code == 2 and "give --suite" in capsys.readouterr().err
