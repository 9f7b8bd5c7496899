"""Gymnasium environments for mixed-precision quantization."""
from mpq_gym.envs.env import ENV_OPTIONS, MixedPrecisionEnv, problem_from_env, split_env_kwargs
from mpq_gym.envs.registration import env_ids, register_envs, require_env_id

__all__ = ["MixedPrecisionEnv", "ENV_OPTIONS", "split_env_kwargs", "problem_from_env", "env_ids", "register_envs",
           "require_env_id"]
