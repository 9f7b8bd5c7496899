"""Agents on DigitsCNN: train a few episodes, save, load, predict; resume; presets; the bench adapter."""
import csv
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.evaluation import evaluate_policy

import mpq_gym  # noqa: F401
from mpq_gym.agents.reinforce import ReinforceLSTM, loo_advantages
from mpq_gym.agents.vec_env import SB3VectorEnv
from mpq_gym.errors import ConfigError, InputFileError
from mpq_gym.cli.replay import evaluate_run, rollout
from mpq_gym.agents.haq_ddpg import HaqDDPG
from mpq_gym.cli.train import main as train_main
from mpq_gym.agents.training import train_run
from mpq_gym.agents.training import ALGOS, build_agent, load_agent, load_hyperparams, model_path

KWARGS = {"candidates": "W2A8,W4A8,W8A8", "budget": 0.2}
DISCRETE, CONTINUOUS = "MixedPrecision-DigitsCNN-v0", "MixedPrecisionContinuous-DigitsCNN-v0"


def _env_id(algo):
    return CONTINUOUS if algo == "ddpg" else DISCRETE


def _small_hp(tmp_path, algo):
    """Presets shrunk so a few episodes exercise learning (DDPG: 2 warm-up episodes; REINFORCE on one env)."""
    hp = {"ddpg": {"warmup_episodes": 2, "batch_size": 8}, "ppo": {"rollout_episodes": 2, "batch_size": 8},
          "maskable_ppo": {"rollout_episodes": 2, "batch_size": 8},
          "recurrent_ppo": {"rollout_episodes": 2, "batch_size": 8, "policy_kwargs": {"lstm_hidden_size": 16}},
          "reinforce": {"hidden_size": 32, "n_envs": 1, "baseline": "moving",  # the one-env agent
                        "episodes_per_update": 2}}[algo]
    path = tmp_path / f"{algo}.yml"
    path.write_text(json.dumps(hp))  # JSON is YAML
    return str(path)


