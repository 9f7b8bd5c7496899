"""MPQ-Bench: named, versioned task suites (``mpq-gym bench --suite NAME``).

A suite is a fixed list of tasks; each task fixes the env id and kwargs, the budgets, the seeds, the
exact-evaluation allowance per search, the split the scores are reported on and the track:

* ``nearest``: round-to-nearest weights with the quantizer's fixed calibration (``weight_rounding="nearest"``);
* ``reconstruction``: weights may be reconstructed (AdaRound, ``weight_rounding="adaround"``).

Suites are a Python table (no data file to ship). A released suite is immutable: its content digest is
pinned in :data:`RELEASED`, :func:`get_suite` refuses one whose definition no longer matches, and a changed
task list gets a new name (``mpqbench-v2...``). Results record the suite's name, version and digest in every
row, so a leaderboard entry can be checked against the definition it claims.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from mpq_gym.budget import Budget
from mpq_gym.envs.env import check_env_kwargs
from mpq_gym.envs.registration import require_env_id
from mpq_gym.errors import ConfigError, MpqGymError

#: track -> the weight rounding its tasks must fix
TRACKS: dict[str, str] = {"nearest": "nearest", "reconstruction": "adaround"}
#: env kwargs a user may set on top of a suite's (where data lives, where and on how many processes the network runs;
#: they do not change the task)
LOCATION_KWARGS = ("data_dir", "device", "workers")
#: env kwargs a suite task may not fix: random weights make the numbers meaningless, a weights path, the data
#: the device and the worker count are the user's
FORBIDDEN_KWARGS = ("random_weights", "weights", "data_dir", "device", "workers")


@dataclass(frozen=True)
class SuiteTask:
    """One task of a suite: a problem (env id + kwargs) at some budgets, and how it is scored."""

    name: str
    env_id: str
    env_kwargs: Mapping[str, Any]
    budgets: tuple[float, ...]
    seeds: int
    #: exact evaluations one search may spend (None: unlimited)
    max_evaluations: int | None
    track: str
    report_split: str = "test"
    #: Δ vs FP32 in points = (quality - FP32) x this: 1 for top-1 in %, 100 for a correlation in [-1, 1]
    delta_scale: float = 1.0
    #: a sentence for the docs (e.g. that the weights are the user's)
    note: str = ""

    def __post_init__(self) -> None:
        require_env_id(self.env_id)
        if self.track not in TRACKS:
            raise ConfigError(f"task {self.name}: track {self.track!r} is unknown; choose one of {sorted(TRACKS)}")
        rounding = self.env_kwargs.get("weight_rounding")
        if rounding != TRACKS[self.track]:
            raise ConfigError(f"task {self.name}: the {self.track} track needs weight_rounding="
                              f"{TRACKS[self.track]!r} in its env kwargs, got {rounding!r}")
        fixed = sorted(k for k in FORBIDDEN_KWARGS if k in self.env_kwargs)
        if fixed:
            raise ConfigError(f"task {self.name}: a suite may not fix {fixed} (the user's weights and data are "
                              "found where the workload looks for them, the device is the user's --device)")
        if not self.budgets:
            raise ConfigError(f"task {self.name}: give at least one budget")
        for ratio in self.budgets:
            Budget(ratio=ratio)
        if self.seeds < 1 or (self.max_evaluations is not None and self.max_evaluations < 1):
            raise ConfigError(f"task {self.name}: seeds and max_evaluations must be >= 1")


@dataclass(frozen=True)
class Suite:
    """A named, versioned list of tasks."""

    name: str
    version: int
    description: str
    tasks: tuple[SuiteTask, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [t.name for t in self.tasks]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"suite {self.name}: give tasks with distinct names, got {names}")

    @property
    def digest(self) -> str:
        """Content hash of what defines the numbers (16 hex digits; the description and notes are left out, so
        wording can be fixed): what :data:`RELEASED` pins."""
        definition = {"name": self.name, "version": self.version,
                      "tasks": [{k: v for k, v in asdict(t).items() if k != "note"} for t in self.tasks]}
        text = json.dumps(definition, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def task(self, name: str) -> SuiteTask:
        """The task called ``name``."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise ConfigError(f"suite {self.name} has no task {name!r}; choose from {[t.name for t in self.tasks]}")

    def identity(self) -> dict[str, Any]:
        """Name, version and digest."""
        return {"name": self.name, "version": self.version, "digest": self.digest}

    def record(self, task: str) -> dict[str, Any]:
        """What a results folder records about its suite and task (``BenchSpec.suite``)."""
        return {**self.identity(), "task": task}


