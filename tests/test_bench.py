"""Benchmark harness on DigitsCNN: results.csv, report files, resume, plug-in policies, validation."""
import csv
import json

import numpy as np
import pytest

from mpq_gym.bench import BenchSpec, register_policy, run_benchmark
from mpq_gym.cli.bench import main as bench_main
from mpq_gym.bench.aggregate import iqm, iqm_interval
from mpq_gym.bench.report import write_report
from mpq_gym.bench.runner import read_results
from mpq_gym.cli.validate import main as validate_main
from mpq_gym.errors import ConfigError

ENV = "MixedPrecision-DigitsCNN-v0"
KWARGS = {"candidates": "W2A8,W4A8,W8A8"}


def cheapest_policy(ctx, seed):
    """A user policy: every group at its cheapest candidate."""
    return ctx.budget_table.table.argmin(axis=1)


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    spec = BenchSpec(ENV, KWARGS, ["uniform", "greedy", "ilp", "random"], [0.2, 0.5], seeds=2, max_evaluations=4)
    run_benchmark(spec, out, progress=False)
    return out


def test_results_have_one_row_per_cell_and_respect_budgets(bench_dir):
    rows = read_results(bench_dir / "results.csv")
    cells = sorted((r["policy"], r["seed"], r["budget"]) for r in rows)
    # deterministic policies run once per budget; random runs for both seeds
    assert len(rows) == 2 * (3 + 2) and len(set(cells)) == len(cells)
    for r in rows:
        assert r["within_budget"] == "True" and float(r["bops_ratio"]) <= float(r["budget"]) + 1e-9
        assert int(r["exact_evaluations"]) <= 4
        assert 0 <= float(r["quality"]) <= 100 and r["report_split"] == "test"
        assert len(r["choices"].split()) == len(json.loads(r["config"]))


def test_rerun_resumes_without_repeating_cells(bench_dir):
    before = (bench_dir / "results.csv").read_text()
    run_benchmark(BenchSpec(ENV, KWARGS, ["uniform", "random"], [0.2], seeds=2, max_evaluations=4), bench_dir,
                  progress=False)
    assert (bench_dir / "results.csv").read_text() == before


def test_a_different_problem_in_the_same_folder_is_refused(bench_dir):
    with pytest.raises(ConfigError, match="new --out"):
        run_benchmark(BenchSpec(ENV, {"candidates": "W8A8,W8A16"}, ["uniform"], [0.5], 1), bench_dir, progress=False)


def test_report_writes_table_plot_and_aggregates(bench_dir):
    paths = write_report(bench_dir / "results.csv")
    table = paths["table"].read_text()
    assert "| 0.2 | ilp |" in table and "| 0.5 | random | 2 |" in table
    assert paths["plot"].stat().st_size > 10_000
    summary = json.loads(paths["summary"].read_text())
    random_cells = [s for s in summary if s["policy"] == "random"]
    assert all(s["ci_low"] <= s["quality_iqm"] <= s["ci_high"] for s in random_cells)


