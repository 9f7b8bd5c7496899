"""Gymnasium environments for mixed-precision quantization."""
from mpq_gym.envs.budget import Budget
from mpq_gym.envs.env import MixedPrecisionEnv
from mpq_gym.envs.registration import env_ids, register_envs

__all__ = ["MixedPrecisionEnv", "Budget", "env_ids", "register_envs"]
