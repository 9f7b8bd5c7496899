import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

import mpq_gym
from mpq_gym.envs import env_ids
from mpq_gym.errors import ConfigError
from mpq_gym.workloads import SplitSizes

TINY = {"workload_kwargs": {"split_sizes": SplitSizes(4, 4, 4)}, "sensitivity_images": 2, "surrogate_points": 3}
DIGITS = "MixedPrecision-DigitsCNN-v0"


def _make(env_id, **kwargs):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(env_id, **kwargs)


def _kwargs(env_id, tiny_hf=None):
    if "DigitsCNN" in env_id:
        return {}
    if "EfficientNetLite0" in env_id or "MiniLM" in env_id:
        return dict(TINY)  # real weights, 12 real images / pairs: mechanics only
    if "-HF-" in env_id:  # a tiny GPT-2 saved by the fixture: mechanics only
        return {**TINY, "workload": f"hf:{tiny_hf['gpt']}", "workload_kwargs": {**TINY["workload_kwargs"], "dataset": tiny_hf["data"]}}
    return {**TINY, "random_weights": True}  # torchvision weights are not on this offline machine


@pytest.mark.parametrize("env_id", env_ids())
def test_check_env_passes_for_every_id(env_id, tiny_hf):
    """gymnasium's and SB3's checkers; ResNet/MobileNet ids use random weights as these are mechanics tests."""
    env = _make(env_id, **_kwargs(env_id, tiny_hf))
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped)
    assert env.spec.max_episode_steps is None  # the env ends episodes itself: terminated, never truncated


def test_the_last_step_terminates_and_does_not_truncate():
    env = _make(DIGITS, budget=0.4)
    env.reset(seed=0)
    outcomes = [env.step(0)[2:4] for _ in range(env.unwrapped.n_groups)]
    assert outcomes == [(False, False)] * (env.unwrapped.n_groups - 1) + [(True, False)]
    env.reset(seed=0)
    *_, info = [env.step(0) for _ in range(env.unwrapped.n_groups)][-1]
    assert info["normalized_score"] <= 1.0 + 1e-9 and np.isfinite(info["surrogate_quality"])


def test_string_entry_point_and_unknown_id():
    assert _make("mpq_gym:" + DIGITS).unwrapped.n_groups == 4
    with pytest.raises(gym.error.Error):
        gym.make("MixedPrecision-NoSuchNet-v0")


def _rollout(env, actions, seed=0):
    trace = [env.reset(seed=seed)]
    for a in actions:
        trace.append(env.step(a))
    return trace


def test_same_seed_same_actions_same_everything():
    actions = [0, 2, 1, 2]
    one = _rollout(_make(DIGITS, budget=0.4), actions)
    two = _rollout(_make(DIGITS, budget=0.4), actions)
    for a, b in zip(one, two):
        for x, y in zip(a, b):
            if isinstance(x, np.ndarray):
                assert np.array_equal(x, y)
            elif isinstance(x, dict):
                assert {k: str(v) for k, v in x.items()} == {k: str(v) for k, v in y.items()}
            else:
                assert x == y


def test_infeasible_budget_names_the_smallest_cost():
    with pytest.raises(ValueError, match=r"smallest achievable bops .*0\.2500 x the reference"):
        _make(DIGITS, budget=0.1)  # hardware set: cheapest is uniform W4A8 = 0.25 of W8A16


def test_bad_actions_are_refused():
    env = _make(DIGITS)
    env.reset(seed=0)
    for bad in (3, -1, 1.5):
        with pytest.raises(ValueError, match="action must be"):
            env.step(bad)
    cont = _make("MixedPrecisionContinuous-DigitsCNN-v0")
    cont.reset(seed=0)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        cont.step(np.array([1.5], dtype=np.float32))


def test_continuous_actions_use_equal_bins():
    env = _make("MixedPrecisionContinuous-DigitsCNN-v0").unwrapped
    assert [env.action_to_index(np.array([v])) for v in (-1.0, -0.34, -0.33, 0.3, 0.34, 1.0)] == [0, 0, 1, 1, 2, 2]


