"""No pickle from outside the cache: a planted pickle that would create a marker file when unpickled is
refused by every entry point that reads a user's file (weights, run folders, bench folders), with one
line and exit status 2; the marker never appears. SB3/DDPG run folders made elsewhere need --trust."""
from __future__ import annotations

import csv
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mpq_gym  # noqa: F401  (registers the env ids)
from mpq_gym.agents.training import TRUST_FILE, created_here, train_run
from mpq_gym.bench.cells import COLUMNS
from mpq_gym.cli.common import run_cli
from mpq_gym.cli.main import main as cli_main
from mpq_gym.errors import InputFileError, MissingWeightsError, UntrustedRunError
from mpq_gym.workloads import get_workload

REPO = Path(__file__).resolve().parents[1]
KWARGS = {"candidates": "W2A8,W4A8,W8A8", "budget": 0.2}
DISCRETE = "MixedPrecision-DigitsCNN-v0"


class Evil:
    """Unpickling this creates ``marker`` (stands for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "a planted pickle was executed"


def _plant(path: Path, marker: Path, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": Evil(marker)}))
    else:  # torch.save's zip format
        torch.save({"net": Evil(marker)}, path)
    return path


def _cli(argv: list[str], capsys) -> str:
    """Run ``mpq-gym ARGV`` in-process: it must exit 2 with one line on stderr; returns that line."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(cli_main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def _small_hp(tmp_path: Path, algo: str) -> str:
    hp = {"ppo": {"rollout_episodes": 2, "batch_size": 8}, "reinforce": {"hidden_size": 32, "episodes_per_update": 2}}
    path = tmp_path / f"{algo}.yml"
    path.write_text(json.dumps(hp[algo]))
    return str(path)


@pytest.mark.parametrize("fmt", ["pickle", "zip"])
def test_evaluate_weights_refuses_a_planted_pickle(fmt, tmp_path, marker):
    """The real command line: ``python -m mpq_gym evaluate --workload digits_cnn --weights evil.pt``."""
    evil = _plant(tmp_path / "evil.pt", marker, fmt)
    proc = subprocess.run([sys.executable, "-m", "mpq_gym", "evaluate", "--workload", "digits_cnn", "--weights",
                           str(evil), "--config", "uniform:W8A8"], capture_output=True, text=True, cwd=REPO,
                          timeout=600)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and str(evil) in err and "torch.save(model.state_dict()" in err, err


@pytest.mark.parametrize("workload", ["digits_cnn", "resnet18", "efficientnet_lite0"])
@pytest.mark.parametrize("fmt", ["pickle", "zip"])
def test_workload_api_refuses_a_planted_pickle(workload, fmt, tmp_path, marker):
    evil = _plant(tmp_path / "evil.pt", marker, fmt)
    with pytest.raises(MissingWeightsError, match="pickled Python objects") as info:
        get_workload(workload, weights=str(evil))
    assert str(evil) in str(info.value) and "\n" not in str(info.value)


def test_bad_user_weights_name_the_file_and_the_fix(tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 50)
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(3, 3)}, wrong)
    shapes = tmp_path / "shapes.pt"
    torch.save({k: torch.zeros(1) for k in get_workload("digits_cnn").model.state_dict()}, shapes)
    not_a_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], not_a_dict)
    for path, message in [(garbage, "is not a (plain|readable) PyTorch"), (wrong, "does not fit"),
                          (shapes, "shape of"), (not_a_dict, "does not hold a state dict")]:
        with pytest.raises(MissingWeightsError, match=message) as info:
            get_workload("digits_cnn", weights=str(path))
        text = str(info.value)
        assert str(path) in text and "cache" not in text and "Delete" not in text and "\n" not in text
        err = _cli(["evaluate", "--workload", "digits_cnn", "--weights", str(path)], capsys)
        assert str(path) in err and "cache" not in err
    with pytest.raises(MissingWeightsError, match="does not fit"):
        get_workload("resnet18", weights=str(wrong))


def test_user_weights_that_fit_still_load(tmp_path):
    reference = get_workload("digits_cnn")
    path = tmp_path / "mine.pt"
    torch.save({"state_dict": reference.model.state_dict()}, path)
    loaded = get_workload("digits_cnn", weights=str(path))
    assert loaded.weights == str(path) and loaded.fingerprint() == reference.fingerprint()


@pytest.fixture(scope="module")
def reinforce_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reinforce_run")
    result = train_run("reinforce", DISCRETE, 4, 0, KWARGS, _small_hp(root, "reinforce"), root / "runs",
                       checkpoint_every=2, progress=False)
    return result.run_dir


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo_run")
    result = train_run("ppo", DISCRETE, 4, 0, KWARGS, _small_hp(root, "ppo"), root / "runs", checkpoint_every=2,
                       progress=False)
    return result.run_dir


def _copy_run(run: Path, dest: Path) -> Path:
    copy = dest / run.name
    shutil.copytree(run, copy)
    return copy


