"""MixedPrecisionEnv: choose a candidate (weight bits, activation bits) for one quantizer group per step."""
from __future__ import annotations

import inspect
import math
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from mpq_gym.budget import ENFORCEMENT_MODES, Budget, BudgetTable
from mpq_gym.config import config_to_json
from mpq_gym.envs.features import STATIC_FEATURES, group_features, normalised_sensitivity
from mpq_gym.envs.registration import registered_kwargs
from mpq_gym.errors import ActionError, ConfigError, ResetNeeded
from mpq_gym.problem import Problem, ProblemSpec
from mpq_gym.evaluate.surrogate import Surrogate
from mpq_gym.scores import score_scale

REWARD_MODES = ("surrogate", "exact", "hybrid", "pairwise")
#: delta: scale x (quality - FP32 quality) (HAQ); quality: scale x quality; relative: quality / FP32 - 1;
#: normalized: scale x the normalized score under the episode's budget (1 = the surrogate optimum, 0 = random)
REWARD_SHAPINGS = ("delta", "quality", "relative", "normalized")
#: haq: HAQ's layer features + sensitivity row + budget used; knapsack: also each candidate's cost and the
#: slack (budget left beyond the cheapest completion), both in units of the limit
OBSERVATIONS = ("haq", "knapsack")
#: how ``dense_reward``'s potential completes a partial episode: each later group at its least noisy candidate
#: ("quietest"), or at the choice that the knapsack's price of cost makes best, the price charged too ("lagrangian")
DENSE_POTENTIALS = ("quietest", "lagrangian")
#: spacing of the budgets a ``budget_range`` draws (the normalization anchors are computed once per budget)
BUDGET_GRID = 0.01

def check_env_options(enforcement: str, reward_mode: str, reward_scale: float, reward_shaping: str,
                      penalty_coef: float, continuous: bool, render_mode: str | None = None,
                      observation: str = "haq", budget_range: Sequence[float] | None = None,
                      dense_reward: bool = False, dense_potential: str = "quietest") -> None:
    """Raise :class:`ConfigError` naming the fix for the first bad episode option. (An unsupported
    ``render_mode`` only makes :meth:`render` return None, as gymnasium's own envs do: SB3's vector envs
    ask for "rgb_array".)"""
    for name, value, allowed in (("enforcement", enforcement, ENFORCEMENT_MODES), ("reward_mode", reward_mode, REWARD_MODES),
                                 ("reward_shaping", reward_shaping, REWARD_SHAPINGS),
                                 ("observation", observation, OBSERVATIONS),
                                 ("dense_potential", dense_potential, DENSE_POTENTIALS)):
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")
    for name, value in (("reward_scale", reward_scale), ("penalty_coef", penalty_coef)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if penalty_coef < 0:
        raise ConfigError(f"penalty_coef must be >= 0, got {penalty_coef!r}")
    for name, value in (("continuous", continuous), ("dense_reward", dense_reward)):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
    if dense_potential != "quietest" and not dense_reward:
        raise ConfigError(f"dense_potential={dense_potential!r} shapes the dense reward: add dense_reward=true")
    if budget_range is not None:
        budget_grid(budget_range)


def budget_grid(budget_range: Sequence[float]) -> np.ndarray:
    """The budgets (ratios of the reference cost) that ``budget_range=(lo, hi)`` draws from: lo, lo + 0.01, …
    up to hi; a :class:`ConfigError` naming the fix for anything but two numbers 0 < lo <= hi."""
    fix = "give two budget ratios lo <= hi, e.g. budget_range=[0.255,0.595]"
    if isinstance(budget_range, (str, bytes)) or not isinstance(budget_range, Sequence) or len(budget_range) != 2:
        raise ConfigError(f"budget_range must be (lo, hi), got {budget_range!r}: {fix}")
    lo, hi = budget_range
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0 for v in (lo, hi)) \
            or lo > hi:
        raise ConfigError(f"budget_range must be two finite ratios 0 < lo <= hi, got {budget_range!r}: {fix}")
    return np.round(lo + BUDGET_GRID * np.arange(int(math.floor((hi - lo) / BUDGET_GRID + 1e-6)) + 1), 6)


