"""The batched vector env (``gym.make_vec``) and its SB3 adapter."""
import gymnasium as gym
import numpy as np
import pytest

import mpq_gym  # noqa: F401
from mpq_gym.agents.training import train_run
from mpq_gym.agents.vec_env import SB3VectorEnv
from mpq_gym.envs.vector import MixedPrecisionVectorEnv
from mpq_gym.errors import ActionError, ConfigError

DIGITS = "MixedPrecision-DigitsCNN-v0"
KWARGS = {"candidates": "W2A8,W4A8,W8A8", "budget": 0.3}


@pytest.mark.parametrize("enforcement, observation, dense", [("limit", "haq", False), ("mask", "knapsack", False),
                                                             ("penalty", "haq", False), ("limit", "haq", True),
                                                             ("mask", "knapsack", True), ("limit", "haq", "lagrangian"),
                                                             ("project", "knapsack", True)])
def test_vector_env_equals_single_envs_given_the_same_actions(enforcement, observation, dense):
    n = 5
    kwargs = dict(KWARGS, enforcement=enforcement, observation=observation, dense_reward=bool(dense))
    if dense == "lagrangian":
        kwargs["dense_potential"] = dense
    vec = gym.make_vec(DIGITS, num_envs=n, **kwargs)
    assert isinstance(vec, MixedPrecisionVectorEnv)
    singles = [gym.make(DIGITS, **kwargs) for _ in range(n)]
    obs, _ = vec.reset(seed=0)
    assert np.array_equal(obs, np.stack([e.reset(seed=0)[0] for e in singles]))
    rng, projected = np.random.default_rng(0), set()
    for episode in range(3):
        for step in range(4):
            if enforcement == "mask":
                masks = vec.action_masks()
                assert np.array_equal(masks, np.stack([e.unwrapped.action_masks() for e in singles]))
                actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
            else:
                actions = rng.integers(3, size=n)
            obs, rewards, terminated, truncated, info = vec.step(actions)
            outs = [e.step(int(a)) for e, a in zip(singles, actions)]
            assert obs in vec.observation_space
            assert np.allclose(rewards, [o[1] for o in outs])
            assert list(terminated) == [o[2] for o in outs] and not truncated.any()
            if enforcement == "project":
                assert list(info["projected"]) == [o[4]["projected"] for o in outs]
                projected |= set(info["projected"])
            if step < 3:
                assert np.array_equal(obs, np.stack([o[0] for o in outs]))
            else:  # same-step autoreset: the end of the episode is in info, obs starts the next one
                assert np.array_equal(info["final_obs"], np.stack([o[0] for o in outs]))
                for key in ("quality", "normalized_score", "within_budget"):
                    assert np.allclose(info["final_info"][key].astype(float), [o[4][key] for o in outs])
                assert [list(c) for c in info["final_info"]["choices"]] == [o[4]["choices"] for o in outs]
                assert np.array_equal(obs, np.stack([e.reset(seed=0)[0] for e in singles]))
    assert projected == ({False, True} if enforcement == "project" else set())


def test_vector_env_checks_its_input():
    vec = gym.make_vec(DIGITS, num_envs=2, **KWARGS)
    with pytest.raises(ConfigError, match="reset"):
        vec.step(np.zeros(2, dtype=int))
    vec.reset(seed=0)
    with pytest.raises(ActionError, match="shape"):
        vec.step(np.zeros(3, dtype=int))
    with pytest.raises(ActionError, match="integers"):
        vec.step(np.array([0, 7]))
    with pytest.raises(ConfigError, match="sync"):
        gym.make_vec(DIGITS, num_envs=2, reward_mode="exact", **KWARGS)
    with pytest.raises(ConfigError, match="num_envs"):
        MixedPrecisionVectorEnv(0, workload="digits_cnn")


