"""MixedPrecisionEnv: choose a candidate (weight bits, activation bits) for one quantizer group per step."""
from __future__ import annotations

import inspect
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from mpq_gym.config import config_to_json
from mpq_gym.envs.budget import ENFORCEMENT_MODES, Budget, budget_table
from mpq_gym.envs.features import STATIC_FEATURES, group_features, normalised_sensitivity
from mpq_gym.envs.registration import require_env_id
from mpq_gym.problem import Problem
from mpq_gym.quant.quantizers import QuantSettings
from mpq_gym.workloads import Workload, get_workload

REWARD_MODES = ("surrogate", "exact", "hybrid")
#: delta: scale x (quality - FP32 quality) (HAQ); quality: scale x quality; relative: quality / FP32 - 1
REWARD_SHAPINGS = ("delta", "quality", "relative")


def build_problem(workload: str | Workload = "digits_cnn", candidates: str | Sequence = "hardware",
                  tied: Sequence[Sequence[str]] | str = (), data_dir: str | None = None, weights: str | None = None,
                  random_weights: bool = False, workload_kwargs: dict | None = None, lut: str | None = None,
                  sensitivity_images: int = 256, surrogate_points: int = 16, weight_rounding: str = "nearest",
                  progress: bool = False) -> Problem:
    """The :class:`Problem` an env with these keyword arguments searches (phase-1 table not yet computed).
    ``weight_rounding="adaround"`` learns integer weights' rounding once per (layer, bits) and caches it."""
    if isinstance(workload, str):
        workload = get_workload(workload, data_dir=data_dir, weights=weights, random_weights=random_weights,
                                **(workload_kwargs or {}))
    return Problem(workload, candidates, tied=tied, settings=QuantSettings(weight_rounding=weight_rounding), lut=lut,
                   sensitivity_images=sensitivity_images, surrogate_points=surrogate_points, progress=progress)


#: the env keyword arguments that define its problem (the rest define the episode)
PROBLEM_KWARGS = tuple(inspect.signature(build_problem).parameters)


def problem_from_env(env_id: str, env_kwargs: dict[str, Any], progress: bool = False) -> Problem:
    """The problem behind an env id and kwargs, its phase-1 table not yet computed (picklable through
    ``functools.partial``, so Ray workers can rebuild it)."""
    require_env_id(env_id)
    merged = {**gym.spec(env_id.rpartition(":")[2]).kwargs, **env_kwargs, "progress": progress}
    return build_problem(**{k: v for k, v in merged.items() if k in PROBLEM_KWARGS})


