"""Train any agent on a mixed-precision env: presets, run folders, checkpoints, resume.

A run folder ``runs/<env>/<algo>_<seed>_<timestamp>/`` holds ``args.json`` (how to rebuild the run),
``tb/`` (TensorBoard), ``episodes.csv`` (one row per episode), ``best_config.json`` (best
configuration within budget so far), ``checkpoints/`` (latest resumable state) and the final model
(``model.zip`` for SB3 agents, ``model.pt`` for REINFORCE).

Trust: SB3's ``.zip`` and DDPG's replay buffer are pickles, which run code when loaded. Every run folder
this machine creates is signed: ``.mpq_gym_trust`` holds an HMAC-SHA256 of its ``args.json`` under a
per-user secret key kept in the mpq-gym cache (``$MPQ_GYM_CACHE/secrets/run_trust.key``, mode 0600).
Resuming or replaying an SB3/DDPG run folder without a valid signature (one made elsewhere, sent by
someone) needs ``trust=True`` (CLI: ``--trust``). REINFORCE checkpoints are tensors and plain values,
loaded with ``weights_only=True``, so they need no trust.

Devices: ``device`` (CLI ``--device``) is where the *quantized network* runs (the env's ``device`` kwarg); it
is not recorded in ``args.json``, so a run resumes on any device. The agents' own networks are small MLPs /
LSTMs and stay on the CPU (:data:`POLICY_DEVICE`) unless the hyperparameters set SB3's ``device``.
"""
from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import math
import os
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

import mpq_gym  # noqa: F401  (registers the env ids)
from mpq_gym.agents.haq_ddpg import HaqDDPG
from mpq_gym.agents.recording import EpisodeCallback, EpisodeLog, read_episodes
from mpq_gym.agents.reinforce import ReinforceConfig, ReinforceLSTM
from mpq_gym.agents.vec_env import SB3VectorEnv
from mpq_gym.budget import Budget
from mpq_gym.envs.env import MixedPrecisionEnv
from mpq_gym.envs.vector import MixedPrecisionVectorEnv
from mpq_gym.envs.registration import require_env_id
from mpq_gym.cache import cache_dir, write_atomic
from mpq_gym.devices import with_device
from mpq_gym.errors import ConfigError, InputFileError, UntrustedRunError
from mpq_gym.problem import Problem
from mpq_gym.tracking import MlflowTracker

ALGOS = ("reinforce", "ddpg", "ppo", "maskable_ppo", "recurrent_ppo")
#: algorithms whose saved files are pickles (SB3 .zip, DDPG replay buffer)
PICKLED_ALGOS = ("ddpg", "ppo", "maskable_ppo", "recurrent_ppo")
TRUST_FILE = ".mpq_gym_trust"
_TRUST_CONTEXT = b"mpq-gym run folder v1\0"
PRESETS = Path(__file__).parent / "hyperparams"
#: where SB3 agents keep their policy networks (tiny MLPs / LSTMs: an accelerator only adds transfers);
#: a preset or hyperparameter file may set ``device`` to override it
POLICY_DEVICE = "cpu"


def _check_algo(algo: str) -> None:
    if algo not in ALGOS:
        raise ConfigError(f"unknown algo {algo!r}; choose one of {ALGOS}")


def preset_section(algo: str, env_id: str | None) -> str | None:
    """The preset section of ``env_id`` for ``algo``: DDPG's sections are its continuous ids, so
    ``MixedPrecision-X-v0`` (the problem's id, as ``mpq-gym tune`` takes it) reads ``MixedPrecisionContinuous-X-v0``."""
    discrete = "MixedPrecision-"
    if algo == "ddpg" and env_id is not None and env_id.startswith(discrete):
        return "MixedPrecisionContinuous-" + env_id[len(discrete):]
    return env_id