def split_env_kwargs(env_id: str, env_kwargs: Mapping[str, Any]) -> tuple[ProblemSpec, dict[str, Any]]:
    """(the :class:`ProblemSpec` of an id with ``env_kwargs`` on top of its registered ones, the episode options
    the user gave); an unknown or invalid kwarg is a :class:`ConfigError` naming the fix."""
    if not isinstance(env_kwargs, Mapping):
        raise ConfigError(f"env kwargs must be a mapping of key=value, got {env_kwargs!r}")
    spec, options = ProblemSpec.split_kwargs({**registered_kwargs(env_id), **env_kwargs}, ENV_OPTIONS)
    return spec, {k: v for k, v in options.items() if k in env_kwargs}


def check_env_kwargs(env_id: str, env_kwargs: Mapping[str, Any]) -> ProblemSpec:
    """Validate an id's kwargs without building anything: the :class:`ProblemSpec` fields and the episode
    options (a :class:`ConfigError` naming the fix for the first bad one)."""
    spec, options = split_env_kwargs(env_id, env_kwargs)
    registered = {k: v for k, v in registered_kwargs(env_id).items() if k in ENV_DEFAULTS}
    merged = {**ENV_DEFAULTS, **registered, **options}
    check_env_options(**{k: v for k, v in merged.items() if k not in ("problem", "progress")})
    return spec


def problem_from_env(env_id: str, env_kwargs: Mapping[str, Any], progress: bool = False) -> Problem:
    """The problem behind an env id and kwargs, its phase-1 table not yet computed (picklable through
    ``functools.partial``, so Ray workers can rebuild it)."""
    return split_env_kwargs(env_id, env_kwargs)[0].build(progress)


