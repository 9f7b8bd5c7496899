"""Test fixtures: an isolated cache per session, the repository's reference data, shared workloads."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["MPQ_GYM_CACHE"] = str(tmp_path_factory.mktemp("mpq_cache"))
    os.environ.setdefault("MPQ_GYM_DATA", str(SHARED_DATA))


@pytest.fixture(scope="session")
def digits():
    from mpq_gym.workloads import get_workload
    return get_workload("digits_cnn")


@pytest.fixture(scope="session")
def digits_evaluator(digits):
    from mpq_gym.evaluate.exact import ExactEvaluator
    return ExactEvaluator(digits, progress=False)
