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
import inspect
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
    "uniform": ("mpq_gym.baselines.uniform:uniform_search", False),
    "random": ("mpq_gym.baselines.random_search:random_search", True),
    "greedy": ("mpq_gym.baselines.greedy_sqnr:greedy_sqnr_search", False),
    "greedy_accuracy": ("mpq_gym.baselines.greedy_sqnr:greedy_accuracy_search", False),
    "evolution": ("mpq_gym.baselines.evolution:evolutionary_search", True),
    "ilp": ("mpq_gym.baselines.ilp:ilp_search", False),
    "ilp_rerank": ("mpq_gym.baselines.ilp:ilp_rerank_search", False),
    "clado": ("mpq_gym.baselines.clado:clado_search", False),
    "reinforce": ("mpq_gym.agents.agent_search:reinforce_search", True),
    "ppo": ("mpq_gym.agents.agent_search:ppo_search", True),
    "maskable_ppo": ("mpq_gym.agents.agent_search:maskable_ppo_search", True),
    "recurrent_ppo": ("mpq_gym.agents.agent_search:recurrent_ppo_search", True),
    "ppo_dense": ("mpq_gym.agents.agent_search:ppo_dense_search", True),
    "maskable_ppo_dense": ("mpq_gym.agents.agent_search:maskable_ppo_dense_search", True),
    "ddpg": ("mpq_gym.agents.agent_search:ddpg_search", True),
    "ppo_rerank": ("mpq_gym.agents.agent_search:ppo_rerank_search", True),
    "maskable_ppo_rerank": ("mpq_gym.agents.agent_search:maskable_ppo_rerank_search", True),
}


def register_policy(name: str, search: SearchFunction, stochastic: bool = True) -> Policy:
    """Make ``search`` available to the harness as ``name``."""
    policy = Policy(name, search, stochastic)
    _REGISTRY[name] = policy
    return policy


def import_plugin(module: str) -> None:
    """Import a module that registers policies (``--plugin``); a failure is a :class:`ConfigError`."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"cannot import plugin {module!r} ({exc}); give an importable module name") from exc


def _takes_ctx_and_seed(function: Callable) -> bool:
    """Whether ``function(ctx, seed)`` is a valid call."""
    try:
        inspect.signature(function).bind(object(), 0)
    except (TypeError, ValueError):
        return False
    return True


def _import(target: str) -> Callable:
    module, _, attr = target.partition(":")
    try:
        function = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot import policy {target!r} ({exc}); give it as package.module:function") from exc
    if not callable(function) or not _takes_ctx_and_seed(function):
        raise ConfigError(f"policy {target!r} is not a search function: it must be callable as search(ctx, seed)")
    return function


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