def test_validate_passes_then_flags_a_tampered_row(bench_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        from mpq_gym.cli.common import run_cli
        run_cli(validate_main, [str(bench_dir / "results.csv"), "--quiet"])
    assert exit_info.value.code == 0
    tampered = tmp_path / "results.csv"
    (tmp_path / "bench.json").write_text((bench_dir / "bench.json").read_text())
    rows = read_results(bench_dir / "results.csv")
    rows[1]["quality"] = str(float(rows[1]["quality"]) + 1.0)
    rows[2]["bops"] = str(float(rows[2]["bops"]) * 0.5)
    with tampered.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    assert validate_main([str(tampered), "--quiet"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [f["row"] for f in report["flagged"]] == [3, 4]
    assert "quality" in report["flagged"][0]["recorded_vs_replayed"]
    assert "bops" in report["flagged"][1]["recorded_vs_replayed"]


def test_plugged_in_policies_by_registry_and_by_import_path(tmp_path, capsys):
    register_policy("cheapest", cheapest_policy, stochastic=False)
    code = bench_main(["--env", ENV, "--env-kwargs", "candidates=W2A8,W4A8,W8A8", "--policies",
                       "cheapest,tests.test_bench:cheapest_policy", "--budgets", "0.2", "--seeds", "3",
                       "--out", str(tmp_path), "--quiet"])
    assert code == 0
    rows = read_results(tmp_path / "results.csv")
    assert {r["policy"] for r in rows} == {"cheapest", "tests.test_bench:cheapest_policy"}
    assert len({r["quality"] for r in rows}) == 1
    assert "| 0.2 | cheapest | 1 |" in capsys.readouterr().out


def test_unknown_policy_and_env_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown policy 'nope'"):
        run_benchmark(BenchSpec(ENV, {}, ["nope"], [0.5], 1), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="registered ids"):
        run_benchmark(BenchSpec("MixedPrecision-Nope-v0", {}, ["uniform"], [0.5], 1), tmp_path / "b", progress=False)


def test_iqm_and_its_interval():
    values = np.array([0.0, 1.0, 2.0, 3.0, 100.0, 4.0, 5.0, 6.0])
    assert iqm(values) == pytest.approx(np.mean([2.0, 3.0, 4.0, 5.0]))
    point, low, high = iqm_interval(values)
    assert low <= point <= high and high - low > 0
    assert iqm_interval(np.array([7.0])) == (7.0, 7.0, 7.0)


def test_bench_logs_to_mlflow(bench_dir, tmp_path):
    import mlflow
    from mpq_gym.cli.bench import log_to_mlflow
    store = tmp_path / "mlflow.db"
    paths = write_report(bench_dir / "results.csv")
    log_to_mlflow(str(store), BenchSpec.load(bench_dir), paths)
    client = mlflow.tracking.MlflowClient(f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name(f"mpq-gym-bench/{ENV}").experiment_id])
    assert run.data.params["env_id"] == ENV
    assert "ilp/r0.2/quality_iqm" in run.data.metrics
    assert {"pareto.png", "results.csv", "results.md"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_compare_gives_paired_intervals_that_agree_with_the_recorded_qualities(bench_dir, capsys):
    from mpq_gym.bench.paired import compare_results
    from mpq_gym.cli.compare import main as compare_main
    rows = compare_results(bench_dir / "results.csv", "ilp", progress=False)
    assert len(rows) == 2 * (2 + 2)  # uniform, greedy and random's two seeds, at both budgets
    for r in rows:
        assert r["difference"] == pytest.approx(r["quality"] - r["baseline_quality"], abs=1e-6)
        assert r["low"] <= r["difference"] <= r["high"]
        assert r["verdict"] == ("ahead" if r["low"] > 0 else "behind" if r["high"] < 0 else "within noise")
    assert any(r["high"] > r["low"] for r in rows)  # some configurations differ on some samples
    assert compare_main([str(bench_dir / "results.csv"), "--quiet"]) == 0
    assert "difference [95 % paired CI]" in capsys.readouterr().out
    pooled = compare_results(bench_dir / "results.csv", "ilp", progress=False, pool_seeds=True)
    random_rows = [r for r in rows if r["policy"] == "random" and r["budget"] == "0.2"]
    (mean,) = [r for r in pooled if r["policy"] == "random" and r["budget"] == "0.2"]
    assert mean["seeds"] == 2 and mean["low"] <= mean["difference"] <= mean["high"]
    assert mean["difference"] == pytest.approx(np.mean([r["difference"] for r in random_rows]), abs=1e-6)
    with pytest.raises(ConfigError, match="choose --baseline"):
        compare_results(bench_dir / "results.csv", "nope", progress=False)
    first_random = {r["budget"]: float(r["quality"]) for r in reversed(read_results(bench_dir / "results.csv"))
                    if r["policy"] == "random"}  # reversed: the first seed's row wins
    against_random = compare_results(bench_dir / "results.csv", "random", progress=False)
    assert all(r["baseline_quality"] == first_random[r["budget"]] for r in against_random)
    assert sorted((r["policy"], r["seed"]) for r in against_random if r["budget"] == "0.2") == [
        ("greedy", 0), ("ilp", 0), ("random", 1), ("uniform", 0)]


def test_bench_json_records_provenance(bench_dir):
    import re

    import torch
    prov = BenchSpec.load(bench_dir).provenance
    assert prov["torch"] == torch.__version__.split("+")[0] or prov["torch"] == torch.__version__
    assert prov["mpq_gym"] and prov["cpu_count"] >= 1 and re.match(r"\d{4}-\d\d-\d\dT", prov["date"])
    assert prov["commit"] is None or (re.fullmatch(r"[0-9a-f]{40}", prov["commit"]) and isinstance(prov["dirty"], bool))


def test_validate_names_the_libraries_that_differ_from_the_recording(bench_dir, tmp_path, capsys):
    folder = tmp_path / "other_torch"
    folder.mkdir()
    (folder / "results.csv").write_text((bench_dir / "results.csv").read_text())
    spec = json.loads((bench_dir / "bench.json").read_text())
    spec["provenance"]["torch"] = "1.0.0"
    (folder / "bench.json").write_text(json.dumps(spec))
    capsys.readouterr()
    assert validate_main([str(folder / "results.csv"), "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    from importlib.metadata import version
    assert out["library_differences"] == {"torch": {"recorded": "1.0.0", "now": version("torch")}}


def test_git_state_names_a_commit_only_for_files_the_checkout_tracks(tmp_path):
    from pathlib import Path

    from mpq_gym import provenance
    untracked = tmp_path / "file.py"  # outside any repository
    untracked.write_text("")
    assert provenance.git_state(untracked) == {"commit": None, "dirty": None}
    ignored = Path(__file__).resolve().parents[1] / "runs" / "ignored_by_git.txt"  # inside the checkout, ignored
    ignored.write_text("")
    try:
        assert provenance.git_state(ignored) == {"commit": None, "dirty": None}
    finally:
        ignored.unlink()
    tracked = provenance.git_state(Path(provenance.__file__))
    assert tracked["commit"] is None or isinstance(tracked["dirty"], bool)
