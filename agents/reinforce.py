"""REINFORCE with an LSTM policy (plain torch), as in the RL mixed-precision literature.

A 2-layer LSTM (300 hidden units by default) reads one observation per quantizer group and outputs
logits over the candidates. Updates are the REINFORCE gradient of the episode return with a moving-
average baseline (advantages scaled by a moving standard deviation) plus an entropy bonus. It
implements SB3's ``PolicyPredictor`` protocol, so SB3's ``evaluate_policy`` and this project's
evaluation code treat it like any SB3 model; ``action_masks`` are honoured when the env provides them.
"""
from __future__ import annotations

import pickle
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
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
    episodes_per_update: int = 4
    max_grad_norm: float = 1.0


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


def _masked(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return logits if mask is None else logits.masked_fill(~mask, -1e9)


class ReinforceLSTM:
    """REINFORCE agent for ``Discrete`` mixed-precision envs (``learn``, ``predict``, ``save``, ``load``)."""

    def __init__(self, env: gym.Env, config: ReinforceConfig = ReinforceConfig(), seed: int = 0) -> None:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ValueError("REINFORCE-LSTM needs a Discrete action space: use a MixedPrecision-* id, "
                             "not MixedPrecisionContinuous-*")
        self.env, self.config, self.seed = env, config, seed
        torch.manual_seed(seed)
        self.obs_dim = int(np.prod(env.observation_space.shape))
        self.n_actions = int(env.action_space.n)
        self.net = LSTMPolicyNet(self.obs_dim, self.n_actions, config.hidden_size, config.num_layers)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.learning_rate)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline: float | None = None
        self.return_var = 1.0
        self.episodes_done = 0
        self._batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float]] = []

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

    def _update(self) -> dict[str, float]:
        cfg = self.config
        returns = np.array([b[3] for b in self._batch])
        if self.baseline is None:
            self.baseline = float(returns.mean())
        loss_terms, entropies = [], []
        for (obs, actions, mask, ret) in self._batch:
            logits, _ = self.net(obs[None])
            dist = torch.distributions.Categorical(logits=_masked(logits[0], mask))
            advantage = (ret - self.baseline) / np.sqrt(self.return_var + 1e-8)
            loss_terms.append(-advantage * dist.log_prob(actions).sum() - cfg.entropy_coef * dist.entropy().sum())
            entropies.append(float(dist.entropy().mean().detach()))
        loss = torch.stack(loss_terms).mean()
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        for ret in returns:  # moving mean and variance of the return
            delta = ret - self.baseline
            self.baseline += (1 - cfg.baseline_decay) * delta
            self.return_var = cfg.baseline_decay * self.return_var + (1 - cfg.baseline_decay) * delta ** 2
        self._batch.clear()
        return {"train/loss": loss.item(), "train/entropy": float(np.mean(entropies)), "train/baseline": self.baseline}

    def learn(self, episodes: int, on_episode: Callable[[float, dict], bool] | None = None,
              on_update: Callable[[dict[str, float]], None] | None = None) -> "ReinforceLSTM":
        """Train ``episodes`` more episodes; ``on_episode(return, final_info)`` returning False stops early."""
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
    def load(cls, path: str | Path, env: gym.Env) -> "ReinforceLSTM":
        """Load an agent saved by :meth:`save` onto ``env`` (whose spaces must match).

        The file is read with ``weights_only=True`` (tensors and plain values only: a checkpoint from
        someone else cannot run code) and checked field by field; a file that is not such a checkpoint
        is an :class:`~mpq_gym.errors.InputFileError` naming it."""
        data = _read_checkpoint(Path(path))
        try:
            config = ReinforceConfig(**data["config"])
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in asdict(config).values()):
                raise TypeError("non-numeric hyperparameters")
        except TypeError as exc:
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