def test_limit_mode_pushes_over_budget_choices_into_the_budget():
    env = _make(DIGITS, budget=0.3)
    env.reset(seed=0)
    for _ in range(4):
        *_, info = env.step(2)  # W8A16 everywhere: far over 0.3
    assert info["within_budget"] and info["budget_used"] <= 1.0
    assert info["chosen"] == [2, 2, 2, 2] and info["choices"] != info["chosen"]


def test_penalty_mode_charges_the_overshoot():
    free = _make(DIGITS, budget=8.0, enforcement="penalty")
    tight = _make(DIGITS, budget=0.5, enforcement="penalty")
    rewards = []
    for env in (free, tight):
        env.reset(seed=0)
        for _ in range(4):
            _, reward, *_, info = env.step(2)
        rewards.append(reward)
    assert not info["within_budget"] and rewards[1] < rewards[0] - 5


@settings(max_examples=25, deadline=None)
@given(budget=st.floats(0.26, 0.9), seed=st.integers(0, 10_000))
def test_mask_mode_never_ends_over_budget(mask_env_factory, budget, seed):
    env = mask_env_factory(budget)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    done = False
    while not done:
        mask = env.unwrapped.action_masks()
        assert mask.any()
        _, _, done, _, info = env.step(int(rng.choice(np.flatnonzero(mask))))
    assert info["within_budget"]


@pytest.fixture(scope="module")
def mask_env_factory():
    base = _make(DIGITS).unwrapped
    return lambda budget: _make(DIGITS, budget=budget, enforcement="mask", problem=base.problem)


