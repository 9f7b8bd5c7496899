"""Shipped problem tables: surrogate mode without the network or the data, refused when doctored, equal to
what the code computes."""
from __future__ import annotations

import dataclasses
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import mpq_gym  # noqa: F401  (registers the ids)
from mpq_gym import tabular
from mpq_gym.cache import content_hash
from mpq_gym.envs.env import split_env_kwargs
from mpq_gym.errors import ConfigError, InputFileError, MissingDataError
from mpq_gym.problem import ProblemSpec
from mpq_gym.tabular import (SHIPPED, check_rows, diff_tables, find_table, load_table, save_table, table_from_problem,
                             table_key, table_name)

ROOT = Path(__file__).resolve().parents[1]
LITE0 = "MixedPrecision-EfficientNetLite0-v0"
DIGITS = "MixedPrecision-DigitsCNN-v0"
#: a DigitsCNN problem whose surrogate is not constant (the hardware set leaves its accuracy at FP32's)
NARROW = {"candidates": "W2A8,W4A8,W8A8", "sensitivity_images": 64}


def shipped_spec(env_id: str, kwargs: dict | None = None) -> ProblemSpec:
    return split_env_kwargs(env_id, kwargs or {})[0]


def rewrite(path: Path, edit, keep_checksum: bool = False) -> None:
    """Apply ``edit`` to the JSON of a table file; recompute its checksum unless ``keep_checksum``."""
    data = json.loads(gzip.decompress(path.read_bytes()))
    edit(data)
    if not keep_checksum:
        data["checksum"] = content_hash({k: v for k, v in data.items() if k != "checksum"}, length=32)
    path.write_bytes(gzip.compress(json.dumps(data).encode()))


@pytest.fixture(scope="module")
def narrow_tables(tmp_path_factory) -> Path:
    """A folder holding the table of the NARROW DigitsCNN problem, computed on the real workload."""
    folder = tmp_path_factory.mktemp("tables")
    spec = shipped_spec(DIGITS, NARROW)
    save_table(table_from_problem(dataclasses.replace(spec, tabular=False).build(), table_key(spec)), folder)
    return folder


@pytest.fixture
def tables_in(monkeypatch):
    """Point the shipped-table lookup at another folder."""
    def use(folder: Path) -> None:
        monkeypatch.setattr(tabular, "TABLE_DIR", folder)
    return use


# ------------------------------------------------------------------- what ships
@pytest.mark.parametrize("env_id,kwargs", SHIPPED)
def test_every_shipped_entry_has_a_small_usable_table(env_id: str, kwargs: dict) -> None:
    spec = shipped_spec(env_id, kwargs)
    table = find_table(spec)
    assert table is not None, f"no table for {env_id} {kwargs}: run `mpq-gym tabular build`"
    assert table.key == table_key(spec) and not table.shape_problems()
    assert Path(table.source).stat().st_size < 100_000
    assert np.isfinite(table.calibration_values).all() and table.fp32_quality == table.fp32[table.primary_metric]


def test_no_table_for_the_users_own_data_or_when_opted_out() -> None:
    spec = shipped_spec(DIGITS)
    assert table_key(spec) is not None
    for change in ({"tabular": False}, {"data_dir": "/elsewhere"}, {"weights": "w.pt"}, {"random_weights": True},
                   {"workload_kwargs": {"batch_size": 8}}):
        assert table_key(dataclasses.replace(spec, **change)) is None, change
    assert find_table(dataclasses.replace(spec, seed=1)) is None  # no table ships for another seed
    with pytest.raises(ConfigError, match="tabular"):
        ProblemSpec(tabular="yes")