@pytest.mark.parametrize("algo", ALGOS)
def test_every_agent_trains_saves_loads_and_predicts(algo, tmp_path):
    result = train_run(algo, _env_id(algo), 8, 0, KWARGS, _small_hp(tmp_path, algo), tmp_path / "runs",
                       checkpoint_every=4, progress=False)
    run = result.run_dir
    assert run.parent.name == _env_id(algo) and run.name.startswith(f"{algo}_0_")
    rows = (run / "episodes.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 8
    best = json.loads((run / "best_config.json").read_text())
    assert best["costs"]["bops_ratio"] <= 0.2 + 1e-9 and len(best["choices"]) == 4
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert model_path(run, algo).exists() and model_path(run, algo, checkpoint=True).exists()

    env = gym.make(_env_id(algo), **{**load_hyperparams(algo).get("env_kwargs", {}), **KWARGS})
    agent = load_agent(algo, model_path(run, algo), env)
    info = rollout(agent, env)
    assert info["within_budget"] and len(info["choices"]) == 4

    report = evaluate_run(run, split="test")
    assert report["agent"]["within_budget"] and report["best"]["within_budget"]
    assert 0 <= report["best"]["metrics"]["top1"] <= 100


def test_reinforce_is_an_sb3_policy_predictor(tmp_path):
    env = gym.make(DISCRETE, **KWARGS)
    agent = build_agent("reinforce", env, {"hidden_size": 16}, seed=0)
    mean, _ = evaluate_policy(agent, env, n_eval_episodes=2)
    assert np.isfinite(mean)
    batch, state = agent.predict(np.zeros((3, env.observation_space.shape[0]), np.float32), deterministic=True)
    assert batch.shape == (3,) and state[0].shape == (2, 3, 16)


def test_sb3_total_timesteps_are_exactly_the_episodes(tmp_path):
    hp = tmp_path / "one.yml"
    hp.write_text('{"n_envs": 1, "rollout_episodes": 2, "batch_size": 8}')
    result = train_run("ppo", DISCRETE, 5, 0, KWARGS, str(hp), tmp_path, progress=False)
    assert result.agent._total_timesteps == 5 * 4 and result.agent.num_timesteps == 5 * 4
    monitor = (result.run_dir / "monitor.csv").read_text().splitlines()
    assert len(monitor) == 2 + 5  # Monitor's header lines + one row per episode
    vector = train_run("ppo", DISCRETE, 5, 0, KWARGS, _small_hp(tmp_path, "ppo"), tmp_path / "vec", progress=False)
    assert vector.episodes == 5 and vector.agent._total_timesteps == 5 * 4  # 8 copies: stops at 5 episodes


def test_minutes_stop_a_run_without_an_episode_count(tmp_path):
    result = train_run("reinforce", DISCRETE, None, 0, KWARGS, _small_hp(tmp_path, "reinforce"), tmp_path,
                       progress=False, minutes=0.05)
    with (result.run_dir / "episodes.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert result.episodes == len(rows) >= 1
    walls = [float(r["wall_s"]) for r in rows]
    assert walls == sorted(walls) and walls[-1] <= result.wall_s and result.wall_s >= 3.0  # stopped at 3 s
    assert 0.0 <= float(rows[-1]["best_normalized"]) <= 1.0 + 1e-9
    assert json.loads((result.run_dir / "args.json").read_text())["minutes"] == 0.05


def test_same_seed_same_run(tmp_path):
    def choices(sub):
        run = train_run("reinforce", DISCRETE, 6, 3, KWARGS, _small_hp(tmp_path, "reinforce"), tmp_path / sub,
                        progress=False).run_dir
        return [r.split(",")[-1] for r in (run / "episodes.csv").read_text().splitlines()]
    assert choices("a") == choices("b")


def test_reinforce_resume_equals_an_uninterrupted_run(tmp_path):
    hp = _small_hp(tmp_path, "reinforce")
    whole = train_run("reinforce", DISCRETE, 8, 1, KWARGS, hp, tmp_path / "whole", checkpoint_every=4,
                      progress=False).run_dir
    part = train_run("reinforce", DISCRETE, 4, 1, KWARGS, hp, tmp_path / "part", checkpoint_every=4,
                     progress=False).run_dir
    resumed = train_run(None, None, 8, 0, resume=part, checkpoint_every=4, progress=False)
    assert resumed.episodes == 8

    def rows(run):  # every column but the wall clock
        with (run / "episodes.csv").open(newline="") as f:
            return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(f)]
    assert rows(part) == rows(whole)


def _batched_hp(tmp_path, **overrides):
    """The batched REINFORCE preset (n_envs copies, leave-one-out baseline), shrunk."""
    path = tmp_path / "reinforce_batched.yml"
    path.write_text(json.dumps({"hidden_size": 32, "n_envs": 4, "baseline": "loo", **overrides}))
    return str(path)


def _rows(run):
    """episodes.csv without the wall-clock column."""
    with (run / "episodes.csv").open(newline="") as f:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(f)]


def test_reinforce_preset_is_batched_with_a_leave_one_out_baseline():
    hp = load_hyperparams("reinforce")
    assert hp["n_envs"] > 1 and hp["baseline"] == "loo"
    assert (hp["hidden_size"], hp["num_layers"]) == (300, 2)


def test_loo_advantages_on_a_hand_made_batch():
    returns = np.array([1.0, 2.0, 3.0, 6.0])
    expected = np.array([1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3])  # each minus the mean of the other three
    assert np.allclose(loo_advantages(returns, normalize=False), expected)
    assert np.allclose(loo_advantages(returns), expected / np.sqrt(3.5))  # population std of the returns
    assert loo_advantages(returns).sum() == pytest.approx(0.0)
    assert np.allclose(loo_advantages(np.full(3, 0.7)), 0.0, atol=1e-6)  # equal returns: no push either way
    with pytest.raises(ConfigError, match="n_envs >= 2"):
        loo_advantages(np.array([1.0]))


