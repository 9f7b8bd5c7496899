"""The MPQ-Bench leaderboard on DigitsCNN: entries cut from a suite run are replayed and ranked; a doctored
row, a missing cell, a changed task or a missing entry.json is listed as failing, not ranked."""
import json
from pathlib import Path

import pytest

from mpq_gym.bench import aggregate
from mpq_gym.bench import leaderboard as lb
from mpq_gym.bench.runner import read_results, write_results
from mpq_gym.bench.suite_runner import run_suite
from mpq_gym.bench.suites import SUITES, Suite, SuiteTask, get_suite
from mpq_gym.cli import leaderboard as lb_cli
from mpq_gym.cli.common import run_cli
from mpq_gym.errors import ConfigError

ENV = "MixedPrecision-DigitsCNN-v0"
TINY = Suite("test-board", 1, "one DigitsCNN task at two budgets", (
    SuiteTask("low", ENV, {"candidates": "W2A2,W2A4,W3A3,W4A2,W4A4,W8A8", "weight_rounding": "nearest"}, (0.05, 0.08),
              seeds=2, max_evaluations=4, track="nearest"),))
POLICIES = ("uniform", "ilp", "random")
#: TINY's task plus one more: a run of "low" alone makes partial entries
TWO = Suite("test-board-two", 1, "two DigitsCNN tasks", (TINY.tasks[0], SuiteTask(
    "mid", ENV, {"candidates": "W4A4,W8A8", "weight_rounding": "nearest"}, (0.3,), seeds=2, max_evaluations=4,
    track="nearest")))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run_suite(TINY, list(POLICIES), out, progress=False)
    return out


