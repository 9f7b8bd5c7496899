"""MixedPrecisionVectorEnv: ``num_envs`` copies of the env stepped together as numpy batches.

Every episode has the same length (one step per quantizer group), so the copies are always at the same
step: one step of all of them is a few array operations, and the surrogate scores all finished
configurations in one batched call. This is what ``gym.make_vec(ID, num_envs=N)`` builds (the ids'
``vector_entry_point``); its results equal N single envs given the same actions.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.utils import seeding
from gymnasium.vector.utils import batch_space

from mpq_gym.envs.env import MixedPrecisionEnv
from mpq_gym.errors import ActionError, ConfigError
from mpq_gym.problem import ProblemSpec


class MixedPrecisionVectorEnv(VectorEnv):
    """``num_envs`` :class:`~mpq_gym.envs.env.MixedPrecisionEnv` copies on one problem, surrogate reward only.

    Takes the single env's arguments (a :class:`ProblemSpec` or its fields, and the episode options) plus
    ``num_envs``. Finished episodes reset in the same step (``AutoresetMode.SAME_STEP``): the returned
    observation starts the next episode and ``info["final_obs"]`` / ``info["final_info"]`` hold the end of
    the finished one, as SB3's vector envs do. ``exact`` and ``hybrid`` rewards evaluate the network one
    configuration at a time, so they have no batched form: use ``vectorization_mode="sync"`` for them.
    With ``budget_range`` each copy draws its episodes' budgets with its own generator, seeded ``seed + i``
    as gymnasium seeds the i-th of N single envs, so the two give the same episodes.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, spec: ProblemSpec | None = None, **kwargs: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError(f"num_envs must be a whole number >= 1, got {num_envs!r}")
        kwargs.pop("max_episode_steps", None)
        #: one env holding the shared problem, tables and spaces (and the single-env reference semantics)
        self.template = MixedPrecisionEnv(spec, **kwargs)
        if self.template.reward_mode not in ("surrogate", "pairwise"):
            raise ConfigError(f"the vector env batches the surrogate rewards only, got reward_mode="
                              f"{self.template.reward_mode!r}: use gym.make_vec(..., vectorization_mode='sync')")
        self.num_envs = num_envs
        self.single_observation_space = self.template.observation_space
        self.single_action_space = self.template.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        t = self.template
        self.problem, self.budget_table = t.problem, t.budget_table
        #: each copy's episode budget (all the spec's unless budget-conditioned)
        self._tables = [self.budget_table] * num_envs
        self._rngs: list[np.random.Generator] = []
        self._step = 0
        self._choices = np.zeros((num_envs, t.n_groups), dtype=np.int64)
        self._spent = np.full(num_envs, self.budget_table.fixed)
        self._potential = np.zeros(num_envs)  # dense_reward's Φ of each copy's episode as it stands
        self._needs_reset = True

    # ------------------------------------------------------------------ helpers
    def _indices(self, actions: Any) -> np.ndarray:
        """Candidate index per copy (the single env's rules, batched)."""
        t = self.template
        array = np.asarray(actions)
        if array.shape not in ((self.num_envs,), (self.num_envs, 1)):
            raise ActionError(f"actions must have shape ({self.num_envs},), got {array.shape}; sample from "
                              "env.action_space")
        array = array.reshape(self.num_envs)
        if t.continuous:
            if array.dtype.kind not in "iuf" or not np.all(np.isfinite(array)) or np.any(np.abs(array) > 1 + 1e-6):
                raise ActionError(f"continuous actions must lie in [-1, 1], got {actions!r}")
            return np.minimum(((array + 1.0) / 2.0 * t.n_candidates).astype(np.int64), t.n_candidates - 1)
        if array.dtype.kind not in "iu" or np.any(array < 0) or np.any(array >= t.n_candidates):
            raise ActionError(f"actions must be integers in [0, {t.n_candidates}), got {actions!r}")
        return array.astype(np.int64)

    def action_masks(self) -> np.ndarray:
        """[num_envs, n_candidates] allowed candidates (all unless ``enforcement="mask"``)."""
        t = self.template
        if t.enforcement != "mask" or self._step >= t.n_groups:
            return np.ones((self.num_envs, t.n_candidates), dtype=bool)
        return self.budget_table.feasible_actions(self._step, self._spent[:, None] - self.budget_table.fixed,
                                                  self._ceilings()[:, None])

    def _ceilings(self) -> np.ndarray:
        """[num_envs] each copy's budget limit, with the floating-point tolerance (``BudgetTable.ceiling``)."""
        return np.array([table.ceiling for table in self._tables])

    def _observations(self) -> np.ndarray:
        previous = self._choices[:, self._step - 1] if self._step > 0 else np.zeros(self.num_envs, dtype=np.int64)
        return self.template.observe(self._step, previous, self._spent, np.array([t.limit for t in self._tables]))

    # --------------------------------------------------------------------- API
    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed[0] if isinstance(seed, list) else seed)
        if seed is not None or not self._rngs:
            seeds = seed if isinstance(seed, list) else [None if seed is None else seed + i for i in range(self.num_envs)]
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        self._start(options)
        return self._observations(), {"action_mask": self.action_masks()}

    def _start(self, options: dict | None = None) -> None:
        if self.template.budget_range is not None:
            self._tables = [self.template.draw_budget(rng, options) for rng in self._rngs]
        self._step = 0
        self._choices[:] = 0
        self._spent[:] = self.budget_table.fixed
        self._potential = self._potentials_now()
        self._needs_reset = False

    def _potentials_now(self) -> np.ndarray:
        """Φ of every copy's episode as it stands (zeros without ``dense_reward``)."""
        if not self.template.dense_reward:
            return np.zeros(self.num_envs)
        return self.template.potentials(self._choices, self._step, self._tables)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        t = self.template
        if self._needs_reset:
            raise ConfigError("call reset() before step()")
        index = self._indices(actions)
        if t.enforcement == "mask":
            allowed = self.action_masks()[np.arange(self.num_envs), index]
            if not allowed.all():
                bad = int(np.flatnonzero(~allowed)[0])
                raise ActionError(f"action {index[bad]} of copy {bad} is masked out at step {self._step}: "
                                  "sample from action_masks()")
        extra = {}
        if t.enforcement == "project":
            taken = self.budget_table.project(self._step, index, self._spent - self.budget_table.fixed,
                                              self._ceilings())
            extra = {"projected": taken != index, "_projected": np.ones(self.num_envs, dtype=bool)}
            index = taken
        self._choices[:, self._step] = index
        self._spent += self.budget_table.table[self._step, index]
        self._step += 1
        n = self.num_envs
        if self._step < t.n_groups:
            before, self._potential = self._potential, self._potentials_now()
            return (self._observations(), self._potential - before, np.zeros(n, dtype=bool),
                    np.zeros(n, dtype=bool), {"action_mask": self.action_masks(), **extra})
        final_obs, rewards, final_info = self._finish()
        self._start()
        info = {"action_mask": self.action_masks(), "final_obs": final_obs, "final_info": final_info,
                "_final_obs": np.ones(n, dtype=bool), "_final_info": np.ones(n, dtype=bool), **extra}
        return self._observations(), rewards, np.ones(n, dtype=bool), np.zeros(n, dtype=bool), info

    def _finish(self) -> tuple[np.ndarray, np.ndarray, dict]:
        """Score every copy's configuration: the single env's ``_finish``, batched."""
        t, table = self.template, self.budget_table
        chosen = self._choices.copy()
        final = (np.stack([tab.enforce_limit(c) for tab, c in zip(self._tables, chosen)]) if t.enforcement == "limit"
                 else chosen)
        quality = t.reward_surrogate.predict(final)
        infos = [t.final_info(c, f, q, False, tab) for c, f, q, tab in zip(chosen, final, quality, self._tables)]
        rewards = np.array([t._shape(q, tab) for q, tab in zip(quality, self._tables)], dtype=np.float64)
        if t.enforcement == "penalty":
            rewards = rewards - t.penalty_coef * np.maximum(0.0, np.array([i["budget_used"] for i in infos]) - 1.0)
        rewards = rewards - self._potential  # zeros without dense_reward
        self._spent = np.array([i["costs"][table.metric] for i in infos])
        final_info = {key: np.array([i[key] for i in infos], dtype=object) for key in infos[0]}
        for key in ("quality", "normalized_score", "surrogate_quality", "budget_used", "budget_ratio"):
            final_info[key] = final_info[key].astype(np.float64)
        final_info["within_budget"] = final_info["within_budget"].astype(bool)
        final_info.update({f"_{key}": np.ones(self.num_envs, dtype=bool) for key in list(final_info)})
        return self._observations(), rewards, final_info
