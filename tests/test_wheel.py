"""The wheel works: built from the tree, installed non-editable, it trains an agent from the console script.

It installs (``--no-deps``) into a folder put first on ``PYTHONPATH`` and runs from outside the checkout,
so nothing resolves to the source tree; the dependencies come from the test environment.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                           "--wheel-dir", str(out), "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "deprecated" not in proc.stderr.lower() or "License classifiers" not in proc.stderr
    return next(out.glob("mpq_gym-*.whl"))


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"mpq_gym"}  # no top-level agents/baselines
    assert "mpq_gym/agents/hyperparams/ppo.yml" in names and "mpq_gym/py.typed" in names
    assert "mpq_gym/baselines/ilp.py" in names and not any(n.startswith("mpq_gym/benchmarks") for n in names)
    shipped = Path(__file__).resolve().parent.parent / "mpq_gym" / "data"
    for table in [*shipped.glob("tabular/*.json.gz"), *shipped.glob("groundtruth/*.csv.gz")]:  # the shipped tables
        assert f"mpq_gym/data/{table.parent.name}/{table.name}" in names
    info = next(t for t in top if t.endswith(".dist-info"))
    assert any(n.startswith(f"{info}/licenses/LICENSE") or n == f"{info}/LICENSE" for n in names)
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "mpq-gym = mpq_gym.cli.main:run" in entry_points
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata


def test_installed_wheel_trains_an_agent(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--quiet",
                           "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import mpq_gym, mpq_gym.agents.training as t; print(mpq_gym.__file__); print(t.PRESETS)")
    where = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(site)) for line in where.stdout.split())
    script = site / "bin" / "mpq-gym"
    proc = subprocess.run([sys.executable, str(script), "train", "--algo", "ppo", "--env",
                           "MixedPrecision-DigitsCNN-v0", "--episodes", "2", "--quiet", "--runs-dir",
                           str(tmp_path / "runs"), "--env-kwargs", "sensitivity_images=64"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert '"episodes": 2' in proc.stdout