# ------------------------------------------------------------------- starting without data
START = """
import json, sys, time
t = time.perf_counter()
import gymnasium as gym, mpq_gym
env = gym.make("{env_id}", reward_mode="surrogate")
env.reset(seed=0)
reset_s = time.perf_counter() - t
done = False
while not done:
    _, reward, done, _, info = env.step(env.action_space.sample())
vec = gym.make_vec("{env_id}", num_envs=3)
vec.reset(seed=0)
for _ in range(env.unwrapped.n_groups):
    _, rewards, terminated, _, vinfo = vec.step(vec.action_space.sample())
print(json.dumps({{"reset_s": reset_s, "reward": reward, "score": info["normalized_score"],
                  "vec_rewards": rewards.tolist(), "terminated": terminated.tolist(),
                  "from_table": env.unwrapped.problem.table is not None,
                  "network_loaded": env.unwrapped.problem._workload is not None,
                  "heavy_modules": [m for m in ("timm", "torchvision", "transformers") if m in sys.modules]}}))
"""


@pytest.mark.parametrize("env_id", [LITE0, "MixedPrecision-MiniLM-v0"])
def test_surrogate_mode_starts_from_the_table_without_data(env_id: str, tmp_path: Path) -> None:
    env = {**os.environ, "MPQ_GYM_CACHE": str(tmp_path / "cache"), "MPQ_GYM_DATA": str(tmp_path / "absent"),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", START.format(env_id=env_id)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["from_table"] and not out["network_loaded"] and out["heavy_modules"] == []
    assert all(np.isfinite([out["reward"], out["score"], *out["vec_rewards"]])) and all(out["terminated"])
    assert not any((tmp_path / "cache").rglob("*.pt"))  # nothing computed, so nothing cached


@pytest.mark.parametrize("env_id", [LITE0, "MixedPrecision-MiniLM-v0"])
def test_exact_use_without_data_names_the_fix(env_id: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MPQ_GYM_DATA", str(tmp_path / "absent"))
    env = gym.make(env_id, reward_mode="exact")
    env.reset(seed=0)
    with pytest.raises(MissingDataError) as caught:
        for _ in range(env.unwrapped.n_groups):
            env.step(0)
    message = str(caught.value)
    assert "\n" not in message and "covers surrogate rewards only" in message and "MPQ_GYM_DATA" in message
    with pytest.raises(MissingDataError, match="covers surrogate rewards only"):  # the harness's oracle too
        env.unwrapped.problem.quality(env.unwrapped.problem.config([0] * env.unwrapped.n_groups))
    with pytest.raises(MissingDataError, match="MPQ_GYM_DATA"):  # opting out computes everything: needs the data
        gym.make(env_id, tabular=False)


# ------------------------------------------------------------------- equal to what the code computes
def test_the_digits_table_equals_a_recomputation() -> None:
    spec = shipped_spec(DIGITS)
    shipped = find_table(spec)
    computed = table_from_problem(dataclasses.replace(spec, tabular=False).build(), table_key(spec))
    assert diff_tables(shipped, computed) == []
    changed = dataclasses.replace(computed, sensitivity=computed.sensitivity + 1e-3)
    assert diff_tables(shipped, changed) == ["sensitivity differ"]  # the comparison can fail


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["efficientnet_lite0", "minilm"])
def test_the_shipped_tables_match_their_workload(workload: str) -> None:
    """Each table of the workload: the fingerprint of the weights and data, the layers and groups, the FP32
    quality and one sampled phase-1 row, recomputed on one problem built from the real workload."""
    specs = [s for s in (shipped_spec(e, k) for e, k in SHIPPED) if s.workload == workload]
    assert len(specs) == 2
    problem = dataclasses.replace(specs[0], tabular=False).build()
    rng = np.random.default_rng(0)
    for spec in specs:
        table = find_table(spec)
        assert check_rows(table, problem, [int(rng.integers(len(table.groups)))]) == []
    doctored = dataclasses.replace(table, fp32={**table.fp32, table.primary_metric: table.fp32_quality + 1.0})
    assert check_rows(doctored, problem, []) == [f"FP32 quality: {doctored.fp32_quality} != {table.fp32_quality}"]


def test_surrogate_rewards_from_the_table_equal_the_full_problems(narrow_tables: Path, tables_in) -> None:
    tables_in(narrow_tables)
    kwargs = {**NARROW, "reward_shaping": "quality"}
    tabular_env, full_env = gym.make(DIGITS, **kwargs), gym.make(DIGITS, tabular=False, **kwargs)
    assert tabular_env.unwrapped.problem.table is not None and full_env.unwrapped.problem.table is None
    rng = np.random.default_rng(0)
    rewards = {id(e): [] for e in (tabular_env, full_env)}
    for episode in range(30):
        actions = rng.integers(3, size=tabular_env.unwrapped.n_groups)
        for env in (tabular_env, full_env):
            obs, _ = env.reset(seed=episode)
            observations = [obs]
            for a in actions:
                obs, reward, *_, info = env.step(int(a))
                observations.append(obs)
            rewards[id(env)].append((reward, info["normalized_score"], np.concatenate(observations)))
    for (r_tab, s_tab, o_tab), (r_full, s_full, o_full) in zip(rewards[id(tabular_env)], rewards[id(full_env)]):
        assert r_tab == r_full and s_tab == s_full and np.array_equal(o_tab, o_full)
    assert len({r for r, _, _ in rewards[id(full_env)]}) > 3  # the rewards vary: the comparison can fail
    vectors = [gym.make_vec(DIGITS, num_envs=4, tabular=t, **kwargs) for t in (True, False)]
    actions = rng.integers(3, size=(tabular_env.unwrapped.n_groups, 4))
    finals = []
    for vec in vectors:
        vec.reset(seed=1)
        for a in actions:
            _, vec_rewards, *_ = vec.step(a)
        finals.append(vec_rewards)
    assert np.array_equal(*finals)


# ------------------------------------------------------------------- doctored tables
@pytest.fixture
def doctored(narrow_tables: Path, tmp_path: Path, tables_in) -> Path:
    """A copy of the NARROW table that the lookup uses."""
    source = next(narrow_tables.glob("*.json.gz"))
    copy = tmp_path / source.name
    copy.write_bytes(source.read_bytes())
    tables_in(tmp_path)
    return copy


@pytest.mark.parametrize("edit,keep_checksum,match", [
    (lambda d: d.update(format=0), False, "schema version 0"),
    (lambda d: d["sensitivity_db"][0].__setitem__(0, 99.0), True, "checksum mismatch"),
    (lambda d: d["key"].update(seed=7), False, "renamed or edited"),
    (lambda d: d["costs"]["bops"]["table"][0].__setitem__(0, 1.0), False, "bops costs differ"),
    (lambda d: d.update(sensitivity_db=d["sensitivity_db"][1:]), False, "malformed"),
])
def test_a_doctored_table_is_refused(doctored: Path, edit, keep_checksum: bool, match: str) -> None:
    rewrite(doctored, edit, keep_checksum)
    with pytest.raises((InputFileError, ConfigError), match=match) as caught:
        gym.make(DIGITS, **NARROW)
    assert "\n" not in str(caught.value) and "mpq-gym tabular build" in str(caught.value)


def test_a_table_of_other_weights_or_data_is_refused_on_first_exact_use(doctored: Path) -> None:
    rewrite(doctored, lambda d: d.update(fingerprint="0" * 20))
    env = gym.make(DIGITS, reward_mode="exact", **NARROW)
    env.reset(seed=0)
    with pytest.raises(ConfigError, match="fingerprint .* tabular=False") as caught:
        for _ in range(env.unwrapped.n_groups):
            env.step(2)
    assert "\n" not in str(caught.value)


def test_a_table_of_other_quantizer_settings_is_skipped_with_a_warning(doctored: Path) -> None:
    rewrite(doctored, lambda d: d["code"].update(sensitivity_format=-1))
    with pytest.warns(UserWarning, match="other quantizer settings"):
        problem = shipped_spec(DIGITS, NARROW).build()
    assert problem.table is None  # computed instead


def test_the_table_file_is_named_by_its_key_and_reproducible(narrow_tables: Path, tmp_path: Path) -> None:
    source = next(narrow_tables.glob("*.json.gz"))
    table = load_table(source)
    assert source.name == table_name(table.key) and source.name.startswith("digits_cnn-custom-")
    again = save_table(table, tmp_path)
    assert again.read_bytes() == source.read_bytes()  # no timestamp: rebuilding an unchanged table changes nothing
