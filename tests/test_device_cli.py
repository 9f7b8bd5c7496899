"""``--device`` on every command line that builds a problem or a network (one shared flag,
``mpq_gym.cli.common.add_device_arg``): ``--device cpu`` gives the same output as no flag, an unknown device
or one this machine lacks is one ``error:`` line and exit status 2, and the device is where the network ran
(row provenance), not part of what a benchmark or a training run is (bench.json, args.json)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from mpq_gym.cli.common import run_cli
from mpq_gym.cli.main import main

DIGITS = "MixedPrecision-DigitsCNN-v0"
#: every command (and sub-command) that takes --device
DEVICE_COMMANDS = ("evaluate", "sensitivity", "bench", "validate", "train", "tune", "curves", "replay", "demo",
                   "groundtruth build", "tabular build", "tabular check", "leaderboard build")


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``mpq-gym ARGV`` run in this process."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_cli(main, [str(a) for a in argv])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _same_both_ways(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[str, str]:
    """stdout without and with ``--device cpu`` (both must succeed)."""
    outputs = []
    for extra in ([], ["--device", "cpu"]):
        code, out, err = _run([*argv, *extra], capsys)
        assert code == 0, err
        outputs.append(out)
    return outputs[0], outputs[1]


@pytest.mark.parametrize("command", DEVICE_COMMANDS)
def test_every_network_command_documents_device(command, capsys):
    code, out, _ = _run([*command.split(), "--help"], capsys)
    assert code == 0 and "--device DEVICE" in out and "where the quantized network runs" in out


@pytest.mark.parametrize("command", DEVICE_COMMANDS)
def test_an_unknown_device_is_one_line_and_exit_2(command, capsys):
    code, _, err = _run([*command.split(), "--device", "bogus"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "--device 'bogus' is not a device; choose one of auto, cpu, cuda, cuda:N, mps" in err


@pytest.mark.parametrize("command", DEVICE_COMMANDS)
def test_cuda_without_a_gpu_names_the_fix(command, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = _run([*command.split(), "--device", "cuda"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "no CUDA GPU: use --device 'cpu' or 'auto'" in err


def test_evaluate_and_sensitivity_on_cpu_equal_no_flag(tmp_path, capsys):
    plain, cpu = _same_both_ways(["evaluate", "--workload", "digits_cnn", "--config", "uniform:W4A8"], capsys)
    plain, cpu = json.loads(plain), json.loads(cpu)
    assert cpu["device"] == "cpu" and {**plain, "seconds": 0} == {**cpu, "seconds": 0}
    tables = []
    for extra in ([], ["--device", "cpu"]):
        out = tmp_path / f"sensitivity{len(tables)}.json"
        code, text, err = _run(["sensitivity", "--workload", "digits_cnn", "--candidates", "W4A8,W8A8", "--images",
                                "64", "--out", out, *extra], capsys)
        assert code == 0, err
        tables.append((text.replace(str(out), "OUT"), json.loads(out.read_text())))
    assert tables[0] == tables[1]


def _rows(path: Path) -> list[dict[str, str]]:
    """A results.csv's rows without what changes run to run (wall time, provenance)."""
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in ("wall_s", "provenance")} for row in csv.DictReader(handle)]