class MixedPrecisionEnv(gym.Env):
    """Choose a candidate (weight bits, activation bits[, number format]) for each quantizer group of a
    pretrained network, within a hardware budget.

    ## Description
    One step per quantizer group (a layer, unless layers are tied), in execution order. The task (the
    workload, the candidates, ties, quantizer settings and the budget) is a :class:`ProblemSpec`; the
    keyword arguments below are the episode's options.

    ## Action Space
    ``Discrete(n_candidates)`` (candidates as given, by convention narrowest first), or with
    ``continuous=True`` a ``Box(-1, 1, (1,))`` split into equal bins (HAQ). A one-element array is
    accepted; anything else raises :class:`ActionError`.

    ## Observation Space
    A float32 ``Box`` (always inside its bounds): the group's HAQ features (index, c_in, c_out, kernel,
    stride, feature size, log params, log MACs, depthwise, linear; min-max normalised), the previous
    action (normalised index), this group's row of the phase-1 sensitivity table (SQNR scaled to [0, 1]),
    the cost so far ÷ limit, and the budget left ÷ limit. ``observation="knapsack"`` adds each candidate's
    cost for this group ÷ limit and the slack (budget left beyond the cheapest completion) ÷ limit: what a
    knapsack solver would look at. With ``budget_range`` the last entry is the episode's budget (limit ÷
    the reference cost).

    ## Rewards
    0 until the last step, then ``reward_scale`` x (quality - FP32 quality) in metric points (HAQ: 0.1 x
    Δtop-1; ``reward_shaping`` "quality" or "relative" for others, or "normalized": ``reward_scale`` x the
    quality on the normalized score's scale under the episode's budget, 1 at the surrogate optimum and 0 at
    the mean random feasible configuration, so every workload and budget spans the same range), minus
    ``penalty_coef`` x relative overshoot with ``enforcement="penalty"``. With ``dense_reward=True`` the same
    return comes step by step (potential-based shaping, Ng et al. 1999): the potential Φ of a partial
    episode is -k x its predicted output noise (its choices so far, each later group at its least noisy
    candidate), k the reward per unit of noise near the surrogate optimum (the shaped surrogate's secant
    between the optimum's noise and twice it); every step is rewarded Φ(after) - Φ(before), i.e. -k x the
    noise its choice adds, and the last step its sparse reward - Φ(before), so an episode's return is its
    sparse reward - Φ(start), a constant of the budget: with gamma 1 the optimal policies are the same, and
    each choice's noise is paid when it is made. ``dense_potential="lagrangian"`` prices the budget in as
    well: with μ the knapsack's price of cost (:meth:`BudgetTable.lagrange_price`, the LP relaxation's dual),
    Φ = -k x (noise + μ x (cost - limit)) with each later group at its argmin of noise + μ x cost, a lower bound
    on the noise any completion within budget reaches; a step is then rewarded -k x its choice's reduced cost,
    ≤ 0 and 0 for the priced-in choice, so spending is paid when it is made too. ``reward_mode``:

    - "surrogate" (µs; additive phase-1 noise): near the front on EfficientNet-Lite0 (208 ground-truth
      configurations, 4 budgets) Kendall τ 0.88-0.94 against the exact output SQNR, 0.07-0.59 against the
      256-image top-1 (above the 0.10-0.56 at which two draws of images agree), mean error 0.45-0.95 points;
    - "pairwise" (µs after a one-off measurement of (groups - 1) x candidates² cells): plus measured
      interactions of adjacent groups (CLADO's terms); no consistent gain over "surrogate" there;
    - "exact" (the network on the search split: faithful to that split, noise of its size included);
    - "hybrid" (surrogate, exact for every new best).

    ## Episode End
    Terminates after the last group (``terminated=True``); never truncates. ``info`` then holds the
    configuration, its costs, quality, whether it is within budget, its ``surrogate_quality`` and its
    ``normalized_score`` (:mod:`mpq_gym.scores`: 1 = the surrogate optimum within the budget, 0 = the mean
    of random feasible configurations; in ``exact`` mode the first episode calibrates the surrogate for
    it, ``surrogate_points`` exact evaluations once per problem).

    ## Budget enforcement
    "limit" (HAQ's action wall after the last action), "penalty", "mask" (:meth:`action_masks` allows
    only choices that keep a feasible completion, for sb3-contrib's MaskablePPO), or "project" (the wall at
    every step, for any policy: a choice with no feasible completion becomes its group's most expensive
    candidate that has one and costs no more; ``info["projected"]`` says so, and the configuration and the
    next observation hold the candidate taken).

    ## Budget-conditioned episodes
    ``budget_range=(lo, hi)`` (ratios of the reference cost, on the spec's ``budget_metric``): each
    :meth:`reset` draws the episode's budget uniformly from lo, lo + 0.01, … ≤ hi (a grid, so the normalized
    score's anchors are computed once per budget), and ``reset(options={"budget": r})`` sets it to any r in
    [lo, hi]. One policy then serves a range of budgets; ``info["budget_ratio"]`` is the episode's budget.

    ## Arguments
    ``MixedPrecisionEnv(spec=None, *, enforcement, reward_mode, reward_scale, reward_shaping, penalty_coef,
    continuous, observation, budget_range, dense_reward, dense_potential, progress, problem, render_mode,
    **spec_fields)``: give a :class:`ProblemSpec` or its fields (what ``gym.make`` passes); ``problem`` shares
    an already built :class:`Problem` between envs.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, spec: ProblemSpec | None = None, *, enforcement: str = "limit",
                 reward_mode: str = "surrogate", reward_scale: float = 0.1, reward_shaping: str = "delta",
                 penalty_coef: float = 10.0, continuous: bool = False, observation: str = "haq",
                 budget_range: Sequence[float] | None = None, dense_reward: bool = False,
                 dense_potential: str = "quietest", progress: bool = False, problem: Problem | None = None,
                 render_mode: str | None = None, **spec_fields: Any) -> None:
        if spec is None:
            spec, _ = ProblemSpec.split_kwargs(spec_fields)
        elif spec_fields:
            raise ConfigError(f"give either a ProblemSpec or its fields, not both (got {sorted(spec_fields)})")
        check_env_options(enforcement, reward_mode, reward_scale, reward_shaping, penalty_coef, continuous, render_mode,
                          observation, budget_range, dense_reward, dense_potential)
        if budget_range is not None and spec.budget_absolute is not None:
            raise ConfigError("budget_range is in ratios of the reference cost: drop budget_absolute")
        #: the task this env poses (``self.spec`` is gymnasium's EnvSpec)
        self.problem_spec = spec
        self.reward_shaping = reward_shaping
        self.problem = problem if problem is not None else spec.build(progress)
        problem = self.problem
        self.enforcement, self.reward_mode = enforcement, reward_mode
        self.reward_scale, self.penalty_coef = reward_scale, penalty_coef
        self.continuous = continuous
        self.dense_reward, self.dense_potential = dense_reward, dense_potential
        #: each group's least noisy candidate: how a dense reward's potential completes a partial episode
        self._quietest = np.argmax(problem.sensitivity.sqnr_db, axis=1) if dense_reward else None
        self._potential = 0.0
        self._noise_slopes: dict[float, float] = {}  # budget limit -> k
        self._prices: dict[float, tuple[float, np.ndarray]] = {}  # budget limit -> (μ, priced-in choices)
        self.render_mode = render_mode
        self.n_groups, self.n_candidates = len(problem.groups), len(problem.candidates)

        cost_model = problem.cost_model
        #: metric -> (cost [group, candidate], fixed cost, cost of the reference configuration)
        self._all_costs = {m: (problem.group_cost_table(m), cost_model.fixed[m],
                               cost_model.cost(cost_model.reference_config(), m)) for m in cost_model.metrics}
        self.budget = spec.budget_spec
        #: the budgets a budget-conditioned env draws from (None: every episode has the spec's budget)
        self.budget_grid = None if budget_range is None else budget_grid(budget_range)
        self.budget_range = None if budget_range is None else (float(budget_range[0]), float(budget_range[1]))
        if self.budget_range is not None:
            self.budget = Budget(metric=self.budget.metric, ratio=self.budget_range[0])
        #: the episode's budget (the tightest of the range until the first reset)
        self.budget_table = problem.budget_table(self.budget)
        self.budget_table.check_feasible()
        self._features = group_features(problem.groups, problem.layers)
        self._sensitivity = normalised_sensitivity(problem.sensitivity.sqnr_db)
        self.observation = observation
        table = self.budget_table  # the tightest limit bounds every ratio to the limit
        top = table.max_total / table.limit
        n_static = len(STATIC_FEATURES) + 1 + self.n_candidates
        low = [np.zeros(n_static), [0.0, min(0.0, 1.0 - top)]]
        high = [np.ones(n_static), [max(top, 1.0), 1.0]]
        if observation == "knapsack":  # each candidate's cost and the slack, both in units of the limit
            low += [np.zeros(self.n_candidates), [min(0.0, (table.limit - table.max_total) / table.limit)]]
            high += [np.full(self.n_candidates, table.table.max() / table.limit), [1.0]]
        if self.budget_range is not None:
            low, high = low + [[self.budget_range[0]]], high + [[self.budget_range[1]]]
        low, high = np.concatenate(low).astype(np.float32), np.concatenate(high).astype(np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = (spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32) if continuous
                             else spaces.Discrete(self.n_candidates))
        self._best_surrogate = -np.inf
        self._step = 0
        self._choices = np.zeros(self.n_groups, dtype=np.int64)
        self._spent = self.budget_table.fixed
        self._needs_reset = True

    # ------------------------------------------------------------------ helpers
    def action_to_index(self, action: Any) -> int:
        """Candidate index of one action: an integer (or one-element integer array) in range, or with
        ``continuous=True`` one number in [-1, 1]; anything else raises :class:`ActionError`."""
        array = np.asarray(action)
        if array.size != 1 or array.dtype.kind not in ("iuf" if self.continuous else "iu"):
            allowed = "one number in [-1, 1]" if self.continuous else f"an integer in [0, {self.n_candidates})"
            raise ActionError(f"action must be {allowed}, got {action!r}; sample from env.action_space")
        value = float(array.reshape(-1)[0])
        if self.continuous:
            if not np.isfinite(value) or not -1.0 - 1e-6 <= value <= 1.0 + 1e-6:
                raise ActionError(f"continuous action must lie in [-1, 1], got {action!r}")
            return min(int((value + 1.0) / 2.0 * self.n_candidates), self.n_candidates - 1)
        if not 0 <= value < self.n_candidates:
            raise ActionError(f"action must be an integer in [0, {self.n_candidates}), got {action!r}")
        return int(value)

    def action_masks(self) -> np.ndarray:
        """Candidates allowed at this step (all in ``limit``/``penalty`` modes; feasible ones in ``mask``)."""
        if self.enforcement != "mask" or self._step >= self.n_groups:
            return np.ones(self.n_candidates, dtype=bool)
        return self.budget_table.feasible_actions(self._step, self._spent - self.budget_table.fixed)

    def table_at(self, ratio: float) -> BudgetTable:
        """The budget table of one budget (a ratio of the reference cost) on this env's metric."""
        return self.budget_table.with_limit(ratio * self.budget_table.reference_cost)

    def draw_budget(self, rng: np.random.Generator, options: dict | None = None) -> BudgetTable | None:
        """The budget table of a new episode: ``options["budget"]``, else one drawn from the grid with ``rng``
        (None: the spec's fixed budget)."""
        if options and "budget" in options:
            ratio = options["budget"]
            if self.budget_range is None:
                raise ConfigError("reset(options={'budget': r}) needs a budget-conditioned env: make it with "
                                  "budget_range=(lo, hi)")
            lo, hi = self.budget_range
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not lo - 1e-9 <= ratio <= hi + 1e-9:
                raise ConfigError(f"options['budget'] must be a ratio in budget_range [{lo}, {hi}], got {ratio!r}")
            return self.table_at(float(ratio))
        return None if self.budget_grid is None else self.table_at(float(rng.choice(self.budget_grid)))

    def observe(self, step: int, previous: np.ndarray, spent: np.ndarray,
                limit: float | np.ndarray | None = None) -> np.ndarray:
        """Observations [N, D] of N episodes at ``step`` (shared by the vector env): ``previous`` [N] are the
        indices chosen at step - 1, ``spent`` [N] the costs so far, ``limit`` (scalar or [N]) their budgets'
        limits (default the episode's)."""
        g = min(step, self.n_groups - 1)
        n = len(spent)
        limit = np.broadcast_to(self.budget_table.limit if limit is None else limit, (n,)).astype(np.float64)
        used = spent / limit
        prev = previous / max(self.n_candidates - 1, 1) if step > 0 else np.zeros(n)
        parts = [np.broadcast_to(self._features[g], (n, len(self._features[g]))), prev[:, None],
                 np.broadcast_to(self._sensitivity[g], (n, self.n_candidates)), used[:, None], 1.0 - used[:, None]]
        if self.observation == "knapsack":
            table = self.budget_table
            slack = (limit - spent - table.cheapest[g] - table.cheapest_after[g]) / limit
            parts += [table.table[g][None, :] / limit[:, None], slack[:, None]]
        if self.budget_range is not None:
            parts.append((limit / self.budget_table.reference_cost)[:, None])
        obs = np.concatenate(parts, axis=1)
        return np.clip(obs, self.observation_space.low, self.observation_space.high).astype(np.float32)

    def _observation(self) -> np.ndarray:
        previous = np.array([self._choices[self._step - 1] if self._step > 0 else 0])
        return self.observe(self._step, previous, np.array([self._spent]))[0]

    def _quality(self, choices: np.ndarray) -> tuple[float, bool]:
        problem = self.problem
        if self.reward_mode == "exact":
            return problem.quality(problem.config(choices)), True
        predicted = float(self.reward_surrogate.predict(choices)[0])
        if self.reward_mode == "hybrid" and predicted > self._best_surrogate:
            self._best_surrogate = predicted
            return problem.quality(problem.config(choices)), True
        return predicted, False

    @property
    def reward_surrogate(self) -> Surrogate:
        """The surrogate the reward comes from: the pairwise one in ``pairwise`` mode, else the additive one."""
        return self.problem.pairwise_surrogate if self.reward_mode == "pairwise" else self.problem.surrogate

    def _shape(self, quality: float | np.ndarray, table: BudgetTable | None = None) -> float | np.ndarray:
        """The reward of ``quality`` (``table``: the budget a "normalized" reward is scaled under; default the
        episode's)."""
        fp32 = self.problem.fp32_quality
        if self.reward_shaping == "normalized":
            scale = score_scale(self.problem, self.budget_table if table is None else table)
            return self.reward_scale * scale.normalize(quality)
        if self.reward_shaping == "quality":
            return self.reward_scale * quality
        if self.reward_shaping == "relative":
            return quality / fp32 - 1.0 if fp32 else 0.0
        return self.reward_scale * (quality - fp32)

    def noise_slope(self, table: BudgetTable) -> float:
        """k of ``dense_reward``'s potential under ``table``'s budget: the reward lost per unit of predicted
        output noise near the surrogate optimum (secant between the optimum's noise and twice it)."""
        if table.limit not in self._noise_slopes:
            surrogate = self.reward_surrogate
            noise = float(surrogate.predicted_noise(np.array(score_scale(self.problem, table).optimum_choices))[0])
            slope = 0.0
            if noise > 0:
                quality = surrogate.metric_fit(-10.0 * np.log10(np.array([noise, 2.0 * noise])))
                shaped = np.asarray(self._shape(quality, table), dtype=np.float64)
                slope = max(float(shaped[0] - shaped[1]) / noise, 0.0)
            self._noise_slopes[table.limit] = slope
        return self._noise_slopes[table.limit]

    def noise_price(self, table: BudgetTable) -> tuple[float, np.ndarray]:
        """μ of ``dense_potential="lagrangian"`` under ``table``'s budget (noise per unit of cost) and the
        choices it prices in [group]."""
        if table.limit not in self._prices:
            self._prices[table.limit] = table.lagrange_price(self.reward_surrogate.noise)
        return self._prices[table.limit]

    def potentials(self, choices: np.ndarray, step: int, tables: Sequence[BudgetTable]) -> np.ndarray:
        """Φ of N partial episodes (``dense_reward``): -k x the predicted noise of ``choices`` [N, G] up to
        ``step``, each later group at its least noisy candidate, k each budget's :meth:`noise_slope`; with
        ``dense_potential="lagrangian"`` each later group at its priced-in choice, plus μ x (cost - limit)."""
        completed = np.array(choices, dtype=np.int64, copy=True)
        slopes = np.array([self.noise_slope(table) for table in tables])
        if self.dense_potential == "quietest":
            completed[:, step:] = self._quietest[step:]
            return -slopes * self.reward_surrogate.predicted_noise(completed)
        prices = [self.noise_price(table) for table in tables]
        completed[:, step:] = np.stack([fill[step:] for _, fill in prices])
        costs = tables[0].table[np.arange(self.n_groups), completed].sum(axis=1) + tables[0].fixed
        excess = costs - np.array([table.limit for table in tables])
        noise = self.reward_surrogate.predicted_noise(completed)
        return -slopes * (noise + np.array([mu for mu, _ in prices]) * excess)

    def _potential_now(self) -> float:
        """Φ of this episode as it stands (0 without ``dense_reward``)."""
        if not self.dense_reward:
            return 0.0
        return float(self.potentials(self._choices[None], self._step, [self.budget_table])[0])

    def _dense(self) -> float:
        """This step's dense reward (0 without ``dense_reward``): Φ(now) - Φ(before), Φ kept for the next."""
        before, self._potential = self._potential, self._potential_now()
        return self._potential - before

    def _cost_metrics(self, choices: np.ndarray) -> dict[str, float]:
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
        table = self.draw_budget(self.np_random, options)
        if table is not None:
            self.budget_table = table
        self._needs_reset = False
        self._step = 0
        self._choices = np.zeros(self.n_groups, dtype=np.int64)
        self._spent = self.budget_table.fixed
        self._potential = self._potential_now()
        return self._observation(), {"group": self.problem.groups[0].name, "action_mask": self.action_masks()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._needs_reset or self._step >= self.n_groups:
            raise ResetNeeded("call reset() before step(): " + ("the episode ended" if self._step else "no episode yet"))
        index = self.action_to_index(action)
        if self.enforcement == "mask" and not self.action_masks()[index]:
            raise ActionError(f"action {index} ({self.problem.candidates[index]}) is masked out at step {self._step}: "
                             "no completion within the budget exists; sample from action_masks()")
        taken = index
        if self.enforcement == "project":
            taken = int(self.budget_table.project(self._step, np.array([index]),
                                                  np.array([self._spent - self.budget_table.fixed]))[0])
        self._choices[self._step] = taken
        self._spent += self.budget_table.table[self._step, taken]
        self._step += 1
        if self._step < self.n_groups:
            obs, reward, info = self._observation(), self._dense(), {
                "group": self.problem.groups[self._step].name, "action_mask": self.action_masks()}
        else:
            obs, reward, _, _, info = self._finish()
        if self.enforcement == "project":
            info["projected"] = taken != index
        return obs, reward, self._step >= self.n_groups, False, info

    def _finish(self) -> tuple[np.ndarray, float, bool, bool, dict]:
        chosen = self._choices.copy()
        final = self.budget_table.enforce_limit(chosen) if self.enforcement == "limit" else chosen
        quality, exact = self._quality(final)
        info = self.final_info(chosen, final, quality, exact)
        reward = self._shape(quality)
        if self.enforcement == "penalty":
            reward -= self.penalty_coef * max(0.0, info["budget_used"] - 1.0)
        if self.dense_reward:
            reward -= self._potential
        self._spent = info["costs"][self.budget_table.metric]
        return self._observation(), float(reward), True, False, info

    def final_info(self, chosen: np.ndarray, final: np.ndarray, quality: float, exact: bool,
                   table: BudgetTable | None = None) -> dict[str, Any]:
        """The info of an episode's last step: the configuration (``final``, after the budget enforcement
        of ``chosen``), its costs, ``quality`` (exact or not), surrogate quality and normalized score under
        ``table``'s budget (default the episode's)."""
        table = self.budget_table if table is None else table
        config = self.problem.config(final)
        costs = self._cost_metrics(final)
        used = costs[table.metric] / table.limit
        additive = not exact and self.reward_mode != "pairwise"  # the normalized score is the additive surrogate's
        surrogate_quality = float(quality) if additive else float(self.problem.surrogate.predict(final)[0])
        return {"config": config_to_json(config), "choices": final.tolist(), "chosen": chosen.tolist(),
                "quality": float(quality), "exact": exact, "fp32_quality": self.problem.fp32_quality,
                "surrogate_quality": surrogate_quality,
                "normalized_score": float(score_scale(self.problem, table).normalize(surrogate_quality)),
                "costs": costs, "budget_metric": table.metric, "budget_limit": table.limit,
                "budget_ratio": table.limit / table.reference_cost,
                "budget_used": used, "within_budget": used <= 1.0 + 1e-9,
                "action_mask": np.ones(self.n_candidates, dtype=bool)}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        done = ", ".join(f"{g.name}={self.problem.candidates[c]}"
                         for g, c in zip(self.problem.groups[:self._step], self._choices[:self._step]))
        return f"step {self._step}/{self.n_groups}, {self.budget_table.metric} {self._spent / self.budget_table.limit:.3f} of budget: {done}"


#: the env's own keyword arguments (the episode options) and their defaults, read off the constructor;
#: every other gym.make kwarg is a :class:`ProblemSpec` field
ENV_DEFAULTS: dict[str, Any] = {name: p.default for name, p in
                                inspect.signature(MixedPrecisionEnv.__init__).parameters.items()
                                if p.kind is inspect.Parameter.KEYWORD_ONLY}
ENV_OPTIONS: tuple[str, ...] = tuple(ENV_DEFAULTS)
