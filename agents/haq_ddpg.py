"""DDPG with HAQ's exploration: uniform random warm-up episodes, then truncated-normal noise around the
actor's action whose σ decays geometrically per episode, and separate actor / critic learning rates."""
from __future__ import annotations

import numpy as np
from scipy.stats import truncnorm
from stable_baselines3 import DDPG
from stable_baselines3.common.noise import ActionNoise


#: below this σ the exploration noise is no noise: the actor's action is taken as it is
MIN_SIGMA = 1e-6


class HaqDDPG(DDPG):
    """SB3 DDPG plus HAQ's settings (``sigma``, ``sigma_decay``, ``critic_learning_rate``).

    Exploration after ``learning_starts``: a ~ TruncNormal(μ = actor(s), σ, [-1, 1]) with
    σ = ``sigma`` x ``sigma_decay`` ^ (episodes since warm-up). The actor keeps ``learning_rate``; the
    critic uses ``critic_learning_rate`` when given (HAQ: 1e-4 and 1e-3).
    """

    def __init__(self, *args, sigma: float = 0.5, sigma_decay: float = 0.99,
                 critic_learning_rate: float | None = None, **kwargs) -> None:
        self.sigma, self.sigma_decay = sigma, sigma_decay
        self.critic_learning_rate = critic_learning_rate
        self.warmup_episodes: int | None = None
        super().__init__(*args, **kwargs)
        self.noise_rng = np.random.default_rng(self.seed)

    def _update_learning_rate(self, optimizers) -> None:
        super()._update_learning_rate(optimizers)
        if self.critic_learning_rate is not None:
            for group in self.critic.optimizer.param_groups:
                group["lr"] = self.critic_learning_rate

    def current_sigma(self) -> float:
        """σ of the exploration noise now."""
        after = max(0, self._episode_num - (self.warmup_episodes or 0))
        return self.sigma * self.sigma_decay ** after

    def _sample_action(self, learning_starts: int, action_noise: ActionNoise | None = None,
                       n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if self.num_timesteps < learning_starts:
            return super()._sample_action(learning_starts, action_noise, n_envs)
        if self.warmup_episodes is None:
            self.warmup_episodes = self._episode_num
        mean, _ = self.predict(self._last_obs, deterministic=True)
        mean = self.policy.scale_action(mean)
        sigma = self.current_sigma()
        if sigma < MIN_SIGMA:  # decayed away (0.95 ** 15,000 underflows to 0): the actor's action itself
            return self.policy.unscale_action(mean), mean.astype(np.float32)
        a, b = (-1.0 - mean) / sigma, (1.0 - mean) / sigma
        scaled = truncnorm.rvs(a, b, loc=mean, scale=sigma, size=mean.shape,
                              random_state=self.noise_rng).astype(np.float32)
        return self.policy.unscale_action(scaled), scaled