def test_subproc_vec_env_shares_the_disk_cache():
    # workers start fresh interpreters: the "mpq_gym:" prefix makes gymnasium import the package there
    vec = make_vec_env("mpq_gym:" + DIGITS, n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
    try:
        vec.reset()
        for _ in range(4):
            _, rewards, dones, infos = vec.step(np.array([1, 2]))
        assert dones.all() and all(info["within_budget"] for info in infos)
    finally:
        vec.close()


def test_reward_modes_and_info():
    for mode in ("surrogate", "exact", "hybrid", "pairwise"):
        env = _make(DIGITS, reward_mode=mode)
        env.reset(seed=0)
        for _ in range(4):
            _, reward, done, _, info = env.step(1)
        assert done and info["exact"] == (mode in ("exact", "hybrid"))
        assert reward == pytest.approx(0.1 * (info["quality"] - info["fp32_quality"]))
        assert {"bops", "size_bits", "latency", "energy", "bops_ratio"} <= info["costs"].keys()
        if mode == "pairwise":  # the reward from the pairwise surrogate, the normalized score from the additive one
            problem = env.unwrapped.problem
            assert info["quality"] == pytest.approx(problem.pairwise_surrogate.predict(np.array(info["choices"]))[0])
            assert info["surrogate_quality"] == pytest.approx(problem.surrogate.predict(np.array(info["choices"]))[0])


def test_reward_shapings():
    rewards = {}
    for shaping in ("delta", "quality", "relative", "normalized"):
        env = _make(DIGITS, reward_shaping=shaping, budget=8.0)
        env.reset(seed=0)
        for _ in range(4):
            _, rewards[shaping], _, _, info = env.step(0)
    q, fp32 = info["quality"], info["fp32_quality"]
    assert rewards["delta"] == pytest.approx(0.1 * (q - fp32))
    assert rewards["quality"] == pytest.approx(0.1 * q)
    assert rewards["relative"] == pytest.approx(q / fp32 - 1)
    assert rewards["normalized"] == pytest.approx(0.1 * info["normalized_score"])
    with pytest.raises(ValueError, match="reward_shaping"):
        _make(DIGITS, reward_shaping="nope")


def test_budget_on_a_hardware_lookup_table(tmp_path):
    from mpq_gym.cost import measure_cpu_latency_lut
    problem = _make(DIGITS).unwrapped.problem
    path = tmp_path / "lut.npy"
    measure_cpu_latency_lut(problem.workload.model, problem.layers, repeats=3).save(path)
    env = _make(DIGITS, lut=str(path), budget_metric="lut", budget=2.0)
    env.reset(seed=0)
    for _ in range(4):
        *_, info = env.step(1)
    assert info["budget_metric"] == "lut" and "lut" in info["costs"]


@pytest.mark.parametrize("kwargs, message", [
    ({"budget_metric": "lut"}, "needs lut="),
    ({"enforcement": "wall"}, "enforcement must be"),
    ({"reward_mode": "oracle"}, "reward_mode must be"),
    ({"budget": -1.0}, "ratio must be a finite number > 0"),
])
def test_bad_env_kwargs_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _make(DIGITS, **kwargs)


def test_maskable_ppo_trains_on_mask_mode():
    """sb3-contrib's MaskablePPO finds the masks through the env's action_masks()."""
    from sb3_contrib import MaskablePPO
    env = _make(DIGITS, enforcement="mask", budget=0.3)
    model = MaskablePPO("MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(32)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        action, _ = model.predict(obs, action_masks=env.unwrapped.action_masks(), deterministic=True)
        obs, _, done, _, info = env.step(action)
    assert info["within_budget"]


def test_budget_conditioned_env_draws_its_budget_per_episode_and_scores_against_it():
    from mpq_gym.scores import normalized_score
    env = gym.make("MixedPrecision-DigitsCNN-v0", candidates="W2A8,W4A8,W8A8", budget_range=[0.2, 0.45])
    base = env.unwrapped
    obs, _ = env.reset(seed=0)
    assert obs[-1] == pytest.approx(base.budget_table.limit / base.budget_table.reference_cost)
    seen = set()
    for _ in range(12):
        env.reset()
        for _ in range(base.n_groups):
            obs, _, done, _, info = env.step(env.action_space.sample())
        seen.add(round(info["budget_ratio"], 6))
        assert 0.2 - 1e-9 <= info["budget_ratio"] <= 0.45 + 1e-9 and info["within_budget"]
        assert info["budget_limit"] == pytest.approx(info["budget_ratio"] * base.budget_table.reference_cost)
        table = base.table_at(info["budget_ratio"])
        assert info["normalized_score"] == pytest.approx(normalized_score(base.problem, table, info["choices"]))
    assert len(seen) > 3
    obs, _ = env.reset(options={"budget": 0.333})
    assert obs[-1] == pytest.approx(0.333) and obs in env.observation_space
    for _ in range(base.n_groups):
        *_, info = env.step(2)  # the widest everywhere: the action wall brings it within 0.333
    assert info["budget_ratio"] == pytest.approx(0.333) and info["within_budget"]
    with pytest.raises(ConfigError, match="budget_range"):
        env.reset(options={"budget": 0.5})
    with pytest.raises(ConfigError, match="budget_range"):
        gym.make("MixedPrecision-DigitsCNN-v0", candidates="W2A8,W4A8,W8A8").reset(options={"budget": 0.3})
    for bad in ([0.5, 0.2], [0.3], "0.2,0.4", [0.2, float("nan")], [True, 0.4]):
        with pytest.raises(ConfigError, match="budget_range"):
            gym.make("MixedPrecision-DigitsCNN-v0", candidates="W2A8,W4A8,W8A8", budget_range=bad)
    with pytest.raises(ConfigError, match="infeasible"):
        gym.make("MixedPrecision-DigitsCNN-v0", candidates="W2A8,W4A8,W8A8", budget_range=[0.05, 0.4])


def test_project_enforcement_walls_every_step():
    """Any action sequence ends within budget; an action keeps its candidate when a completion within budget
    remains, else takes its group's most expensive candidate that keeps one and costs no more."""
    env = _make(DIGITS, candidates="W2A2,W2A4,W3A3,W4A2,W4A4,W8A8", budget=0.08, enforcement="project")
    table = env.unwrapped.budget_table
    rng, seen = np.random.default_rng(0), set()
    for episode in range(20):
        env.reset(seed=episode)
        spent, done, step = 0.0, False, 0
        while not done:
            action = int(rng.integers(6))
            feasible = table.feasible_actions(step, spent)
            _, _, done, truncated, info = env.step(action)
            taken = info["choices"][step] if done else int(env.unwrapped._choices[step])
            assert feasible[taken] and table.table[step, taken] <= table.table[step, action] and not truncated
            assert info["projected"] == (not feasible[action]) == (taken != action)
            cheaper = feasible & (table.table[step] <= table.table[step, action])
            assert table.table[step, taken] == table.table[step][cheaper].max()
            seen.add(info["projected"])
            spent, step = spent + table.table[step, taken], step + 1
        assert info["within_budget"]
    assert seen == {False, True}


@pytest.mark.parametrize("enforcement", ["limit", "mask"])
def test_lagrangian_dense_reward_charges_each_choice_its_reduced_cost(enforcement):
    kwargs = dict(candidates="W2A2,W2A4,W3A3,W4A2,W4A4,W8A8", budget=0.08, enforcement=enforcement)
    sparse = _make(DIGITS, **kwargs)
    dense = _make(DIGITS, dense_reward=True, dense_potential="lagrangian", **kwargs)
    env = dense.unwrapped
    table, noise = env.budget_table, env.reward_surrogate.noise
    k, (mu, priced) = env.noise_slope(table), env.noise_price(table)
    assert k > 0 and mu > 0  # the least noisy configuration does not fit this budget, so cost has a price
    assert table.fits(priced) and not table.fits(np.argmin(noise + 0.999 * mu * table.table, axis=1))
    reduced = noise + mu * table.table
    start = env.potentials(np.zeros((1, env.n_groups), dtype=int), 0, [table])[0]
    rng = np.random.default_rng(0)
    for episode in range(6):
        (_, info), _ = sparse.reset(seed=episode), dense.reset(seed=episode)
        done, returns, step = False, [0.0, 0.0], 0
        while not done:  # the priced-in choice where allowed half the time, else a random allowed one
            allowed = np.flatnonzero(info["action_mask"])
            action = int(priced[step] if priced[step] in allowed and rng.random() < 0.5 else rng.choice(allowed))
            _, r_sparse, done, _, info = sparse.step(action)
            _, r_dense, _, _, _ = dense.step(action)
            if not done:  # -k x the choice's reduced cost: 0 for the priced-in choice, below 0 otherwise
                assert r_dense == pytest.approx(-k * (reduced[step, action] - reduced[step].min()), abs=1e-12)
                assert r_dense <= 1e-12 and (action != priced[step] or r_dense == pytest.approx(0.0, abs=1e-12))
            returns[0], returns[1], step = returns[0] + r_sparse, returns[1] + r_dense, step + 1
        assert returns[1] == pytest.approx(returns[0] - start)  # potential-based: the same return, less a constant
    loose = _make(DIGITS, dense_reward=True, dense_potential="lagrangian", candidates=kwargs["candidates"], budget=1.0)
    assert loose.unwrapped.noise_price(loose.unwrapped.budget_table)[0] == 0.0  # the quietest fits: no price
    with pytest.raises(ConfigError, match="add dense_reward=true"):
        _make(DIGITS, dense_potential="lagrangian")
    with pytest.raises(ConfigError, match="dense_potential must be one of"):
        _make(DIGITS, dense_reward=True, dense_potential="dual")


@pytest.mark.parametrize("enforcement", ["limit", "mask", "penalty"])
def test_dense_reward_pays_the_sparse_return_step_by_step(enforcement):
    kwargs = dict(candidates="W2A2,W2A4,W3A3,W4A2,W4A4,W8A8", budget=0.08, enforcement=enforcement)
    sparse, dense = (_make(DIGITS, dense_reward=flag, **kwargs) for flag in (False, True))
    env = dense.unwrapped
    k = env.noise_slope(env.budget_table)
    assert k > 0
    noise = env.reward_surrogate.noise
    start = env.potentials(np.zeros((1, env.n_groups), dtype=int), 0, [env.budget_table])[0]
    rng = np.random.default_rng(0)
    for episode in range(6):
        (_, info), _ = sparse.reset(seed=episode), dense.reset(seed=episode)
        done, returns, step = False, [0.0, 0.0], 0
        while not done:
            action = int(rng.choice(np.flatnonzero(info["action_mask"])))
            _, r_sparse, done, _, info = sparse.step(action)
            _, r_dense, _, _, _ = dense.step(action)
            if not done:  # -k x the noise this choice adds over the group's least noisy candidate
                assert r_sparse == 0 and r_dense == pytest.approx(-k * (noise[step, action] - noise[step].min()))
            returns[0], returns[1], step = returns[0] + r_sparse, returns[1] + r_dense, step + 1
        assert returns[1] == pytest.approx(returns[0] - start)  # potential-based: the same return, less a constant
    with pytest.raises(ValueError, match="dense_reward must be true or false"):
        _make(DIGITS, dense_reward="yes")
