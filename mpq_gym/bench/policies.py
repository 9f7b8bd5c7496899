"""Policy registry of the benchmark harness.

A policy is a :data:`mpq_gym.search.SearchFunction`: ``search(ctx, seed) -> choices`` (one candidate
index per quantizer group, within ``ctx.budget``). Register your own with :func:`register_policy`, or
name it on the command line as ``package.module:function``::

    from mpq_gym.bench import register_policy

    def my_search(ctx, seed):
        rng = np.random.default_rng(seed)
        return ctx.random_feasible(rng)

    register_policy("mine", my_search, stochastic=True)
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from mpq_gym.errors import ConfigError
from mpq_gym.search import SearchFunction


@dataclass(frozen=True)
class Policy:
    """A named search function; a non-``stochastic`` one runs for the first seed only."""

    name: str
    search: SearchFunction
    stochastic: bool = True


_REGISTRY: dict[str, Policy] = {}
#: built-in policies: name -> (module:function, stochastic); imported on first use
BUILTIN: dict[str, tuple[str, bool]] = {
    "uniform": ("baselines.uniform:uniform_search", False),
    "random": ("baselines.random_search:random_search", True),
    "greedy": ("baselines.greedy_sqnr:greedy_sqnr_search", False),
    "greedy_accuracy": ("baselines.greedy_sqnr:greedy_accuracy_search", False),
    "evolution": ("baselines.evolution:evolutionary_search", True),
    "ilp": ("baselines.ilp:ilp_search", False),
    "reinforce": ("agents.search:reinforce_search", True),
    "ppo": ("agents.search:ppo_search", True),
    "maskable_ppo": ("agents.search:maskable_ppo_search", True),
    "ddpg": ("agents.search:ddpg_search", True),
}


def register_policy(name: str, search: SearchFunction, stochastic: bool = True) -> Policy:
    """Make ``search`` available to the harness as ``name``."""
    policy = Policy(name, search, stochastic)
    _REGISTRY[name] = policy
    return policy


def _import(target: str) -> Callable:
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import policy {target!r} ({exc}); give it as package.module:function") from exc


def get_policy(name: str) -> Policy:
    """A registered, built-in, or ``module:function`` policy."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in BUILTIN:
        target, stochastic = BUILTIN[name]
        return register_policy(name, _import(target), stochastic)
    if ":" in name:
        function = _import(name)
        return register_policy(name, function, getattr(function, "stochastic", True))
    raise ConfigError(f"unknown policy {name!r}; choose from {sorted(set(BUILTIN) | set(_REGISTRY))} "
                      "or give package.module:function")
