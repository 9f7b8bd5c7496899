import json
import subprocess
import sys

import pytest


def _run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600)


def test_evaluate_cli_prints_metrics_json():
    proc = _run("mpq_gym.evaluate", "--workload", "digits_cnn", "--config", "uniform:W8A8", "--split", "test")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["top1"] > 90 and {"top5", "agreement", "sqnr_db"} <= result.keys()


def test_evaluate_cli_reads_a_json_config(tmp_path):
    layers = json.loads(_run("mpq_gym", "layers", "--workload", "digits_cnn").stdout)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({layers[0]["name"]: [4, 8], "*": [8, 8]}))
    proc = _run("mpq_gym.evaluate", "--workload", "digits_cnn", "--config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["config"] == str(path)


def test_layers_cli_lists_statistics():
    proc = _run("mpq_gym", "layers", "--workload", "resnet18", "--random-weights")
    assert proc.returncode == 0, proc.stderr
    layers = json.loads(proc.stdout)
    assert len(layers) == 21 and {"name", "params", "macs", "depthwise"} <= layers[0].keys()


@pytest.mark.parametrize("args, message", [
    (["--workload", "nope"], "unknown workload"),
    (["--workload", "digits_cnn", "--config", "uniform:W9A8"], "unsupported weight bit-width"),
    (["--workload", "digits_cnn", "--config", "missing.json"], "neither"),
    (["--workload", "efficientnet_lite0", "--data-dir", "/nonexistent"], "ImageNet images not found"),
])
def test_bad_input_exits_2_with_a_clear_message(args, message):
    proc = _run("mpq_gym.evaluate", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_one_command_lists_every_tool():
    from mpq_gym.cli.main import COMMANDS
    proc = _run("mpq_gym", "--help")
    assert proc.returncode == 0
    assert all(name in proc.stdout for name in COMMANDS)


@pytest.mark.parametrize("command", ["evaluate", "layers", "cost", "sensitivity", "bench", "validate", "compare", "train",
                                     "replay", "curves", "demo"])
def test_every_command_has_help_with_an_example(command):
    proc = _run("mpq_gym", command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "example" in proc.stdout.lower() and "mpq-gym " + command in proc.stdout


def test_unknown_command_exits_2():
    proc = _run("mpq_gym", "evalute")
    assert proc.returncode == 2 and "unknown command" in proc.stderr and "Traceback" not in proc.stderr
