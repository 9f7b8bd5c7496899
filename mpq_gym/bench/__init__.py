"""Benchmark harness: policies x budgets x seeds -> results.csv, a table, a Pareto plot, IQM aggregates."""
from mpq_gym.bench.policies import Policy, get_policy, register_policy
from mpq_gym.bench.runner import BenchSpec, run_benchmark

__all__ = ["Policy", "get_policy", "register_policy", "BenchSpec", "run_benchmark"]
