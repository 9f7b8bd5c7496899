"""Trained agents as benchmark policies: train on the context's problem in surrogate mode, return the best
configuration within budget (the harness then scores it exactly).

Each call trains from scratch for ``episodes`` (default :data:`DEFAULT_EPISODES`) with the algorithm's preset, sharing the
benchmark's :class:`~mpq_gym.problem.Problem` (no second phase-1 table); the surrogate's calibration
evaluations are charged to the search. The ``*_rerank`` variants spend the search's exact evaluations on
the distinct configurations the agent visited, best by the surrogate first, and return the best by exact
quality: the agent proposes, the network decides where the surrogate cannot (interactions between layers).
The ``*_dense`` variants train the same preset on the dense, normalized reward (:data:`DENSE_REWARD`).
"""
from __future__ import annotations

import tempfile
from functools import partial

import numpy as np

from mpq_gym.agents.training import load_hyperparams, train_on_problem
from mpq_gym.search import SearchContext

#: training episodes when none are given: 3,000 for the agents that train on batched copies (the PPOs, batched
#: REINFORCE: under a minute on 2 cores in surrogate mode), 300 for the one-env agents
DEFAULT_EPISODES = {"ppo": 3000, "maskable_ppo": 3000, "reinforce": 3000}
ONE_ENV_EPISODES = 300
#: env options of the ``*_dense`` policies: every choice pays its noise when it is made (potential-based, the
#: same optimum), on the normalized score's 0-to-1 scale under the episode's budget (docs/benchmarks.md, "Dense
#: rewards")
DENSE_REWARD = {"dense_reward": True, "reward_shaping": "normalized", "reward_scale": 1.0}


def agent_search(algo: str, ctx: SearchContext, seed: int = 0, episodes: int | None = None,
                 hyperparams: dict | None = None, minutes: float | None = None, rerank: bool = False,
                 env_kwargs: dict | None = None) -> np.ndarray:
    """Train ``algo`` for ``episodes`` (and/or ``minutes``) on ``ctx`` and return its best configuration
    within the budget (with ``rerank``, the best by exact quality of the visited configurations that the
    evaluation budget affords, best by the surrogate first). ``env_kwargs`` go on top of the preset's."""
    ctx.surrogate  # noqa: B018  (charge the calibration; the env's reward uses it)
    if episodes is None and minutes is None:
        episodes = DEFAULT_EPISODES.get(algo, ONE_ENV_EPISODES)
    hp = hyperparams if hyperparams is not None else load_hyperparams(algo)
    if env_kwargs:
        hp = {**hp, "env_kwargs": {**hp.get("env_kwargs", {}), **env_kwargs}}
    with tempfile.TemporaryDirectory() as run_dir:
        result, rows = train_on_problem(algo, ctx.problem, ctx.budget, hp, episodes, seed, run_dir, minutes)
        visited = _visited(rows) if rerank else None
    if result.best is None:
        raise RuntimeError(f"{algo} finished {episodes} episodes without one configuration within the budget")
    if visited is not None:
        return ctx.rerank_exactly(visited)
    return np.asarray(result.best["choices"], dtype=np.int64)


def _visited(rows: list[dict]) -> np.ndarray:
    """[N, G] the configurations within budget among a run's episode rows."""
    chosen = [r["choices"] for r in rows if r["within_budget"]]
    return np.array([[int(c) for c in row.split()] for row in chosen], dtype=np.int64)


reinforce_search = partial(agent_search, "reinforce")
ppo_search = partial(agent_search, "ppo")
maskable_ppo_search = partial(agent_search, "maskable_ppo")
recurrent_ppo_search = partial(agent_search, "recurrent_ppo")
ddpg_search = partial(agent_search, "ddpg")
ppo_dense_search = partial(agent_search, "ppo", env_kwargs=DENSE_REWARD)
maskable_ppo_dense_search = partial(agent_search, "maskable_ppo", env_kwargs=DENSE_REWARD)
ppo_rerank_search = partial(agent_search, "ppo", rerank=True)
maskable_ppo_rerank_search = partial(agent_search, "maskable_ppo", rerank=True)
