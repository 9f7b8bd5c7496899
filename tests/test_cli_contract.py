"""Every bad command line exits with status 2 and one ``error:`` line naming the fix, never a traceback
(the cases live in benchmarks/cli_contract.py, which also runs them as real subprocesses)."""
from __future__ import annotations

import pytest

from benchmarks.cli_contract import CASES, Case, check, make_fixtures, resolve
from mpq_gym.cli.common import run_cli
from mpq_gym.cli.main import main


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contract")
    make_fixtures(tmp)
    return tmp


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_keeps_the_contract(case: Case, fixtures, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, resolve(case, fixtures))
    stderr = capsys.readouterr().err
    assert check(case, exit_info.value.code, stderr) == "", stderr


def test_a_failed_start_leaves_nothing_that_blocks_the_corrected_rerun(fixtures, capsys):
    out = fixtures / "rerun"
    base = ["bench", "--env", "MixedPrecision-DigitsCNN-v0", "--policies", "uniform", "--seeds", "1", "--quiet",
            "--out", str(out)]
    with pytest.raises(SystemExit) as bad:
        run_cli(main, [*base, "--budgets", "1e-9"])
    assert bad.value.code == 2 and not (out / "bench.json").exists()
    with pytest.raises(SystemExit) as good:
        run_cli(main, [*base, "--budgets", "0.5", "--env-kwargs", "sensitivity_images=64"])
    assert good.value.code == 0, capsys.readouterr().err