def test_sb3_adapter_reports_episodes_like_sb3():
    venv = SB3VectorEnv(gym.make_vec(DIGITS, num_envs=3, **KWARGS))
    obs = venv.reset()
    assert obs.shape == (3, venv.observation_space.shape[0])
    for step in range(4):
        obs, rewards, dones, infos = venv.step(np.zeros(3, dtype=int))
    assert dones.all() and all("terminal_observation" in i and "config" in i for i in infos)
    assert len(venv.env_method("action_masks")) == 3


def test_ppo_on_vector_envs_reaches_the_optimum_on_digits(tmp_path):
    hp = tmp_path / "ppo.yml"
    hp.write_text('{"n_envs": 8, "rollout_episodes": 4, "batch_size": 32, "learning_rate": 0.001}')
    result = train_run("ppo", DIGITS, 400, 0, KWARGS, str(hp), tmp_path, progress=False)
    assert result.best["normalized_score"] >= 1.0 - 1e-9
    assert result.agent.n_envs == 8 and (result.run_dir / "monitor.csv").exists()


@pytest.mark.parametrize("enforcement, shaping, dense", [("limit", "delta", False), ("mask", "delta", False),
                                                         ("limit", "normalized", False), ("mask", "normalized", True),
                                                         ("limit", "normalized", "lagrangian")])
def test_budget_conditioned_vector_env_equals_single_envs_seeded_like_gymnasium(enforcement, shaping, dense):
    n, kwargs = 4, dict(KWARGS, budget_range=[0.2, 0.45], enforcement=enforcement, observation="knapsack",
                        reward_shaping=shaping, dense_reward=bool(dense))
    if dense == "lagrangian":
        kwargs["dense_potential"] = dense
    vec = gym.make_vec(DIGITS, num_envs=n, **kwargs)
    singles = [gym.make(DIGITS, **kwargs) for _ in range(n)]
    obs, _ = vec.reset(seed=7)
    assert np.array_equal(obs, np.stack([e.reset(seed=7 + i)[0] for i, e in enumerate(singles)]))
    rng, ratios = np.random.default_rng(0), set()
    for episode in range(6):
        for step in range(4):
            masks = vec.action_masks()
            assert np.array_equal(masks, np.stack([e.unwrapped.action_masks() for e in singles]))
            actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
            obs, rewards, *_, info = vec.step(actions)
            outs = [e.step(int(a)) for e, a in zip(singles, actions)]
            assert np.allclose(rewards, [o[1] for o in outs]) and obs in vec.observation_space
        if shaping == "normalized" and not dense:  # each copy's reward on its own budget's scale
            assert np.allclose(rewards, 0.1 * info["final_info"]["normalized_score"].astype(float))
        for key in ("budget_ratio", "normalized_score", "budget_used", "quality"):
            assert np.allclose(info["final_info"][key].astype(float), [o[4][key] for o in outs])
        ratios.update(info["final_info"]["budget_ratio"].round(6))
        assert np.array_equal(obs, np.stack([e.reset()[0] for e in singles]))
    assert len(ratios) > 3 and ratios <= set(np.round(np.arange(0.2, 0.4501, 0.01), 6))


def test_a_budget_conditioned_ppo_serves_a_budget_it_never_trained_on(tmp_path):
    from benchmarks.budget_conditioned import run_seed
    from mpq_gym.envs.env import problem_from_env
    problem = problem_from_env(DIGITS, {"candidates": "W2A8,W4A8,W8A8"})
    hp = {"rollout_episodes": 4, "batch_size": 32, "learning_rate": 0.001}
    run = run_seed("ppo", 0, problem, [0.205, 0.445], [0.3, 0.405], None, 400, hp, samples=8)
    assert run["episodes"] == 400
    assert run["scores"]["0.3"]["normalized"] >= 0.97  # 0.3 is between the grid points 0.295 and 0.305
    assert all(s["budget_used"] <= 1 + 1e-9 for s in run["scores"].values())
    sampled = [s["sampled"] for s in run["scores"].values()]  # the best of 8 sampled episodes, no learning
    assert all(s["samples"] == 8 and s["budget_used"] <= 1 + 1e-9 and s["normalized"] <= 1 + 1e-9 for s in sampled)