def check_suite(suite: Suite) -> list[str]:
    """Validate every task's env kwargs without building anything (a dry run); returns the task names."""
    for task in suite.tasks:
        try:
            check_env_kwargs(task.env_id, dict(task.env_kwargs))
        except MpqGymError as exc:
            raise ConfigError(f"suite {suite.name}, task {task.name}: {exc}") from exc
    return [t.name for t in suite.tasks]


_LOW_BIT = "W2A2,W2A4,W3A3,W4A2,W4A4,W8A8"
_TORCHVISION_NOTE = "needs the torchvision ImageNet weights in the torch hub cache (MissingWeightsError otherwise)"

SUITES: dict[str, Suite] = {s.name: s for s in (
    Suite("mpqbench-v1-lite", 1,
          "Two small tasks that run end to end, every baseline and PPO, in about 8.5 minutes of CPU time "
          "(one thread, empty cache).",
          (SuiteTask("digits-low", "MixedPrecision-DigitsCNN-v0",
                     {"candidates": _LOW_BIT, "weight_rounding": "nearest"}, (0.05, 0.08), seeds=2,
                     max_evaluations=4, track="nearest",
                     note="DigitsCNN (sklearn digits) with a low-bit candidate set, where configurations differ"),
           SuiteTask("lite0-hardware", "MixedPrecision-EfficientNetLite0-v0",
                     {"candidates": "hardware", "sensitivity_images": 64, "weight_rounding": "nearest"}, (0.375,),
                     seeds=2, max_evaluations=4, track="nearest",
                     note="EfficientNet-Lite0, {W4A8, W8A8, W8A16}, phase 1 on 64 images"))),
    Suite("mpqbench-v1", 1,
          "The full benchmark: EfficientNet-Lite0 (hardware and expanded sets, both tracks), MiniLM-L6 on STS-B, "
          "and ResNet18 / ResNet50 / MobileNetV2 where their weights are available. Hours on 2 CPU cores.",
          (SuiteTask("lite0-hardware", "MixedPrecision-EfficientNetLite0-v0",
                     {"candidates": "hardware", "weight_rounding": "nearest"}, (0.5, 0.375, 0.3), seeds=5,
                     max_evaluations=16, track="nearest"),
           SuiteTask("lite0-expanded", "MixedPrecision-EfficientNetLite0-v0",
                     {"candidates": "expanded", "weight_rounding": "nearest"}, (0.25, 0.2), seeds=5,
                     max_evaluations=16, track="nearest"),
           SuiteTask("minilm-expanded", "MixedPrecision-MiniLM-v0",
                     {"candidates": "expanded", "weight_rounding": "nearest"}, (0.2, 0.15), seeds=5,
                     max_evaluations=16, track="nearest", delta_scale=100.0,
                     note="quality = Spearman's rho on STS-B; Δ vs FP32 in rho x 100"),
           SuiteTask("lite0-hardware-adaround", "MixedPrecision-EfficientNetLite0-v0",
                     {"candidates": "hardware", "sensitivity_images": 64, "weight_rounding": "adaround"},
                     (0.375, 0.3), seeds=5, max_evaluations=16, track="reconstruction",
                     note="AdaRound weights: learned once per (layer, bits), about 20 minutes, then cached"),
           SuiteTask("resnet18", "MixedPrecision-ResNet18-v0",
                     {"candidates": "hardware", "sensitivity_images": 64, "weight_rounding": "nearest"},
                     (0.375, 0.3), seeds=5, max_evaluations=16, track="nearest", note=_TORCHVISION_NOTE),
           SuiteTask("resnet50", "MixedPrecision-ResNet50-v0",
                     {"candidates": "hardware", "sensitivity_images": 64, "weight_rounding": "nearest"},
                     (0.375, 0.3), seeds=5, max_evaluations=16, track="nearest", note=_TORCHVISION_NOTE),
           SuiteTask("mobilenetv2", "MixedPrecision-MobileNetV2-v0",
                     {"candidates": "hardware", "sensitivity_images": 64, "weight_rounding": "nearest"},
                     (0.375, 0.3), seeds=5, max_evaluations=16, track="nearest", note=_TORCHVISION_NOTE))),
)}

#: released suites -> their pinned :attr:`Suite.digest`; a released definition never changes
RELEASED: dict[str, str] = {
    "mpqbench-v1-lite": "77a873bef586d13a",
    "mpqbench-v1": "b77a1e4205ea4e9e",
}


def get_suite(name: str) -> Suite:
    """A suite by name; a released suite whose definition was edited is refused."""
    if name not in SUITES:
        raise ConfigError(f"unknown suite {name!r}; choose one of {sorted(SUITES)}")
    suite = SUITES[name]
    pinned = RELEASED.get(name)
    if pinned is not None and pinned != suite.digest:
        raise MpqGymError(f"suite {name} was edited after its release (digest {suite.digest}, released {pinned}); "
                          "restore it and give the changed suite a new name")
    return suite