def test_reward_to_go_scores_each_step_by_what_follows_against_the_other_copies():
    env = SB3VectorEnv(gym.make_vec(DISCRETE, num_envs=3, vectorization_mode="vector_entry_point", **KWARGS))
    agent = build_agent("reinforce", env, {"hidden_size": 8, "baseline": "loo", "reward_to_go": True,
                                           "normalize_advantage": False}, seed=0)
    rewards = np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0], [2.0, 0.0, 1.0]])  # [copies, steps]
    to_go = np.array([[3.0, 2.0, 2.0], [3.0, 3.0, 0.0], [3.0, 1.0, 1.0]])
    expected = to_go - (to_go.sum(0) - to_go) / 2  # each step against the mean of the other two copies there
    advantages = agent._to_go_advantages(rewards.sum(1), rewards).numpy()
    assert np.allclose(advantages, expected) and np.allclose(advantages[:, 0], 0.0)  # equal returns: no push
    agent.learn(6)  # two rollouts train with per-step advantages
    assert agent.episodes_done == 6
    one = build_agent("reinforce", gym.make(DISCRETE, **KWARGS), {"reward_to_go": True}, seed=0)
    with pytest.raises(ConfigError, match="reward_to_go needs baseline='loo' on a vector env"):
        one.learn(1)


def test_batched_reinforce_reaches_the_optimum_on_digits(tmp_path):
    """The default preset (16 copies, RLOO, 2x300 LSTM): the optimum, and a policy that keeps choosing it."""
    budget = {**KWARGS, "budget": 0.3}
    result = train_run("reinforce", DISCRETE, 480, 0, budget, None, tmp_path, checkpoint_every=0, progress=False)
    agent = result.agent
    assert agent.vectorized and agent.n_envs == 16 and agent.episodes_done == 480
    assert result.best["normalized_score"] >= 1.0 - 1e-9
    last = [float(r["normalized_score"]) for r in _rows(result.run_dir)[-16:]]  # the last rollout
    assert np.mean(last) >= 0.99
    report = evaluate_run(result.run_dir, split="test")  # the batched agent replays on one env
    assert report["agent"]["within_budget"]


def test_batched_reinforce_same_seed_same_run_and_masks(tmp_path):
    hp = _batched_hp(tmp_path)
    runs = [train_run("reinforce", DISCRETE, 10, 3, KWARGS, hp, tmp_path / sub, progress=False).run_dir
            for sub in ("a", "b")]
    assert _rows(runs[0]) == _rows(runs[1]) and len(_rows(runs[0])) == 10  # 3 rollouts of 4, cut at 10
    other = train_run("reinforce", DISCRETE, 10, 4, KWARGS, hp, tmp_path / "c", progress=False).run_dir
    assert _rows(other) != _rows(runs[0])
    masked = train_run("reinforce", DISCRETE, 12, 0, {**KWARGS, "enforcement": "mask"}, hp, tmp_path / "m",
                       progress=False).run_dir  # a masked-out action would raise in the vector env
    assert all(r["within_budget"] == "True" for r in _rows(masked))


def test_batched_reinforce_resume_equals_an_uninterrupted_run(tmp_path):
    hp = _batched_hp(tmp_path)
    whole = train_run("reinforce", DISCRETE, 16, 1, KWARGS, hp, tmp_path / "whole", checkpoint_every=8,
                      progress=False).run_dir
    part = train_run("reinforce", DISCRETE, 8, 1, KWARGS, hp, tmp_path / "part", checkpoint_every=8,
                     progress=False).run_dir
    saved = torch.load(model_path(part, "reinforce", checkpoint=True), weights_only=True)
    assert saved["config"]["baseline"] == "loo" and saved["episodes_done"] == 8
    resumed = train_run(None, None, 16, 0, resume=part, checkpoint_every=8, progress=False)
    assert resumed.episodes == 16 and resumed.agent.vectorized and resumed.agent.episodes_done == 16
    assert _rows(part) == _rows(whole)