def load_hyperparams(algo: str, env_id: str | None = None, path: str | Path | None = None) -> dict[str, Any]:
    """The preset for ``algo`` ("default" then ``env_id``'s section, see :func:`preset_section`), overridden by
    a user YAML file (same layout, or a flat mapping of hyperparameters)."""
    _check_algo(algo)
    env_id = preset_section(algo, env_id)
    hyperparams: dict[str, Any] = {}
    sources = [PRESETS / f"{algo}.yml"] + ([Path(path)] if path else [])
    for source in sources:
        if not source.exists():
            raise ConfigError(f"hyperparameter file {source} does not exist")
        try:
            data = yaml.safe_load(source.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must hold a mapping of hyperparameters")
        sections = [data.get("default", {}), data.get(env_id, {})] if ("default" in data or env_id in data) else [data]
        for section in sections:
            hyperparams.update(section or {})
    return hyperparams


def steps_per_episode(env: gym.Env | VecEnv) -> int:
    """Quantizer groups of the env (its fixed episode length)."""
    return int(env.get_attr("n_groups")[0] if isinstance(env, VecEnv) else env.unwrapped.n_groups)


#: algorithms that train on several env copies at once (``n_envs`` in their presets, as in rl-zoo3)
VECTOR_ALGOS = ("ppo", "maskable_ppo", "recurrent_ppo", "reinforce")
#: the PPO family among them (SB3 learners)
PPO_ALGOS = ("ppo", "maskable_ppo", "recurrent_ppo")


#: hyperparameters the presets use that this module turns into SB3 arguments
_DERIVED = {"ddpg": {"warmup_episodes"}, "ppo": {"rollout_episodes", "n_envs"},
            "maskable_ppo": {"rollout_episodes", "n_envs"}, "recurrent_ppo": {"rollout_episodes", "n_envs"}}


def _check_sb3_hyperparams(algo: str, hp: dict[str, Any]) -> None:
    """Unknown names, and text where SB3 expects a number, are a :class:`ConfigError` naming the key."""
    cls = agent_class(algo)
    params: dict[str, inspect.Parameter] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass):
            params.update(inspect.signature(klass.__init__).parameters)
    set_here = {"self", "env", "seed", "verbose", "supported_action_spaces", "support_multi_env", "monitor_wrapper"}
    known = {n for n, p in params.items()
             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and not n.startswith("_")} - set_here
    known |= _DERIVED.get(algo, set())
    unknown = sorted(set(hp) - known)
    if unknown:
        raise ConfigError(f"unknown {algo} hyperparameters {unknown}; known: {sorted(known)}")
    for key, value in hp.items():
        default = params[key].default if key in params else None
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if (numeric or key in _DERIVED.get(algo, set())) and isinstance(value, str):
            raise ConfigError(f"{algo} hyperparameter {key}={value!r} must be a number")


def build_agent(algo: str, env: gym.Env | VecEnv, hyperparams: dict[str, Any], seed: int) -> BaseAlgorithm | ReinforceLSTM:
    """A fresh agent for ``env`` (a vector env for ``n_envs`` > 1) from resolved hyperparameters."""
    _check_algo(algo)
    if "restarts" in hyperparams:
        raise ConfigError("restarts (several independent runs, the best kept) belongs to a search, not to one "
                          "agent: use it with the bench policies or benchmarks.agents_table, or drop it")
    hp = {k: v for k, v in hyperparams.items() if k not in ("env_kwargs", "n_envs")}
    steps = steps_per_episode(env)
    if algo == "reinforce":  # a VecEnv for n_envs > 1: batched rollouts, one update per rollout
        known = {f.name for f in fields(ReinforceConfig)}
        unknown = set(hp) - known
        if unknown:
            raise ConfigError(f"unknown REINFORCE hyperparameters {sorted(unknown)}; known: {sorted(known)}")
        return ReinforceLSTM(env, ReinforceConfig(**hp), seed)
    _check_sb3_hyperparams(algo, hp)
    hp["device"] = policy_device(hp)
    policy = hp.pop("policy", "MlpLstmPolicy" if algo == "recurrent_ppo" else "MlpPolicy")
    if algo == "ddpg":
        if not isinstance(env.action_space, gym.spaces.Box):
            raise ConfigError("DDPG needs continuous actions: use a MixedPrecisionContinuous-* id")
        hp["learning_starts"] = int(hp.pop("warmup_episodes", 20)) * steps
        if "train_freq" in hp:
            hp["train_freq"] = tuple(hp["train_freq"]) if isinstance(hp["train_freq"], list) else hp["train_freq"]
        return HaqDDPG(policy, env, seed=seed, verbose=0, **hp)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ConfigError(f"{algo} here uses discrete actions: use a MixedPrecision-* id, not MixedPrecisionContinuous-*")
    hp["n_steps"] = int(hp.pop("rollout_episodes", 8)) * steps  # per env copy
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO
        enforcement = env.get_attr("enforcement")[0] if isinstance(env, VecEnv) else env.unwrapped.enforcement
        if enforcement != "mask":
            raise ConfigError("maskable_ppo needs the env's mask enforcement: pass enforcement=mask")
        return MaskablePPO(policy, env, seed=seed, verbose=0, **hp)
    return agent_class(algo)(policy, env, seed=seed, verbose=0, **hp)


