"""Optuna tuning (mpq-gym tune) and rl-baselines3-zoo on the mpq-gym ids, on DigitsCNN."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mpq_gym.agents import tuning
from mpq_gym.agents.training import load_hyperparams
from mpq_gym.cli.tune import main as tune_main
from mpq_gym.errors import ConfigError

ZOO_CONF = Path(__file__).resolve().parents[1] / "agents" / "hyperparams" / "zoo" / "ppo.yml"


def test_tune_writes_a_preset_that_trains(tmp_path, capsys):
    out = tmp_path / "ppo.yml"
    argv = ["--algo", "ppo", "--env", "MixedPrecision-DigitsCNN-v0", "--trials", "3", "--episodes", "60",
            "--env-kwargs", "candidates=W2A8,W4A8,W8A8", "budget=0.3", "--storage", str(tmp_path / "s.db"),
            "--out", str(out)]
    assert tune_main(argv) == 0
    preset = load_hyperparams("ppo", path=out)
    assert {"learning_rate", "n_epochs", "n_envs"} <= set(preset)
    assert yaml.safe_load(out.read_text())["default"]["gamma"] == 1.0  # the base preset's fixed keys stay
    assert tune_main(argv) == 0  # the study resumes: no new trials
    assert '"trials": 3' in capsys.readouterr().out
    trials = (tmp_path / "ppo.trials.csv").read_text().splitlines()
    assert trials[0].startswith("number,state,objective,normalized") and len(trials) == 4


def test_tune_starts_from_a_given_preset(tmp_path, monkeypatch):
    """--hyperparams: the trials train on its env kwargs (a dense reward whose price the env reports), and the
    written preset keeps them."""
    from mpq_gym.agents import training
    base = tmp_path / "base.yml"
    base.write_text("env_kwargs: {dense_reward: true, dense_potential: lagrangian}\n")
    seen = []
    real = training.env_on_problem
    monkeypatch.setattr("mpq_gym.agents.tuning.env_on_problem",
                        lambda *a, **k: seen.append(a[3]["env_kwargs"]) or real(*a, **k))
    out = tmp_path / "ddpg.yml"
    argv = ["--algo", "ddpg", "--env", "MixedPrecision-DigitsCNN-v0", "--trials", "1", "--episodes", "30",
            "--env-kwargs", "candidates=W2A8,W4A8,W8A8", "budget=0.3", "--storage", str(tmp_path / "s.db"),
            "--out", str(out), "--hyperparams", str(base)]
    assert tune_main(argv) == 0
    assert seen == [{"dense_reward": True, "dense_potential": "lagrangian"}]
    preset = yaml.safe_load(out.read_text())["default"]
    assert preset["env_kwargs"] == seen[0] and preset["sigma_decay"] in (0.95, 0.99, 0.995, 0.998, 0.999)
    with pytest.raises(ConfigError, match="does not exist"):  # run_cli turns it into one line, exit status 2
        tune_main(argv[:-2] + ["--hyperparams", str(tmp_path / "missing.yml")])


def test_rl_zoo3_trains_on_an_mpq_gym_id(tmp_path):
    logs = tmp_path / "logs"
    run = subprocess.run([sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "MixedPrecision-DigitsCNN-v0",
                          "--gym-packages", "mpq_gym", "--conf-file", str(ZOO_CONF), "-n", "256", "-f", str(logs),
                          "--eval-freq", "-1", "--seed", "0"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert list(logs.glob("ppo/MixedPrecision-DigitsCNN-v0_*/MixedPrecision-DigitsCNN-v0.zip"))


class _Trial:
    """What the reporter needs of an Optuna trial: report and should_prune."""

    def __init__(self) -> None:
        self.reports = []

    def report(self, value, step):
        self.reports.append((value, step))

    def should_prune(self):
        return False


def test_clock_stopped_trials_report_at_equal_times(monkeypatch):
    """With --minutes the pruner compares trials at equal training time (a preset with 256 copies per update is
    not judged after its first update), with a third of the trial as warm-up; with episodes alone, every 50."""
    now = [0.0]
    monkeypatch.setattr(tuning.time, "monotonic", lambda: now[0])
    clocked, counted = _Trial(), _Trial()
    reporters = (tuning._TrialReporter(clocked, 50, seconds=5), tuning._TrialReporter(counted, 50))
    for t, episode in [(1.0, 50), (4.9, 60), (5.2, 2000), (6.0, 2001), (12.0, 2500), (14.0, 2550)]:
        now[0] = t
        for reporter in reporters:
            reporter.log_metrics({"episode/best_normalized": episode / 1e4}, episode)
    assert clocked.reports == [(0.2, 5), (0.25, 10)]
    assert counted.reports == [(0.005, 50), (0.2, 2000), (0.25, 2500), (0.255, 2550)]
    assert tuning._warmup(2) == 40 and tuning._warmup(None) == 200
