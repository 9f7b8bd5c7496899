"""Gymnasium environments for mixed-precision quantization."""
from mpq_gym.envs.budget import Budget, BudgetTable, budget_table
from mpq_gym.envs.env import MixedPrecisionEnv
from mpq_gym.envs.registration import env_ids, register_envs, require_env_id

__all__ = ["MixedPrecisionEnv", "Budget", "BudgetTable", "budget_table", "env_ids", "register_envs", "require_env_id"]
