"""Evaluators: exact (this package), later sensitivity and surrogate."""