class MixedPrecisionEnv(gym.Env):
    """One step per quantizer group (layers in execution order); the episode ends after the last group.

    Observation (float32 Box, always inside its bounds): the group's HAQ features (index, c_in, c_out,
    kernel, stride, feature size, log params, log MACs, depthwise, linear; min-max normalised), the
    previous action (normalised index), this group's row of the phase-1 sensitivity table (SQNR
    scaled to [0, 1]), the cost so far ÷ limit, and the budget left ÷ limit.
    Action: ``Discrete(n_candidates)``, or with ``continuous=True`` a Box [-1, 1] split into equal bins
    (HAQ). Candidates are ordered as given (by convention narrowest first).
    Reward: 0 until the last step, then ``reward_scale`` x (quality - FP32 quality) in metric points
    (HAQ: 0.1 x Δtop-1; ``reward_shaping`` selects others), minus ``penalty_coef`` x relative overshoot
    in ``penalty`` mode.
    Budget enforcement: ``limit`` (HAQ's action wall after the last action), ``penalty``, or ``mask``
    (:meth:`action_masks` allows only choices that keep a feasible completion).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, workload: str | Workload = "digits_cnn", candidates: str | Sequence = "hardware",
                 budget: float | None = 0.5, budget_metric: str = "bops", budget_absolute: float | None = None,
                 enforcement: str = "limit", reward_mode: str = "surrogate", reward_scale: float = 0.1,
                 reward_shaping: str = "delta",
                 penalty_coef: float = 10.0, continuous: bool = False, tied: Sequence[Sequence[str]] | str = (),
                 data_dir: str | None = None, weights: str | None = None, random_weights: bool = False,
                 workload_kwargs: dict | None = None, lut: str | None = None, sensitivity_images: int = 256,
                 surrogate_points: int = 16, weight_rounding: str = "nearest", progress: bool = False,
                 problem: Problem | None = None, render_mode: str | None = None) -> None:
        if enforcement not in ENFORCEMENT_MODES:
            raise ValueError(f"enforcement must be one of {ENFORCEMENT_MODES}, got {enforcement!r}")
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
        if reward_shaping not in REWARD_SHAPINGS:
            raise ValueError(f"reward_shaping must be one of {REWARD_SHAPINGS}, got {reward_shaping!r}")
        self.reward_shaping = reward_shaping
        if problem is None:
            problem = build_problem(workload, candidates, tied, data_dir, weights, random_weights, workload_kwargs,
                                    lut, sensitivity_images, surrogate_points, weight_rounding, progress)
        self.problem = problem
        self.enforcement, self.reward_mode = enforcement, reward_mode
        self.reward_scale, self.penalty_coef = reward_scale, penalty_coef
        self.continuous = continuous
        self.render_mode = render_mode
        self.n_groups, self.n_candidates = len(problem.groups), len(problem.candidates)

        cost_model = problem.cost_model
        #: metric -> (cost [group, candidate], fixed cost, cost of the reference configuration)
        self._all_costs = {m: (problem.group_cost_table(m), cost_model.fixed[m],
                               cost_model.cost(cost_model.reference_config(), m)) for m in cost_model.metrics}
        self.budget = Budget(budget_metric, budget, budget_absolute)
        self.costs = budget_table(problem, self.budget)
        self.costs.check_feasible()
        self._features = group_features(problem.groups, problem.layers)
        self._sensitivity = normalised_sensitivity(problem.sensitivity.sqnr_db)
        top = self.costs.max_total / self.costs.limit
        n_static = len(STATIC_FEATURES) + 1 + self.n_candidates
        low = np.concatenate([np.zeros(n_static), [0.0, min(0.0, 1.0 - top)]]).astype(np.float32)
        high = np.concatenate([np.ones(n_static), [max(top, 1.0), 1.0]]).astype(np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = (spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32) if continuous
                             else spaces.Discrete(self.n_candidates))
        self._best_surrogate = -np.inf
        self._step = 0
        self._choices = np.zeros(self.n_groups, dtype=np.int64)
        self._spent = self.costs.fixed

    # ------------------------------------------------------------------ helpers
    def action_to_index(self, action: Any) -> int:
        """Candidate index of an action; bad actions raise ``ValueError``."""
        if self.continuous:
            value = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
            if not np.isfinite(value) or not -1.0 - 1e-6 <= value <= 1.0 + 1e-6:
                raise ValueError(f"continuous action must lie in [-1, 1], got {action!r}")
            return min(int((value + 1.0) / 2.0 * self.n_candidates), self.n_candidates - 1)
        index = int(np.asarray(action).reshape(-1)[0]) if np.ndim(action) else int(action)
        if not 0 <= index < self.n_candidates or float(np.asarray(action).reshape(-1)[0]) != index:
            raise ValueError(f"action must be an integer in [0, {self.n_candidates}), got {action!r}")
        return index

    def action_masks(self) -> np.ndarray:
        """Candidates allowed at this step (all in ``limit``/``penalty`` modes; feasible ones in ``mask``)."""
        if self.enforcement != "mask" or self._step >= self.n_groups:
            return np.ones(self.n_candidates, dtype=bool)
        return self.costs.feasible_actions(self._step, self._spent - self.costs.fixed)

    def _observation(self) -> np.ndarray:
        g = min(self._step, self.n_groups - 1)
        previous = self._choices[g - 1] / max(self.n_candidates - 1, 1) if self._step > 0 else 0.0
        obs = np.concatenate([self._features[g], [previous], self._sensitivity[g],
                              [self._spent / self.costs.limit, 1.0 - self._spent / self.costs.limit]])
        return np.clip(obs, self.observation_space.low, self.observation_space.high).astype(np.float32)

    def _quality(self, choices: np.ndarray) -> tuple[float, bool]:
        problem = self.problem
        if self.reward_mode == "exact":
            return problem.quality(problem.config(choices)), True
        predicted = float(problem.surrogate.predict(choices)[0])
        if self.reward_mode == "hybrid" and predicted > self._best_surrogate:
            self._best_surrogate = predicted
            return problem.quality(problem.config(choices)), True
        return predicted, False

    def _shape(self, quality: float) -> float:
        fp32 = self.problem.fp32_quality
        if self.reward_shaping == "quality":
            return self.reward_scale * quality
        if self.reward_shaping == "relative":
            return quality / fp32 - 1.0 if fp32 else 0.0
        return self.reward_scale * (quality - fp32)

    def _costs(self, choices: np.ndarray) -> dict[str, float]:
        """Every cost metric of a complete configuration and its ratio to the reference (from tables)."""
        rows = np.arange(self.n_groups)
        out = {}
        for metric, (table, fixed, reference) in self._all_costs.items():
            out[metric] = float(table[rows, choices].sum() + fixed)
            out[f"{metric}_ratio"] = out[metric] / reference
        return out

    # --------------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._step = 0
        self._choices = np.zeros(self.n_groups, dtype=np.int64)
        self._spent = self.costs.fixed
        return self._observation(), {"group": self.problem.groups[0].name, "action_mask": self.action_masks()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._step >= self.n_groups:
            raise RuntimeError("step() called after the episode ended: call reset()")
        index = self.action_to_index(action)
        if self.enforcement == "mask" and not self.action_masks()[index]:
            raise ValueError(f"action {index} ({self.problem.candidates[index]}) is masked out at step {self._step}: "
                             "no completion within the budget exists; sample from action_masks()")
        self._choices[self._step] = index
        self._spent += self.costs.table[self._step, index]
        self._step += 1
        if self._step < self.n_groups:
            return self._observation(), 0.0, False, False, {
                "group": self.problem.groups[self._step].name, "action_mask": self.action_masks()}
        return self._finish()

    def _finish(self) -> tuple[np.ndarray, float, bool, bool, dict]:
        chosen = self._choices.copy()
        final = self.costs.enforce_limit(chosen) if self.enforcement == "limit" else chosen
        quality, exact = self._quality(final)
        costs = self._costs(final)
        total = costs[self.costs.metric]
        overshoot = max(0.0, total / self.costs.limit - 1.0)
        reward = self._shape(quality)
        if self.enforcement == "penalty":
            reward -= self.penalty_coef * overshoot
        config = self.problem.config(final)
        info = {"config": config_to_json(config), "choices": final.tolist(), "chosen": chosen.tolist(),
                "quality": quality, "exact": exact, "fp32_quality": self.problem.fp32_quality,
                "costs": costs, "budget_metric": self.costs.metric, "budget_limit": self.costs.limit,
                "budget_used": total / self.costs.limit, "within_budget": overshoot <= 1e-9,
                "action_mask": np.ones(self.n_candidates, dtype=bool)}
        self._spent = total
        return self._observation(), float(reward), True, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        done = ", ".join(f"{g.name}={self.problem.candidates[c]}"
                         for g, c in zip(self.problem.groups[:self._step], self._choices[:self._step]))
        return f"step {self._step}/{self.n_groups}, {self.costs.metric} {self._spent / self.costs.limit:.3f} of budget: {done}"