def test_bench_and_validate_on_cpu_equal_no_flag_and_keep_the_device_out_of_bench_json(tmp_path, capsys):
    base = ["bench", "--env", DIGITS, "--policies", "uniform,greedy", "--budgets", "0.5", "--seeds", "1", "--quiet",
            "--env-kwargs", "candidates=W2A8,W4A8,W8A8"]
    for name, extra in (("plain", []), ("cpu", ["--device", "cpu"])):
        code, _, err = _run([*base, "--out", tmp_path / name, *extra], capsys)
        assert code == 0, err
    assert _rows(tmp_path / "plain" / "results.csv") == _rows(tmp_path / "cpu" / "results.csv")
    spec = json.loads((tmp_path / "cpu" / "bench.json").read_text())
    assert "device" not in spec["env_kwargs"] and spec["provenance"]["torch_device"] == "cpu"
    with open(tmp_path / "cpu" / "results.csv", newline="") as handle:
        assert {json.loads(r["provenance"])["torch_device"] for r in csv.DictReader(handle)} == {"cpu"}
    # the device is not the problem: the folder resumes under another --device (here: none; device= counts too)
    code, _, err = _run([*base[:-1], "candidates=W2A8,W4A8,W8A8", "device=cpu", "--out", tmp_path / "cpu"], capsys)
    assert code == 0, err
    code, _, err = _run([*base, "device=auto", "--device", "cpu", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "give the device once" in err
    results = tmp_path / "cpu" / "results.csv"
    plain, cpu = _same_both_ways(["validate", results, "--quiet"], capsys)
    assert plain == cpu and json.loads(cpu) == {"rows": 2, "flagged": []}


def test_validate_names_rows_computed_on_another_device(tmp_path, capsys):
    code, _, err = _run(["bench", "--env", DIGITS, "--policies", "uniform", "--budgets", "0.5", "--seeds", "1",
                         "--quiet", "--out", tmp_path], capsys)
    assert code == 0, err
    path = tmp_path / "results.csv"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:  # as if computed on a GPU: the replay on the CPU says so
        row["provenance"] = json.dumps({**json.loads(row["provenance"]), "torch_device": "cuda:0"})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, out, err = _run(["validate", path, "--quiet", "--device", "cpu"], capsys)
    assert code == 0, err
    assert json.loads(out)["device_differences"] == {"recorded": "cuda", "now": "cpu"}


def test_a_suite_run_takes_the_device_but_a_suite_task_may_not_fix_it(tmp_path, capsys):
    from mpq_gym.bench.suites import SuiteTask
    from mpq_gym.errors import ConfigError
    base = ["bench", "--suite", "mpqbench-v1-lite", "--tasks", "digits-low", "--policies", "uniform", "--quiet"]
    for name, extra in (("plain", []), ("cpu", ["--device", "cpu"])):
        code, _, err = _run([*base, "--out", tmp_path / name, *extra], capsys)
        assert code == 0, err
    task = tmp_path / "cpu" / "digits-low"
    assert _rows(tmp_path / "plain" / "digits-low" / "results.csv") == _rows(task / "results.csv")
    assert "device" not in json.loads((task / "bench.json").read_text())["env_kwargs"]
    with pytest.raises(ConfigError, match="may not fix"):
        SuiteTask("t", DIGITS, {"weight_rounding": "nearest", "device": "cpu"}, (0.5,), 1, None, "nearest")


def test_groundtruth_build_on_cpu_equals_no_flag(tmp_path, capsys):
    from mpq_gym.evaluate.groundtruth import load_groundtruth
    tables = []
    for name, extra in (("plain", []), ("cpu", ["--device", "cpu"])):
        out = tmp_path / f"{name}.csv.gz"
        code, _, err = _run(["groundtruth", "build", "--task", "digits-low", "--out", out, "--limit", "2", "--quiet",
                             *extra], capsys)
        assert code == 0, err
        tables.append(load_groundtruth(out))
    assert tables[0].rows == tables[1].rows
    assert tables[1].header["provenance"]["torch_device"] == "cpu"


def test_train_and_replay_on_cpu_equal_no_flag_and_the_policy_stays_on_the_cpu(tmp_path, capsys):
    results = []
    for name, extra in (("plain", []), ("cpu", ["--device", "cpu"])):
        code, out, err = _run(["train", "--algo", "reinforce", "--env", DIGITS, "--episodes", "4", "--quiet",
                               "--runs-dir", tmp_path / name, *extra], capsys)
        assert code == 0, err
        results.append(json.loads(out))
    assert results[0]["best"] == results[1]["best"]
    run_dir = Path(results[1]["run_dir"])
    assert "device" not in json.loads((run_dir / "args.json").read_text())["env_kwargs"]
    plain, cpu = _same_both_ways(["replay", run_dir], capsys)
    assert plain == cpu

    from mpq_gym.agents.training import build_agent, load_hyperparams, make_env
    hyperparams = load_hyperparams("ppo", DIGITS)
    agent = build_agent("ppo", make_env(DIGITS, {"device": "cpu"}, hyperparams, "ppo"), hyperparams, 0)
    assert agent.device == torch.device("cpu")  # the policy's device, whatever the env's


def test_tune_curves_tabular_and_leaderboard_on_cpu_equal_no_flag(tmp_path, capsys):
    tuned = []
    for name in ("plain", "cpu"):
        code, out, err = _run(["tune", "--algo", "reinforce", "--env", DIGITS, "--trials", "1", "--episodes", "2",
                               "--storage", tmp_path / f"{name}.db", "--out", tmp_path / f"{name}.yml",
                               *(["--device", "cpu"] if name == "cpu" else [])], capsys)
        assert code == 0, err
        tuned.append({k: v for k, v in json.loads(out).items() if k not in ("preset", "trials_csv", "storage")})
    assert tuned[0] == tuned[1]
    curves = ["curves", "--env", DIGITS, "--algos", "reinforce", "--episodes", "2", "--seeds", "1", "--setting",
              "hardware:0.5", "--quiet"]
    plain, cpu = (_run([*curves, "--out", tmp_path / n, *extra], capsys) for n, extra in
                  (("curves_plain", []), ("curves_cpu", ["--device", "cpu"])))
    assert plain[0] == cpu[0] == 0 and plain[1] == cpu[1]
    plain, cpu = _same_both_ways(["tabular", "check", "--workload", "digits_cnn", "--rows", "1", "--quiet"], capsys)
    assert plain == cpu and "agrees" in cpu
    (tmp_path / "board").mkdir()
    plain, cpu = _same_both_ways(["leaderboard", "build", "--root", tmp_path / "board", "--quiet"], capsys)
    assert plain == cpu