@pytest.mark.parametrize("fmt", ["pickle", "zip"])
def test_resume_and_replay_refuse_a_planted_reinforce_checkpoint(fmt, reinforce_run, tmp_path, marker, capsys):
    run = _copy_run(reinforce_run, tmp_path)
    assert created_here(run)  # a local, signed folder: REINFORCE files are never unpickled anyway
    for name in ("checkpoints/model.pt", "model.pt"):
        (run / name).unlink()
        _plant(run / name, marker, fmt)
    err = _cli(["train", "--resume", str(run), "--episodes", "6", "--quiet"], capsys)
    assert "model.pt" in err and "pickled Python objects" in err
    err = _cli(["replay", str(run)], capsys)
    assert "model.pt" in err
    # also with --trust: REINFORCE checkpoints are always loaded with weights_only=True
    _cli(["train", "--resume", str(run), "--episodes", "6", "--quiet", "--trust"], capsys)


def test_resume_of_a_local_reinforce_run_needs_no_flag(reinforce_run, tmp_path):
    run = _copy_run(reinforce_run, tmp_path)
    result = train_run(None, None, 6, 0, resume=run, checkpoint_every=2, progress=False)
    assert result.episodes == 6 and created_here(run)


def _foreign(run: Path) -> None:
    """Make a run folder look as if it came from another machine (no signature of this user)."""
    (run / TRUST_FILE).unlink()


@pytest.mark.parametrize("fmt", ["pickle", "zip"])
def test_sb3_run_from_another_machine_needs_trust(fmt, ppo_run, tmp_path, marker, capsys):
    run = _copy_run(ppo_run, tmp_path)
    _foreign(run)
    for name in ("model.zip", "checkpoints/model.zip"):
        (run / name).unlink()
        _plant(run / name, marker, fmt)
    for argv in (["train", "--resume", str(run), "--episodes", "6", "--quiet"], ["replay", str(run)]):
        err = _cli(argv, capsys)
        assert "--trust" in err and str(run) in err
    with pytest.raises(UntrustedRunError):
        train_run(None, None, 6, 0, resume=run, progress=False)


def test_a_signature_does_not_transfer(ppo_run, tmp_path, marker, capsys):
    """Copying a valid signature into another folder, or editing a signed folder's args.json, is refused."""
    run = _copy_run(ppo_run, tmp_path)
    args = json.loads((run / "args.json").read_text())
    args["env_kwargs"]["weights"] = str(tmp_path / "elsewhere.pt")
    (run / "args.json").write_text(json.dumps(args, indent=2))
    assert not created_here(run)
    assert "--trust" in _cli(["replay", str(run)], capsys)


def test_local_sb3_run_resumes_and_replays_without_flag(ppo_run, tmp_path):
    from mpq_gym.cli.replay import evaluate_run
    run = _copy_run(ppo_run, tmp_path)
    assert created_here(run)
    result = train_run(None, None, 6, 0, resume=run, checkpoint_every=2, progress=False)
    assert result.episodes == 6 and created_here(run)
    assert evaluate_run(run, "search")["agent"]["choices"]


def test_trust_flag_resumes_a_genuine_foreign_sb3_run(ppo_run, tmp_path):
    run = _copy_run(ppo_run, tmp_path)
    _foreign(run)
    with pytest.raises(UntrustedRunError):
        train_run(None, None, 6, 0, resume=run, progress=False)
    result = train_run(None, None, 6, 0, resume=run, checkpoint_every=2, progress=False, trust=True)
    assert result.episodes == 6 and created_here(run)  # resumed here: signed for next time


def test_damaged_run_files_are_one_line_errors(reinforce_run, tmp_path, capsys):
    run = _copy_run(reinforce_run, tmp_path)
    (run / "checkpoints" / "model.pt").write_bytes(b"garbage")
    assert "model.pt" in _cli(["train", "--resume", str(run), "--quiet"], capsys)
    torch.save({"x": 1}, run / "checkpoints" / "model.pt")
    assert "not a REINFORCE checkpoint" in _cli(["train", "--resume", str(run), "--quiet"], capsys)
    (run / "args.json").write_text("{\"algo\": 3}")
    assert "args.json" in _cli(["replay", str(run)], capsys)
    with pytest.raises(InputFileError):
        train_run(None, None, 6, 0, resume=run, progress=False)


@pytest.mark.parametrize("fmt", ["pickle", "zip"])
def test_validate_refuses_weights_named_by_a_bench_folder(fmt, tmp_path, marker, capsys):
    evil = _plant(tmp_path / "evil.pt", marker, fmt)
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "bench.json").write_text(json.dumps({"env_id": DISCRETE, "env_kwargs": {**KWARGS, "weights": str(evil)},
                                                  "policies": ["uniform"], "budgets": [0.2], "seeds": 1}))
    with (bench / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerow({c: "0" for c in COLUMNS})
    err = _cli(["validate", str(bench / "results.csv"), "--quiet"], capsys)
    assert str(evil) in err and "pickled Python objects" in err