@pytest.fixture
def root(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(aggregate, "backend", lambda: "numpy")
    board = tmp_path / "leaderboard"
    for policy in POLICIES:
        lb.submit(run_dir, TINY, policy, board / TINY.name / policy, method=policy.upper(), link="https://x.org/p")
    return board


def build(root: Path) -> dict:
    lb.build_leaderboard(root, {TINY.name: TINY})
    return json.loads((root / "leaderboard.json").read_text())[TINY.name]


def test_valid_entries_are_replayed_and_ranked(root):
    data = build(root)
    assert data["failing"] == {}
    names = [e["name"] for e in data["ranked"]]
    assert sorted(names) == sorted(POLICIES)
    scores = [e["normalized"]["iqm"] for e in data["ranked"]]
    assert scores == sorted(scores, reverse=True)
    text = (root / "LEADERBOARD.md").read_text()
    assert "## test-board" in text and "| 1 | ilp | [ILP](https://x.org/p) | `ilp` |" in text
    assert (root / TINY.name / "profile.png").stat().st_size > 10_000
    meta = {p: json.loads((root / TINY.name / p / "entry.json").read_text()) for p in POLICIES}
    assert [meta[p]["deterministic"] for p in POLICIES] == [True, True, False]
    readme = (root / TINY.name / "random" / "README.md").read_text()
    assert "mpq-gym bench --suite test-board --policies random" in readme


def test_a_doctored_row_is_rejected(root):
    path = root / TINY.name / "random" / "low" / "results.csv"
    rows = read_results(path)
    rows[2]["quality"] = str(float(rows[2]["quality"]) + 0.25)  # a better number than the configuration gives
    write_results(path, rows)
    data = build(root)
    assert [e["name"] for e in data["ranked"]] == [n for n in ("ilp", "uniform")]
    (reason,) = data["failing"]["random"]
    assert reason.startswith("low: row 4 does not reproduce (quality recorded")
    text = (root / "LEADERBOARD.md").read_text()
    assert "- **random**: low: row 4 does not reproduce" in text


def test_incomplete_changed_or_unlabelled_entries_fail(root):
    ilp, uniform, random = (root / TINY.name / p for p in ("ilp", "uniform", "random"))
    rows = read_results(random / "low" / "results.csv")
    write_results(random / "low" / "results.csv", rows[:-1])  # a seed missing
    spec = json.loads((uniform / "low" / "bench.json").read_text())
    spec["env_kwargs"]["sensitivity_images"] = 8  # another task
    (uniform / "low" / "bench.json").write_text(json.dumps(spec))
    (ilp / "entry.json").unlink()
    data = build(root)
    assert data["ranked"] == [] and sorted(data["failing"]) == ["ilp", "random", "uniform"]
    assert any("entry.json is missing" in r for r in data["failing"]["ilp"])
    assert any("cells (budget, seed)" in r for r in data["failing"]["random"])
    assert any("the suite fixes" in r for r in data["failing"]["uniform"])
    assert "No ranked entries yet." in (root / "LEADERBOARD.md").read_text()


def test_partial_entries_are_ranked_apart_from_full_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(aggregate, "backend", lambda: "numpy")
    run = tmp_path / "run"
    run_suite(TWO, ["ilp", "random"], run, tasks=["low"], progress=False)
    board = tmp_path / "board"
    with pytest.raises(ConfigError, match="--tasks"):  # "mid" was not run: a full entry is refused
        lb.submit(run, TWO, "ilp", board / TWO.name / "ilp")
    for policy in ("ilp", "random"):
        lb.submit(run, TWO, policy, board / TWO.name / policy, tasks=["low"])
    assert "partial entry, tasks: low" in (board / TWO.name / "ilp" / "README.md").read_text()
    bad = board / TWO.name / "bad"
    lb.submit(run, TWO, "ilp", bad, tasks=["low"])
    meta = json.loads((bad / "entry.json").read_text())
    (bad / "entry.json").write_text(json.dumps({**meta, "tasks": ["low", "high"]}))  # a task the suite lacks
    lb.build_leaderboard(board, {TWO.name: TWO})
    data = json.loads((board / "leaderboard.json").read_text())[TWO.name]
    assert data["ranked"] == [] and list(data["failing"]) == ["bad"]
    assert "must list distinct tasks" in data["failing"]["bad"][0]
    (partial,) = data["partial"]
    assert partial["tasks"] == ["low"] and partial["problems"] == ["low@0.05", "low@0.08"]
    assert [e["name"] for e in partial["ranked"]] == ["ilp", "random"]
    text = (board / "LEADERBOARD.md").read_text()
    assert "No ranked entry covers every task yet." in text
    assert "### test-board-two, partial entries: tasks low" in text and "| 1 | ilp |" in text
    assert (board / TWO.name / "profile_partial1.png").stat().st_size > 10_000
    monkeypatch.setitem(SUITES, TWO.name, TWO)
    monkeypatch.setattr(lb_cli, "SUITES", {TWO.name: TWO})
    assert lb_cli.main(["--root", str(board), "--quiet"]) == 1  # "bad" fails
    assert "test-board-two: ranked [], partial (low) ['ilp', 'random'], failing ['bad']" in capsys.readouterr().out


def test_the_command_line_submits_and_builds(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(aggregate, "backend", lambda: "numpy")
    monkeypatch.setitem(SUITES, TINY.name, TINY)
    monkeypatch.setattr(lb_cli, "SUITES", {TINY.name: TINY})
    root = tmp_path / "board"
    argv = ["submit", str(run_dir), "--suite", TINY.name, "--policy", "ilp", "--entry", "ilp", "--root", str(root)]
    assert lb_cli.main(argv) == 0
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lb_cli.main, argv)  # the entry exists
    assert exit_info.value.code == 2 and "choose another --entry" in capsys.readouterr().err
    assert lb_cli.main(["--root", str(root), "--quiet"]) == 0
    assert "ranked ['ilp'], failing []" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lb_cli.main, ["--root", str(root), "--env-kwargs", "candidates=W8A8"])
    assert exit_info.value.code == 2


def test_the_committed_entries_describe_the_released_suites():
    """Structure only (no replay, which needs EfficientNet-Lite0): every committed entry covers the released
    suite's tasks (a partial entry: its listed tasks) with its seeds, budgets and digest."""
    suite = get_suite("mpqbench-v1-lite")
    entries = lb.entry_folders(REPO / "leaderboard", suite)
    baselines = {"uniform", "random", "greedy", "ilp", "evolution"}
    assert {e.name for e in entries} >= baselines | {"ppo", "maskable_ppo", "reinforce", "recurrent_ppo", "ddpg"}
    for entry in entries:
        assert lb.check_entry(entry, suite, replay=False).reasons == [], entry.name
    assert "## mpqbench-v1-lite" in (REPO / "leaderboard" / "LEADERBOARD.md").read_text()
    full = get_suite("mpqbench-v1")  # partial entries: the tasks whose weights are offline here
    entries = lb.entry_folders(REPO / "leaderboard", full)
    assert {e.name for e in entries} >= baselines | {"ppo", "maskable_ppo"}
    for entry in entries:
        check = lb.check_entry(entry, full, replay=False)
        assert check.reasons == [] and check.tasks(full) == [
            "lite0-hardware", "lite0-expanded", "minilm-expanded", "lite0-hardware-adaround"], entry.name