def env_on_problem(algo: str, problem: Problem, budget: Budget, hyperparams: dict[str, Any]) -> gym.Env | VecEnv:
    """An env for ``algo`` on a shared, already built problem (continuous actions for DDPG, the preset's
    env kwargs; ``n_envs`` copies as one vector env), so several runs share one phase-1 table and surrogate."""
    kwargs = dict(problem=problem, budget=budget.ratio, budget_metric=budget.metric, budget_absolute=budget.absolute,
                  continuous=algo == "ddpg", **hyperparams.get("env_kwargs", {}))
    n_envs = _n_envs(algo, hyperparams)
    return MixedPrecisionEnv(**kwargs) if n_envs == 1 else SB3VectorEnv(MixedPrecisionVectorEnv(n_envs, **kwargs))


def train_on_problem(algo: str, problem: Problem, budget: Budget, hyperparams: dict[str, Any], episodes: int | None,
                     seed: int, run_dir: str | Path, minutes: float | None = None) -> tuple[TrainResult, list[dict]]:
    """Train ``algo`` on a shared problem (no checkpoints); with the preset's ``restarts: K``, K independent runs
    (seeds ``seed * 1000 + i``), each on 1/K of the episodes and of the minutes, in sub-folders of ``run_dir``.
    Returns the run with the best configuration and every run's episode rows in order, with ``episode``,
    ``wall_s`` and ``best_normalized`` continued across the restarts (one curve, as if one agent had run)."""
    restarts = hyperparams.get("restarts", 1)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ConfigError(f"restarts must be a whole number >= 1, got {restarts!r}")
    hp = {k: v for k, v in hyperparams.items() if k != "restarts"}
    each_episodes = None if episodes is None else max(1, episodes // restarts)
    each_minutes = None if minutes is None else minutes / restarts
    best, rows, episode_base, wall_base, best_score = None, [], 0, 0.0, float("-inf")
    for i in range(restarts):
        sub = Path(run_dir) if restarts == 1 else Path(run_dir) / f"restart_{i}"
        result = train(algo, env_on_problem(algo, problem, budget, hp), each_episodes, seed * 1000 + i if restarts > 1
                       else seed, hp, sub, checkpoint_every=0, progress=False, minutes=each_minutes)
        for row in read_episodes(sub / "episodes.csv"):
            score = float(row["best_normalized"])  # NaN until the run's first configuration within budget
            best_score = best_score if math.isnan(score) else max(best_score, score)
            rows.append(dict(row, episode=episode_base + row["episode"], wall_s=wall_base + float(row["wall_s"]),
                             best_normalized=best_score if best_score > float("-inf") else math.nan))
        episode_base, wall_base = episode_base + result.episodes, wall_base + result.wall_s
        if result.best is not None and (best is None or result.best["normalized_score"] > best.best["normalized_score"]):
            best = result
    total = TrainResult(best.run_dir, best.agent, episode_base, best.best, wall_base) if best is not None else \
        TrainResult(Path(run_dir), None, episode_base, None, wall_base)
    return total, rows


def _n_envs(algo: str, hyperparams: dict[str, Any]) -> int:
    """The preset's ``n_envs`` (1 when absent), checked against the algorithm."""
    n_envs = hyperparams.get("n_envs", 1)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ConfigError(f"n_envs must be a whole number >= 1, got {n_envs!r}")
    if n_envs > 1 and algo not in VECTOR_ALGOS:
        raise ConfigError(f"{algo} trains on one env: drop n_envs (vector envs serve {VECTOR_ALGOS})")
    return n_envs


def agent_class(algo: str) -> type:
    """The class that loads a saved ``algo`` agent."""
    _check_algo(algo)
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO
        return MaskablePPO
    if algo == "recurrent_ppo":  # the LSTM-PPO family ReLeQ used
        from sb3_contrib import RecurrentPPO
        return RecurrentPPO
    return {"reinforce": ReinforceLSTM, "ddpg": HaqDDPG, "ppo": PPO}[algo]


def model_path(run_dir: Path, algo: str, checkpoint: bool = False) -> Path:
    """Where a run's final (or checkpointed) agent lives."""
    folder = run_dir / "checkpoints" if checkpoint else run_dir
    return folder / ("model.pt" if algo == "reinforce" else "model.zip")


def policy_device(hyperparams: dict[str, Any]) -> str:
    """Where an SB3 agent's policy network lives: the hyperparameters' ``device``, else :data:`POLICY_DEVICE`
    (not the env's ``device``, which is where the quantized network runs)."""
    return str(hyperparams.get("device", POLICY_DEVICE))


def load_agent(algo: str, path: Path, env: gym.Env, device: str = POLICY_DEVICE) -> BaseAlgorithm | ReinforceLSTM:
    """Load a saved agent onto ``env`` (an SB3 agent's policy onto ``device``, see :func:`policy_device`)."""
    if not path.exists():
        raise ConfigError(f"no saved agent at {path}: did the run finish or checkpoint?")
    cls = agent_class(algo)
    return cls.load(path, env) if algo == "reinforce" else cls.load(path, env=env, device=device)


def _trust_key() -> bytes:
    """This user's secret signing key (32 random bytes in the cache, created on first use)."""
    folder = cache_dir() / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "run_trust.key"
    for _ in range(2):
        try:
            key = path.read_bytes()
            if len(key) == 32:
                return key
            path.unlink()  # damaged: a new key (folders signed with the old one then need --trust once)
        except FileNotFoundError:
            pass
        tmp = folder / f"run_trust.key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process just made
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes()


def _signature(args_bytes: bytes) -> str:
    return hmac.new(_trust_key(), _TRUST_CONTEXT + args_bytes, hashlib.sha256).hexdigest()


def _args_bytes(run_dir: Path) -> bytes:
    path = run_dir / "args.json"
    return path.read_bytes() if path.is_file() else b""


def sign_run(run_dir: str | Path, *also: bytes) -> None:
    """Mark ``run_dir`` as created on this machine (an HMAC of its ``args.json``; ``also``: other
    args.json contents to accept too, while args.json is being rewritten)."""
    run_dir = Path(run_dir)
    lines = [_signature(_args_bytes(run_dir))] + [_signature(b) for b in also]
    write_atomic(run_dir / TRUST_FILE, ("\n".join(dict.fromkeys(lines)) + "\n").encode())


def created_here(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` carries this user's valid signature for its current ``args.json``."""
    run_dir = Path(run_dir)
    try:
        marks = (run_dir / TRUST_FILE).read_text().split()
    except (OSError, UnicodeDecodeError):
        return False
    expected = _signature(_args_bytes(run_dir))
    return any(hmac.compare_digest(m, expected) for m in marks)


def require_trusted(run_dir: str | Path, algo: str, trust: bool, action: str) -> None:
    """Refuse to unpickle the saved files of a run folder not created on this machine unless ``trust``."""
    if algo in PICKLED_ALGOS and not trust and not created_here(run_dir):
        raise UntrustedRunError(
            f"{run_dir} was not created by mpq-gym for this user on this machine (no valid {TRUST_FILE} "
            f"signature), and {action} would unpickle its {algo} files, which can run arbitrary code; "
            f"if you trust whoever made this folder, rerun with --trust (Python: trust=True)")


def _pickle_files(run_dir: Path) -> list[Path]:
    return [p for p in (run_dir / "model.zip", run_dir / "checkpoints" / "model.zip",
                        run_dir / "checkpoints" / "replay_buffer.pkl") if p.exists()]


def write_run_args(run_dir: Path, args: dict[str, Any]) -> None:
    """Write ``args.json`` and sign the folder; a crash at any point leaves a valid signature."""
    new = json.dumps(args, indent=2).encode()
    old = _args_bytes(run_dir)
    if new == old and created_here(run_dir):
        return
    sign_run(run_dir, new)  # accepts the old and the new content while args.json changes
    write_atomic(run_dir / "args.json", new)
    sign_run(run_dir)


RUN_ARGS: dict[str, type | tuple[type, ...]] = {"algo": str, "env_id": str, "episodes": (int, type(None)),
                                                "seed": int, "env_kwargs": dict, "hyperparams": dict}


def read_run_args(run_dir: str | Path, command: str = "mpq-gym train") -> dict[str, Any]:
    """A run folder's ``args.json``, checked (an :class:`InputFileError` naming it when missing or damaged)."""
    path = Path(run_dir) / "args.json"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: {command} takes a run folder written by mpq-gym train")
    try:
        args = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path} is not valid JSON ({exc}); restore it or start a new run") from exc
    bad = [k for k, t in RUN_ARGS.items() if not isinstance(args, dict) or not isinstance(args.get(k), t)
           or isinstance(args.get(k), bool)] if isinstance(args, dict) else list(RUN_ARGS)
    if not bad and args["algo"] not in ALGOS:
        bad = ["algo"]
    minutes = args.get("minutes") if isinstance(args, dict) else None
    if not bad and (minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float))
                                               or not minutes > 0) or args["episodes"] is None and minutes is None):
        bad = ["episodes", "minutes"]
    if bad:
        raise InputFileError(f"{path} is not an args.json written by mpq-gym train (bad or missing {bad}); "
                             "restore it or start a new run")
    return args


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    agent: Any
    episodes: int
    best: dict[str, Any] | None
    #: training wall time (continued across resumes)
    wall_s: float = 0.0


def _save(agent: Any, algo: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("tmp_" + path.name)
    agent.save(tmp)
    tmp.replace(path)


def train(algo: str, env: gym.Env, episodes: int | None, seed: int, hyperparams: dict[str, Any], run_dir: str | Path,
          checkpoint_every: int = 25, progress: bool = True, tracker: MlflowTracker | None = None,
          trust: bool = False, minutes: float | None = None) -> TrainResult:
    """Train (or resume, when ``run_dir`` holds a checkpoint) until ``episodes`` episodes in all or ``minutes``
    of training, whichever comes first (one of them is needed); with a ``tracker``, per-episode metrics and
    the best configuration also go to MLflow. Resuming an SB3/DDPG checkpoint in a folder not created on
    this machine needs ``trust=True`` (it unpickles files).

    SB3 gets ``total_timesteps`` = the remaining episodes x steps per episode, exactly, so its schedules
    (learning rate, clip range) see the real length of the run; a run stopped by ``minutes`` alone gives
    SB3 an open-ended bound (use constant schedules there)."""
    if episodes is None and minutes is None:
        raise ConfigError("give the run's length: episodes (--episodes N) or minutes (--minutes M)")
    if episodes is not None and episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    if minutes is not None and not minutes > 0:
        raise ConfigError(f"minutes must be > 0, got {minutes}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / "checkpoints" / "state.json"
    done = _episodes_done(state_path)
    # SB3's Monitor writes monitor.csv in the run folder (a resumed single-env run appends to it)
    if isinstance(env, VecEnv):
        env = env if isinstance(env, VecMonitor) else VecMonitor(env, str(run_dir / "monitor.csv"),
                                                                 info_keywords=("normalized_score",))
    elif not isinstance(env, Monitor):
        env = Monitor(env, str(run_dir / "monitor.csv"), override_existing=not done, info_keywords=("normalized_score",))
    if done:
        require_trusted(run_dir, algo, trust, "resuming it")
    elif trust or created_here(run_dir) or not _pickle_files(run_dir):
        sign_run(run_dir)  # a fresh run: never launders pickles that some other party left in the folder
    agent = (load_agent(algo, model_path(run_dir, algo, checkpoint=True), env, policy_device(hyperparams)) if done
             else build_agent(algo, env, hyperparams, seed))
    if algo == "ddpg" and done:
        agent.load_replay_buffer(run_dir / "checkpoints" / "replay_buffer.pkl")
    logger = configure(str(run_dir / "tb"), ["tensorboard"])
    steps = steps_per_episode(env)
    log = EpisodeLog(run_dir, episodes, steps, logger, episodes_done=done, progress=progress, tracker=tracker,
                     seconds=None if minutes is None else 60.0 * minutes)
    remaining = OPEN_ENDED_EPISODES if episodes is None else episodes - done

    def checkpoint(n: int) -> None:
        _save(agent, algo, model_path(run_dir, algo, checkpoint=True))
        if algo == "ddpg":
            agent.save_replay_buffer(run_dir / "checkpoints" / "replay_buffer.pkl")
        state_path.write_text(json.dumps({"episodes": n, "time": time.time()}))

    reward_mode = env.get_attr("reward_mode")[0] if isinstance(env, VecEnv) else env.unwrapped.reward_mode
    try:
        with torch_threads(1 if reward_mode == "surrogate" else torch.get_num_threads()):
            _learn(algo, agent, log, logger, checkpoint, checkpoint_every, remaining, steps, done)
    finally:
        log.close()
    _save(agent, algo, model_path(run_dir, algo))
    if tracker is not None:
        for artifact in ("best_config.json", "episodes.csv", "args.json"):
            tracker.log_artifact(run_dir / artifact)
    return TrainResult(run_dir, agent, log.episodes, log.best, log.wall_s)


@contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch threads (restored after). Surrogate-mode training uses 1: the
    policies are small MLPs/LSTMs whose ops are too small to split, and extra threads only contend with
    each other and with any other job on the cores (see docs/benchmarks.md, Agents)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _learn(algo: str, agent: Any, log: EpisodeLog, logger: Any, checkpoint: Any, checkpoint_every: int,
           remaining: int, steps: int, done: int) -> None:
    """The learner's own loop until ``log`` says the run is finished (REINFORCE's, or SB3's ``learn``)."""
    if log.finished:
        return
    if algo == "reinforce":
        # checkpoints fall between updates (whole rollouts on a vector env), where a resume repeats the run
        # exactly; a run that ends mid-rollout checkpoints there too, and resumes from the next rollout
        every = max(checkpoint_every // agent.update_every, 1) * agent.update_every

        def on_episode(reward: float, info: dict) -> bool:
            go_on = log.record(reward, info)
            if checkpoint_every and (log.episodes % every == 0 or log.finished):
                checkpoint(log.episodes)
            return go_on

        agent.learn(remaining, on_episode, lambda stats: [logger.record(k, v) for k, v in stats.items()])
    else:
        agent.set_logger(logger)
        callback = EpisodeCallback(log, checkpoint, checkpoint_every)
        # every episode is ``steps`` steps, so this many timesteps are exactly the remaining episodes
        # (the callback also stops there, mid-rollout when a rollout holds several episodes)
        agent.learn(total_timesteps=remaining * steps, callback=callback,
                    reset_num_timesteps=not done, progress_bar=False)


#: the episode bound given to the learners of a run stopped by wall-clock time alone
OPEN_ENDED_EPISODES = 10 ** 9


def _episodes_done(state_path: Path) -> int:
    if not state_path.exists():
        return 0
    try:
        done = json.loads(state_path.read_text())["episodes"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise InputFileError(f"{state_path} is damaged ({type(exc).__name__}); restore it or start a new run") from exc
    if not isinstance(done, int) or isinstance(done, bool) or done < 0:
        raise InputFileError(f"{state_path} is damaged (episodes={done!r}); restore it or start a new run")
    return done


def make_env(env_id: str, env_kwargs: dict[str, Any], hyperparams: dict[str, Any], algo: str | None = None,
             single: bool = False) -> gym.Env | VecEnv:
    """The env of a run: the preset's env kwargs, overridden by the user's; with ``n_envs`` > 1 in the preset
    (and not ``single``), ``gym.make_vec``'s batched copies behind SB3's ``VecEnv`` interface."""
    require_env_id(env_id)
    kwargs = {**hyperparams.get("env_kwargs", {}), **env_kwargs}
    n_envs = 1 if single else _n_envs(algo or "ppo", hyperparams)
    if n_envs == 1:
        return gym.make(env_id, **kwargs)
    return SB3VectorEnv(gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point", **kwargs))


def new_run_dir(runs_dir: Path, env_id: str, algo: str, seed: int) -> Path:
    """runs/<env>/<algo>_<seed>_<timestamp>/ (a fresh folder)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = runs_dir / env_id / f"{algo}_{seed}_{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = runs_dir / env_id / f"{algo}_{seed}_{stamp}-{suffix}"
    return run_dir


def train_run(algo: str, env_id: str, episodes: int, seed: int, env_kwargs: dict[str, Any] | None = None,
              hyperparams_file: str | None = None, runs_dir: str | Path = "runs", resume: str | Path | None = None,
              checkpoint_every: int = 25, progress: bool = True, mlflow: str | None = None,
              trust: bool = False, minutes: float | None = None, device: str | None = None) -> TrainResult:
    """Start a run in a new folder, or resume the run in ``resume`` with its recorded arguments.

    ``mlflow``: ``None`` for TensorBoard only; ``""`` for the local MLflow store; else a store or server URI.
    ``trust``: resume an SB3/DDPG run folder not created on this machine (its files are unpickled).
    ``device``: where the quantized network runs (the env's ``device``; default: the env kwargs', else
    ``auto``); not recorded in ``args.json``, so a run resumes on any device. Not the policy's device.
    """
    if resume is not None:
        run_dir = Path(resume)
        saved = read_run_args(run_dir, "--resume")
        require_trusted(run_dir, saved["algo"], trust, "resuming it")
        trust = True  # checked above, before args.json is rewritten and signed
        algo, env_id, seed = saved["algo"], saved["env_id"], saved["seed"]
        env_kwargs, hyperparams = saved["env_kwargs"], saved["hyperparams"]
        episodes = max(episodes or 0, saved["episodes"] or 0) or None
        minutes = minutes if minutes is not None else saved.get("minutes")
    else:
        hyperparams = load_hyperparams(algo, env_id, hyperparams_file)
        env_kwargs = dict(env_kwargs or {})
        run_dir = new_run_dir(Path(runs_dir), env_id, algo, seed)
        run_dir.mkdir(parents=True)
    write_run_args(run_dir, {"algo": algo, "env_id": env_id, "episodes": episodes, "minutes": minutes, "seed": seed,
                             "env_kwargs": env_kwargs, "hyperparams": hyperparams})
    env = make_env(env_id, with_device(env_kwargs, device), hyperparams, algo)
    if mlflow is None:
        return train(algo, env, episodes, seed, hyperparams, run_dir, checkpoint_every, progress, trust=trust,
                     minutes=minutes)
    params = {"algo": algo, "env_id": env_id, "seed": seed, "episodes": episodes, "minutes": minutes,
              "env_kwargs": env_kwargs, "device": device or env_kwargs.get("device", "auto"),
              "hyperparams": hyperparams, "run_dir": str(run_dir)}
    with MlflowTracker(mlflow, f"mpq-gym/{env_id}", run_dir.name, params) as tracker:
        return train(algo, env, episodes, seed, hyperparams, run_dir, checkpoint_every, progress, tracker, trust,
                     minutes)
