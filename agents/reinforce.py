"""REINFORCE with an LSTM policy (plain torch), as in the RL mixed-precision literature.

A 2-layer LSTM (300 hidden units by default) reads one observation per quantizer group and outputs
logits over the candidates. Updates are the REINFORCE gradient of the episode return minus a baseline,
plus an entropy bonus. Two ways to train:

* one env (a ``gym.Env``): episodes one at a time, one update per ``episodes_per_update`` episodes,
  against a moving-average baseline (advantages scaled by a moving standard deviation);
* an SB3 ``VecEnv`` of N copies (what ``make_env`` builds for ``n_envs`` > 1): each rollout runs one episode
  on every copy in lock-step (one batched LSTM step for all copies per quantizer group), then one update
  over the N episodes; with ``baseline="loo"`` each episode's advantage is its return minus the mean
  return of the other N-1 (RLOO, Kool et al. 2019), divided by the batch's return std.

It implements SB3's ``PolicyPredictor`` protocol, so SB3's ``evaluate_policy`` and this project's
evaluation code treat it like any SB3 model; ``action_masks`` are honoured when the env provides them.
"""
from __future__ import annotations

import numbers
import pickle
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from mpq_gym.errors import ConfigError, InputFileError


@dataclass
class ReinforceConfig:
    """Hyperparameters of :class:`ReinforceLSTM`."""

    hidden_size: int = 300
    num_layers: int = 2
    learning_rate: float = 1e-3
    entropy_coef: float = 0.01
    baseline_decay: float = 0.9
    episodes_per_update: int = 4  # one env only: a vector env updates once per rollout of its copies
    max_grad_norm: float = 1.0
    #: "moving": moving-average baseline (``baseline_decay``), advantages / moving std; "loo": leave-one-out
    #: over the episodes of one update (RLOO). Checkpoints without it are "moving" runs.
    baseline: str = "moving"
    #: "loo" only: divide the advantages by the std of the update's returns
    normalize_advantage: bool = True
    #: "loo", vector env only: score each action by the return from its step on (the rewards before it
    #: are not its doing), against the leave-one-out mean of the other copies at the same step. Only dense
    #: rewards (the env's ``dense_reward``) make it differ from the episode return.
    reward_to_go: bool = False
    #: "lstm" (the literature's policy: a recurrent net over the groups) or "mlp" (two tanh layers of
    #: ``hidden_size`` on each step's observation alone, as SB3's PPO sees it; ``num_layers`` unused)
    policy: str = "lstm"

    def __post_init__(self) -> None:
        for f in fields(self):
            value, default = getattr(self, f.name), f.default
            if isinstance(default, str):
                ok = value in _CHOICES[f.name]
            elif isinstance(default, bool):
                ok = isinstance(value, (bool, np.bool_))
            else:
                kind = numbers.Integral if isinstance(default, int) else numbers.Real
                ok = isinstance(value, kind) and not isinstance(value, (bool, np.bool_))
            if not ok:
                allowed = (f"one of {_CHOICES[f.name]}" if isinstance(default, str) else
                           "true or false" if isinstance(default, bool) else
                           "a whole number" if isinstance(default, int) else "a number (YAML: 1.0e-3, not 1e-3)")
                raise ConfigError(f"REINFORCE hyperparameter {f.name}={value!r} must be {allowed}")


#: the baselines of :class:`ReinforceConfig`
BASELINES = ("moving", "loo")
#: the allowed values of :class:`ReinforceConfig`'s string fields
_CHOICES = {"baseline": BASELINES, "policy": ("lstm", "mlp")}


