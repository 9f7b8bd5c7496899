"""SB3's ``VecEnv`` interface over :class:`~mpq_gym.envs.vector.MixedPrecisionVectorEnv`.

stable-baselines3 2.x trains on its own ``VecEnv`` type, not on gymnasium's vector envs; this adapter (the
only hand-written piece) lets PPO / MaskablePPO / RecurrentPPO roll out ``n_envs`` copies as one numpy
batch instead of ``DummyVecEnv``'s loop over single envs. Finished episodes reset in the same step, with
``terminal_observation`` in their info, as SB3 expects.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvStepReturn

from mpq_gym.envs.vector import MixedPrecisionVectorEnv


class SB3VectorEnv(VecEnv):
    """A :class:`MixedPrecisionVectorEnv` as an SB3 ``VecEnv`` (``env_method("action_masks")`` included)."""

    def __init__(self, venv: MixedPrecisionVectorEnv) -> None:
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._seed: int | None = None

    def reset(self) -> np.ndarray:
        obs, _ = self.venv.reset(seed=self._seed)
        self._seed = None
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if "final_info" in info:
            final = info["final_info"]
            keys = [k for k in final if not k.startswith("_")]
            for i in np.flatnonzero(dones):
                infos[i] = {k: final[k][i] for k in keys}
                infos[i]["terminal_observation"] = info["final_obs"][i]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, rewards.astype(np.float32), dones, infos

    def action_masks(self) -> np.ndarray:
        """[n_envs, n_candidates] allowed candidates."""
        return self.venv.action_masks()

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list:
        if method_name != "action_masks":
            raise AttributeError(f"{type(self).__name__} only forwards action_masks(), not {method_name}()")
        masks = self.action_masks()
        return [masks[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices: Any = None) -> list:
        value = getattr(self.venv.template, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError(f"{type(self).__name__} copies share one template env; set {attr_name} when making it")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def seed(self, seed: int | None = None) -> Sequence[None]:
        self._seed = seed
        return [None] * self.num_envs

    def close(self) -> None:
        self.venv.close()
