"""Benchmark scripts whose figures go into docs/benchmarks.md (each prints the command that reproduces it)."""