def loo_advantages(returns: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Leave-one-out advantages (RLOO): each return minus the mean of the *other* returns of the batch (the
    episodes are axis 0: [episodes] or [episodes, steps]), divided by the batch's return std (population)
    when ``normalize``."""
    returns = np.asarray(returns, dtype=np.float64)
    n = len(returns)
    if n < 2:
        raise ConfigError("baseline='loo' needs at least 2 episodes per update: train on n_envs >= 2 copies "
                          "(or episodes_per_update >= 2 on one env), or use baseline='moving'")
    advantages = returns - (returns.sum(0) - returns) / (n - 1)
    return advantages / (returns.std() + 1e-8) if normalize else advantages


class LSTMPolicyNet(nn.Module):
    """Observation sequence -> candidate logits, one step per quantizer group."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(obs_dim, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, n_actions)

    def forward(self, obs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``obs`` [batch, time, obs_dim] -> logits [batch, time, n_actions], new (h, c)."""
        out, state = self.lstm(obs, state)
        return self.head(out), state


class MLPPolicyNet(nn.Module):
    """Each step's observation alone -> candidate logits (``policy="mlp"``); the recurrent state passes
    through unchanged, so the agent's code is the same for both nets."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_size: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(obs_dim, hidden_size), nn.Tanh(),
                                  nn.Linear(hidden_size, hidden_size), nn.Tanh())
        self.head = nn.Linear(hidden_size, n_actions)

    def forward(self, obs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """``obs`` [batch, time, obs_dim] -> logits [batch, time, n_actions], ``state`` as given."""
        return self.head(self.body(obs)), state


def policy_net(config: ReinforceConfig, obs_dim: int, n_actions: int) -> nn.Module:
    """The policy network ``config.policy`` names."""
    if config.policy == "mlp":
        return MLPPolicyNet(obs_dim, n_actions, config.hidden_size)
    return LSTMPolicyNet(obs_dim, n_actions, config.hidden_size, config.num_layers)


def _masked(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return logits if mask is None else logits.masked_fill(~mask, -1e9)


class ReinforceLSTM:
    """REINFORCE agent for ``Discrete`` mixed-precision envs (``learn``, ``predict``, ``save``, ``load``).

    ``env`` is one ``gym.Env`` or an SB3 ``VecEnv`` of copies whose episodes all have the same length
    (:class:`~mpq_gym.agents.vec_env.SB3VectorEnv`); see the module docstring."""

    def __init__(self, env: gym.Env | VecEnv, config: ReinforceConfig = ReinforceConfig(), seed: int = 0) -> None:
        if isinstance(env, gym.vector.VectorEnv):
            raise ConfigError("REINFORCE-LSTM takes one env or an SB3 VecEnv: wrap the gymnasium vector env in "
                              "mpq_gym.agents.vec_env.SB3VectorEnv (as make_env does for n_envs > 1)")
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ValueError("REINFORCE-LSTM needs a Discrete action space: use a MixedPrecision-* id, "
                             "not MixedPrecisionContinuous-*")
        self.env, self.config, self.seed = env, config, seed
        #: env copies stepped together (1: a single env)
        self.n_envs = int(env.num_envs) if isinstance(env, VecEnv) else 1
        torch.manual_seed(seed)
        self.obs_dim = int(np.prod(env.observation_space.shape))
        self.n_actions = int(env.action_space.n)
        self.net = policy_net(config, self.obs_dim, self.n_actions)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.learning_rate)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline: float | None = None
        self.return_var = 1.0
        self.episodes_done = 0
        self._batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float]] = []
        #: the last vector rollout's [copies, steps, ...] observations, actions and masks (until its update)
        #: the last rollout: observations, actions, masks [copies, steps, ...], rewards [copies, steps]
        self._rollout: tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray] | None = None
        self._vec_masked = isinstance(env, VecEnv) and env.has_attr("action_masks")

    @property
    def vectorized(self) -> bool:
        """Whether the agent trains on an SB3 ``VecEnv`` (one batched rollout per update)."""
        return isinstance(self.env, VecEnv)

    @property
    def update_every(self) -> int:
        """Episodes per gradient update: the copies of a vector env, else ``config.episodes_per_update``."""
        return self.n_envs if self.vectorized else self.config.episodes_per_update

    # ------------------------------------------------------------ PolicyPredictor
    @torch.no_grad()
    def predict(self, observation: np.ndarray, state: tuple[np.ndarray, ...] | None = None,
                episode_start: np.ndarray | None = None, deterministic: bool = False,
                action_masks: np.ndarray | None = None) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Actions for a batch (or one) observation; ``state`` is the LSTM (h, c), reset where ``episode_start``."""
        obs = torch.as_tensor(np.asarray(observation, dtype=np.float32)).reshape(-1, self.obs_dim)
        n = obs.shape[0]
        shape = (self.config.num_layers, n, self.config.hidden_size)
        h, c = (torch.zeros(shape), torch.zeros(shape)) if state is None else map(torch.as_tensor, state)
        if episode_start is not None:
            keep = torch.as_tensor(~np.asarray(episode_start, dtype=bool).reshape(-1), dtype=torch.float32)
            h, c = h * keep[None, :, None], c * keep[None, :, None]
        logits, (h, c) = self.net(obs[:, None, :], (h.contiguous(), c.contiguous()))
        mask = None if action_masks is None else torch.as_tensor(np.asarray(action_masks, dtype=bool)).reshape(n, -1)
        logits = _masked(logits[:, 0], mask)
        if deterministic:
            actions = logits.argmax(dim=-1)
        else:
            actions = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=self.generator)[:, 0]
        out = actions.numpy()
        return (out if np.ndim(observation) > 1 else out[0:1].reshape(())), (h.numpy(), c.numpy())

    # --------------------------------------------------------------- training
    def _run_episode(self, seed: int | None) -> tuple[float, dict]:
        obs, info = self.env.reset(seed=seed)
        state, observations, actions, masks, total = None, [], [], [], 0.0
        masked = hasattr(self.env.unwrapped, "action_masks")
        done = False
        while not done:
            mask = info.get("action_mask") if masked else None
            action, state = self.predict(obs, state, action_masks=mask)
            observations.append(obs)
            actions.append(int(action))
            masks.append(np.ones(self.n_actions, dtype=bool) if mask is None else np.asarray(mask, dtype=bool))
            obs, reward, terminated, truncated, info = self.env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        self._batch.append((torch.as_tensor(np.stack(observations), dtype=torch.float32),
                            torch.as_tensor(actions), torch.as_tensor(np.stack(masks)), total))
        return total, info

    def _moving_advantages(self, returns: np.ndarray) -> np.ndarray:
        """Returns minus the moving baseline, over the moving std (the baseline starts at the first batch's mean)."""
        if self.baseline is None:
            self.baseline = float(returns.mean())
        return (returns - self.baseline) / np.sqrt(self.return_var + 1e-8)

    def _advantages(self, returns: np.ndarray) -> np.ndarray:
        """The update's advantages under ``config.baseline``."""
        if self.config.baseline == "loo":
            return loo_advantages(returns, self.config.normalize_advantage)
        return self._moving_advantages(returns)

    def _track_returns(self, returns: np.ndarray) -> None:
        """Move the moving mean and variance of the return (the "moving" baseline's state)."""
        if self.config.baseline != "moving":
            return
        decay = self.config.baseline_decay
        for ret in returns:
            delta = ret - self.baseline
            self.baseline += (1 - decay) * delta
            self.return_var = decay * self.return_var + (1 - decay) * delta ** 2

    def _step_optimizer(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), self.config.max_grad_norm)
        self.optimizer.step()

    def _update(self) -> dict[str, float]:
        """One update over the single-env episodes collected in ``_batch``."""
        cfg = self.config
        returns = np.array([b[3] for b in self._batch])
        advantages = self._advantages(returns)
        loss_terms, entropies = [], []
        for (obs, actions, mask, _), advantage in zip(self._batch, advantages):
            logits, _ = self.net(obs[None])
            dist = torch.distributions.Categorical(logits=_masked(logits[0], mask))
            loss_terms.append(-advantage * dist.log_prob(actions).sum() - cfg.entropy_coef * dist.entropy().sum())
            entropies.append(float(dist.entropy().mean().detach()))
        loss = torch.stack(loss_terms).mean()
        self._step_optimizer(loss)
        self._track_returns(returns)
        self._batch.clear()
        return self._stats(loss, float(np.mean(entropies)), returns)

    def _stats(self, loss: torch.Tensor, entropy: float, returns: np.ndarray) -> dict[str, float]:
        baseline = self.baseline if self.config.baseline == "moving" else float(returns.mean())
        return {"train/loss": loss.item(), "train/entropy": entropy, "train/baseline": baseline}

    def _rollout_masks(self) -> np.ndarray:
        """[n_envs, n_actions] allowed actions of the vector env's copies now (all when it has no masks)."""
        if self._vec_masked:
            return np.stack(self.env.env_method("action_masks")).astype(bool).reshape(self.n_envs, self.n_actions)
        return np.ones((self.n_envs, self.n_actions), dtype=bool)

    @torch.no_grad()
    def _run_rollout(self) -> tuple[np.ndarray, list[dict]]:
        """One episode on every copy of the vector env in lock-step; returns [n_envs] returns, final infos.

        The copies are seeded ``seed * 1_000_003 + episodes_done + i`` (copy i), the seeds a single env would
        give those episodes, so a run resumed from a checkpoint repeats the uninterrupted one."""
        env, n = self.env, self.n_envs
        env.seed(self.seed * 1_000_003 + self.episodes_done)
        obs = env.reset()
        state, observations, actions, masks, steps, totals = None, [], [], [], [], np.zeros(n)
        while True:
            mask = self._rollout_masks()
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(n, 1, self.obs_dim)
            logits, state = self.net(x, state)
            probs = torch.softmax(_masked(logits[:, 0], torch.as_tensor(mask)), dim=-1)
            action = torch.multinomial(probs, 1, generator=self.generator)[:, 0]
            observations.append(x[:, 0])
            actions.append(action)
            masks.append(torch.as_tensor(mask))
            obs, rewards, dones, infos = env.step(action.numpy())
            steps.append(np.asarray(rewards, dtype=np.float64))
            totals += steps[-1]
            if np.any(dones):
                if not np.all(dones):
                    raise ConfigError("REINFORCE's vector env copies must finish their episodes together (one step "
                                      "per quantizer group): use MixedPrecisionVectorEnv via make_env")
                break
        self._rollout = (torch.stack(observations, 1), torch.stack(actions, 1), torch.stack(masks, 1),
                         np.stack(steps, 1))
        return totals, list(infos)

    def _to_go_advantages(self, returns: np.ndarray, rewards: np.ndarray) -> torch.Tensor:
        """``reward_to_go``: [copies, steps] advantages, each step's return-to-go against the mean of the other
        copies' at that step (divided by the episode returns' std when ``normalize_advantage``)."""
        to_go = np.flip(np.cumsum(np.flip(rewards, 1), 1), 1)
        advantages = loo_advantages(to_go, normalize=False)
        if self.config.normalize_advantage:
            advantages = advantages / (returns.std() + 1e-8)
        return torch.as_tensor(advantages, dtype=torch.float32)

    def _update_rollout(self, returns: np.ndarray) -> dict[str, float]:
        """One update over the last rollout: the LSTM re-run over [copies, steps, obs] in one batch."""
        obs, actions, masks, rewards = self._rollout
        logits, _ = self.net(obs)
        dist = torch.distributions.Categorical(logits=_masked(logits, masks))
        entropy = dist.entropy()
        if self.config.reward_to_go:
            policy = (self._to_go_advantages(returns, rewards) * dist.log_prob(actions)).sum(1)
        else:
            policy = torch.as_tensor(self._advantages(returns), dtype=torch.float32) * dist.log_prob(actions).sum(1)
        loss = (-policy - self.config.entropy_coef * entropy.sum(1)).mean()
        self._step_optimizer(loss)
        self._track_returns(returns)
        self._rollout = None
        return self._stats(loss, float(entropy.mean().detach()), returns)

    def learn(self, episodes: int, on_episode: Callable[[float, dict], bool] | None = None,
              on_update: Callable[[dict[str, float]], None] | None = None) -> "ReinforceLSTM":
        """Train ``episodes`` more episodes; ``on_episode(return, final_info)`` returning False stops early.

        On a vector env the last rollout may run past ``episodes`` (whole rollouts only); ``on_episode`` sees
        the first ``episodes`` in copy order, and a False stops after that episode (the rest of its rollout
        is dropped, as EpisodeLog drops episodes past a run's end)."""
        if self.config.baseline == "loo":
            loo_advantages(np.zeros(self.update_every))  # too few episodes per update: fails now, naming the fix
        if self.config.reward_to_go and not (self.vectorized and self.config.baseline == "loo"):
            raise ConfigError("REINFORCE's reward_to_go needs baseline='loo' on a vector env (n_envs >= 2)")
        if self.vectorized:
            return self._learn_vectorized(episodes, on_episode, on_update)
        for _ in range(episodes):
            seed = self.seed * 1_000_003 + self.episodes_done
            total, info = self._run_episode(seed)
            self.episodes_done += 1
            if len(self._batch) >= self.config.episodes_per_update:
                stats = self._update()
                if on_update is not None:
                    on_update(stats)
            if on_episode is not None and on_episode(total, info) is False:
                break
        return self

    def _learn_vectorized(self, episodes: int, on_episode: Callable[[float, dict], bool] | None,
                          on_update: Callable[[dict[str, float]], None] | None) -> "ReinforceLSTM":
        """``learn`` on a vector env: rollout, one update, then the rollout's episodes to ``on_episode``."""
        reported = 0
        while reported < episodes:
            returns, infos = self._run_rollout()
            stats = self._update_rollout(returns)
            self.episodes_done += self.n_envs
            if on_update is not None:
                on_update(stats)
            for ret, info in zip(returns, infos):
                if reported >= episodes:
                    break
                reported += 1
                if on_episode is not None and on_episode(float(ret), info) is False:
                    return self
        return self

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Save weights, optimiser, baseline and sampling state (resumable): tensors and plain values only,
        so the file loads with ``torch.load(weights_only=True)``."""
        torch.save({"config": asdict(self.config), "seed": self.seed, "net": self.net.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                    "torch_rng": torch.get_rng_state(), "baseline": None if self.baseline is None else float(self.baseline),
                    "return_var": float(self.return_var),
                    "episodes_done": self.episodes_done, "obs_dim": self.obs_dim, "n_actions": self.n_actions},
                   str(path))

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | VecEnv) -> "ReinforceLSTM":
        """Load an agent saved by :meth:`save` onto ``env`` (whose spaces must match; one env or a vector env,
        whichever it was trained on: the policy is the same).

        The file is read with ``weights_only=True`` (tensors and plain values only: a checkpoint from
        someone else cannot run code) and checked field by field; a file that is not such a checkpoint
        is an :class:`~mpq_gym.errors.InputFileError` naming it."""
        data = _read_checkpoint(Path(path))
        try:
            config = ReinforceConfig(**data["config"])  # checks every value (older files: baseline="moving")
        except (TypeError, ConfigError) as exc:
            raise InputFileError(f"{path} is not a REINFORCE checkpoint written by mpq-gym ({exc}); "
                                 "resume from the run's own checkpoints/model.pt or start a new run") from exc
        agent = cls(env, config, data["seed"])
        if (agent.obs_dim, agent.n_actions) != (data["obs_dim"], data["n_actions"]):
            raise ConfigError(f"{path} was trained on observations of size {data['obs_dim']} and "
                              f"{data['n_actions']} actions; this env has {agent.obs_dim} and {agent.n_actions}")
        try:
            agent.net.load_state_dict(data["net"])
            agent.optimizer.load_state_dict(data["optimizer"])
            agent.generator.set_state(data["generator"])
            torch.set_rng_state(data["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise InputFileError(f"{path} does not fit this REINFORCE agent ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                                 "resume from the run's own checkpoints/model.pt or start a new run") from exc
        agent.baseline, agent.return_var = data["baseline"], float(data["return_var"])
        agent.episodes_done = int(data["episodes_done"])
        return agent


#: fields of a REINFORCE checkpoint and the types each may hold
_FIELDS: dict[str, tuple[type, ...]] = {
    "config": (dict,), "seed": (int,), "net": (dict,), "optimizer": (dict,), "generator": (torch.Tensor,),
    "torch_rng": (torch.Tensor,), "baseline": (float, int, type(None)), "return_var": (float, int),
    "episodes_done": (int,), "obs_dim": (int,), "n_actions": (int,)}


def _read_checkpoint(path: Path) -> dict:
    """A REINFORCE checkpoint, loaded with ``weights_only=True`` and checked field by field."""
    if not path.is_file():
        raise InputFileError(f"no REINFORCE checkpoint at {path}: did the run finish or checkpoint?")
    try:
        with warnings.catch_warnings():  # torch's note about a foreign pickle protocol: the error below says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputFileError(f"{path} is not a REINFORCE checkpoint written by mpq-gym: it is damaged or holds "
                             "pickled Python objects, which are never unpickled (they could run code); resume from "
                             "an intact run folder or start a new run") from exc
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file
        raise InputFileError(f"{path} is not a readable REINFORCE checkpoint ({type(exc).__name__}); "
                             "resume from an intact run folder or start a new run") from exc
    bad = ([k for k in _FIELDS if k not in data] if isinstance(data, dict) else list(_FIELDS))
    bad += [k for k, types in _FIELDS.items() if isinstance(data, dict) and k in data
            and (not isinstance(data[k], types) or (isinstance(data[k], bool) and bool not in types))]
    if bad:
        raise InputFileError(f"{path} is not a REINFORCE checkpoint written by mpq-gym (bad or missing fields "
                             f"{bad[:4]}); resume from an intact run folder or start a new run")
    return data