def test_batched_reinforce_stops_mid_rollout_when_told(tmp_path):
    env = SB3VectorEnv(gym.make_vec(DISCRETE, num_envs=4, vectorization_mode="vector_entry_point", **KWARGS))
    agent = build_agent("reinforce", env, {"hidden_size": 16, "baseline": "loo"}, seed=0)
    seen, updates = [], []
    agent.learn(100, lambda ret, info: seen.append((ret, info["choices"])) or len(seen) < 3, updates.append)
    assert len(seen) == 3 and len(updates) == 1 and agent.episodes_done == 4
    assert all(len(choices) == 4 for _, choices in seen)


def test_reinforce_mlp_policy_is_memoryless_and_reloads(tmp_path):
    """policy="mlp": each step's logits depend on that step's observation alone; save/load keeps them."""
    hp = _batched_hp(tmp_path, policy="mlp", hidden_size=16)
    result = train_run("reinforce", DISCRETE, 8, 0, KWARGS, hp, tmp_path / "runs", progress=False)
    agent = result.agent
    assert type(agent.net).__name__ == "MLPPolicyNet"
    obs = torch.randn(3, 4, agent.obs_dim)
    logits, _ = agent.net(obs)
    alone, _ = agent.net(obs[:, 2:3])
    assert torch.allclose(logits[:, 2:3], alone)  # an LSTM's step 2 would depend on steps 0 and 1
    env = gym.make(DISCRETE, **KWARGS)
    loaded = load_agent("reinforce", model_path(result.run_dir, "reinforce"), env)
    assert type(loaded.net).__name__ == "MLPPolicyNet" and loaded.config.policy == "mlp"
    assert torch.allclose(loaded.net(obs)[0], logits)
    assert rollout(loaded, env)["within_budget"]
    with pytest.raises(ConfigError, match=r"policy='gru' must be one of \('lstm', 'mlp'\)"):
        build_agent("reinforce", env, {"policy": "gru"}, seed=0)


def test_reinforce_hyperparameters_and_old_checkpoints(tmp_path):
    env = gym.make(DISCRETE, **KWARGS)
    with pytest.raises(ConfigError, match="baseline"):
        build_agent("reinforce", env, {"baseline": "average"}, seed=0)
    with pytest.raises(ConfigError, match="learning_rate"):
        build_agent("reinforce", env, {"learning_rate": "1e-3"}, seed=0)
    with pytest.raises(ConfigError, match="n_envs >= 2"):  # one env, one episode per update: no "others"
        build_agent("reinforce", env, {"baseline": "loo", "episodes_per_update": 1}, seed=0).learn(1)
    agent = build_agent("reinforce", env, {"hidden_size": 16}, seed=0)
    assert agent.config.baseline == "moving" and not agent.vectorized  # the dataclass default: the old agent
    agent.learn(4)
    agent.save(tmp_path / "new.pt")
    data = torch.load(tmp_path / "new.pt", weights_only=True)
    for key in ("baseline", "normalize_advantage"):  # a checkpoint written before these existed
        del data["config"][key]
    torch.save(data, tmp_path / "old.pt")
    old = ReinforceLSTM.load(tmp_path / "old.pt", env)
    assert old.config.baseline == "moving" and old.baseline == agent.baseline and old.episodes_done == 4
    data["config"]["baseline"] = 3
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(InputFileError, match="not a REINFORCE checkpoint"):
        ReinforceLSTM.load(tmp_path / "bad.pt", env)


def test_sb3_resume_continues_from_the_checkpoint(tmp_path):
    hp = _small_hp(tmp_path, "ppo")
    run = train_run("ppo", DISCRETE, 4, 0, KWARGS, hp, tmp_path, checkpoint_every=2, progress=False).run_dir
    # an interruption after the checkpoint: extra rows past it are dropped on resume
    with (run / "episodes.csv").open("a") as f:
        f.write("5,9.0,0,0,False,0,True,0,0,0,0,0,0 0 0 0\n")
    result = train_run(None, None, 10, 0, resume=run, checkpoint_every=2, progress=False)
    episodes = [int(r.split(",")[0]) for r in (run / "episodes.csv").read_text().splitlines()[1:]]
    assert episodes == list(range(1, 11)) and result.agent.num_timesteps >= 10 * 4


def test_cli_errors_are_clear(tmp_path, capsys):
    from mpq_gym.cli.common import run_cli
    for argv, message in [
        (["--algo", "ddpg", "--env", DISCRETE], "MixedPrecisionContinuous"),
        (["--algo", "ppo", "--env", CONTINUOUS], "discrete actions"),
        (["--algo", "maskable_ppo", "--env", DISCRETE, "--env-kwargs", "enforcement=limit"], "enforcement=mask"),
        (["--algo", "ppo", "--env", "MixedPrecision-Nope-v0"], "registered ids"),
        (["--resume", str(tmp_path)], "args.json"),
        (["--algo", "ppo", "--env", DISCRETE, "--hyperparams", str(tmp_path / "missing.yml")], "does not exist"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(train_main, [*argv, "--runs-dir", str(tmp_path / "runs"), "--episodes", "2", "--quiet"])
        assert exit_info.value.code == 2, argv
        assert message in capsys.readouterr().err, argv


def test_haq_ddpg_settings(tmp_path):
    env = gym.make(CONTINUOUS, **KWARGS)
    hp = load_hyperparams("ddpg")
    assert hp["tau"] == 0.01 and hp["batch_size"] == 64 and hp["policy_kwargs"]["net_arch"]["pi"] == [300, 300]
    tuned = load_hyperparams("ddpg", "MixedPrecisionContinuous-EfficientNetLite0-v0")  # Optuna's, on the dense reward
    assert tuned["sigma_decay"] == 0.999 and tuned["env_kwargs"]["dense_reward"] and tuned["gamma"] == 1.0
    assert load_hyperparams("ddpg", "MixedPrecision-EfficientNetLite0-v0") == tuned  # the problem's id, as tune takes
    assert load_hyperparams("ppo", "MixedPrecisionContinuous-EfficientNetLite0-v0") == load_hyperparams("ppo")
    model = build_agent("ddpg", env, {**hp, "warmup_episodes": 1, "batch_size": 4}, seed=0)
    assert isinstance(model, HaqDDPG) and model.learning_starts == 4
    model.learn(total_timesteps=40)
    assert model.actor.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert model.critic.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert model.current_sigma() == pytest.approx(0.5 * 0.99 ** (model._episode_num - model.warmup_episodes))
    actions = np.concatenate([model._sample_action(0)[1] for _ in range(200)])
    assert actions.min() >= -1 and actions.max() <= 1 and actions.std() > 0.05
    model.sigma = 0.0  # σ decayed to 0 (0.95 ** 15,000 underflows), the actor at a bound: its action, no 0/0
    model.predict = lambda obs, deterministic=True: (np.ones((1, 1), dtype=np.float32), None)
    assert np.array_equal(model._sample_action(0)[1], np.ones((1, 1), dtype=np.float32))


def test_agents_plug_into_the_benchmark(tmp_path):
    from functools import partial

    from mpq_gym.agents.agent_search import agent_search
    from mpq_gym.bench import register_policy
    from mpq_gym.bench.runner import BenchSpec, read_results, run_benchmark
    register_policy("reinforce_short", partial(agent_search, "reinforce", episodes=16))
    register_policy("ppo_rerank_short", partial(agent_search, "ppo", episodes=400, rerank=True))
    spec = BenchSpec(DISCRETE, {"candidates": "W2A8,W4A8,W8A8"},
                     ["ppo", "maskable_ppo_dense", "reinforce_short", "ppo_rerank_short"], [0.2],
                     seeds=1, max_evaluations=5)
    rows = read_results(run_benchmark(spec, tmp_path, progress=False))
    assert {r["policy"] for r in rows} == {"ppo", "maskable_ppo_dense", "reinforce_short", "ppo_rerank_short"}
    assert float({r["policy"]: r for r in rows}["maskable_ppo_dense"]["normalized_score"]) >= 1.0 - 1e-9
    assert all(r["within_budget"] == "True" and int(r["surrogate_evaluations"]) > 0 for r in rows)
    by_policy = {r["policy"]: r for r in rows}
    assert int(by_policy["ppo"]["exact_evaluations"]) == 1  # the harness's one evaluation of the answer
    assert int(by_policy["ppo_rerank_short"]["exact_evaluations"]) == 5  # the visited configurations, re-ranked


def test_learning_curves_script_writes_its_outputs(tmp_path):
    from mpq_gym.cli.curves import main as curves_main
    out = tmp_path / "curves"
    assert curves_main(["--env", DISCRETE, "--algos", "ppo", "--seeds", "2", "--episodes", "16", "--setting",
                        "W2A8,W4A8,W8A8:0.2", "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "curves.json").read_text())[0]
    assert set(result["algos"]) == {"ppo", "random"}
    assert all(len(c) == 16 for c in result["algos"]["ppo"]["best_curve"])
    assert all(np.all(np.diff(c) >= 0) for c in result["algos"]["random"]["best_curve"])  # best so far never drops
    assert (out / "curves.png").stat().st_size > 10_000 and "| ppo | 2 |" in (out / "curves.md").read_text()


def test_mlflow_tracking_logs_a_run_that_reads_back(tmp_path):
    import mlflow
    store = tmp_path / "mlflow.db"
    result = train_run("ppo", DISCRETE, 4, 0, KWARGS, _small_hp(tmp_path, "ppo"), tmp_path / "runs",
                       progress=False, mlflow=str(store))
    client = mlflow.tracking.MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name(f"mpq-gym/{DISCRETE}")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["algo"] == "ppo" and run.data.params["env_kwargs.budget"] == "0.2"
    history = client.get_metric_history(run.info.run_id, "episode/quality")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert run.info.status == "FINISHED" and run.info.run_name == result.run_dir.name
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"best_config.json", "episodes.csv"} <= artifacts



def test_restarts_train_independent_runs_and_keep_the_best(tmp_path):
    from mpq_gym.agents.recording import read_episodes
    from mpq_gym.agents.training import train_on_problem
    from mpq_gym.budget import Budget
    from mpq_gym.envs.env import problem_from_env
    problem = problem_from_env(DISCRETE, {"candidates": "W2A8,W4A8,W8A8"})
    hp = {**load_hyperparams("ppo"), "rollout_episodes": 2, "restarts": 2}
    result, rows = train_on_problem("ppo", problem, Budget(ratio=0.2), hp, 64, 3, tmp_path)
    runs = [read_episodes(tmp_path / f"restart_{i}" / "episodes.csv") for i in range(2)]
    assert [len(r) for r in runs] == [32, 32] and result.episodes == 64
    assert [r["choices"] for r in runs[0]] != [r["choices"] for r in runs[1]]  # seeds 3000 and 3001
    assert [r["episode"] for r in rows] == list(range(1, 65))  # one curve across the restarts
    assert all(b["wall_s"] >= a["wall_s"] for a, b in zip(rows, rows[1:]))
    best = max(float(r["best_normalized"]) for run in runs for r in run)
    assert result.best["normalized_score"] == best == rows[-1]["best_normalized"]
    with pytest.raises(ConfigError, match="belongs to a search"):
        build_agent("ppo", gym.make(DISCRETE, **KWARGS), {"restarts": 2}, seed=0)
    with pytest.raises(ConfigError, match="restarts must be a whole number"):
        train_on_problem("ppo", problem, Budget(ratio=0.2), {**hp, "restarts": 0}, 8, 0, tmp_path / "x")
