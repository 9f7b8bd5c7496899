"""Per-episode records of a training run: episodes.csv, best_config.json, TensorBoard scalars, progress."""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from tqdm.auto import tqdm

from mpq_gym.tracking import MlflowTracker

EPISODE_COLUMNS = ("episode", "wall_s", "reward", "quality", "exact", "normalized_score", "within_budget",
                   "budget_ratio", "budget_used", "bops_ratio", "size_bits_ratio", "best_quality", "best_normalized", "choices")
#: the per-episode scalars that go to TensorBoard / MLflow (as ``episode/<name>``)
LOGGED = ("reward", "quality", "normalized_score", "budget_used", "best_quality", "best_normalized")


def read_episodes(csv_path: Path) -> list[dict[str, Any]]:
    """The rows of an ``episodes.csv`` (empty when there is none), with ``episode`` as int, ``quality`` and
    ``normalized_score`` as floats and ``within_budget`` as bool; the other columns as written."""
    if not csv_path.exists():
        return []
    with csv_path.open(newline="") as f:
        return [dict(r, quality=float(r["quality"]), within_budget=r["within_budget"] == "True",
                     episode=int(r["episode"]), normalized_score=float(r["normalized_score"]))
                for r in csv.DictReader(f)]


class EpisodeLog:
    """Appends one row per finished episode and keeps the best configuration within budget.

    ``wall_s`` is training time since the run started (a resumed run continues from its last kept row).
    On resume (``episodes_done`` > 0) rows past ``episodes_done`` (written after the last checkpoint)
    are dropped and the best is recomputed from the rows kept, so a resumed run equals an
    uninterrupted one.
    """

    def __init__(self, run_dir: Path, total_episodes: int | None, steps_per_episode: int, logger: Logger | None = None,
                 episodes_done: int = 0, progress: bool = True, tracker: MlflowTracker | None = None,
                 seconds: float | None = None) -> None:
        self.run_dir, self.total, self.steps = Path(run_dir), total_episodes, steps_per_episode
        #: training wall-clock allowance (``--minutes``); the run ends at whichever of the two comes first
        self.seconds = seconds
        self.logger, self.tracker = logger, tracker
        self.csv_path = self.run_dir / "episodes.csv"
        self.best_path = self.run_dir / "best_config.json"
        self.episodes = episodes_done
        self.best: dict[str, Any] | None = None
        kept = read_episodes(self.csv_path)[:episodes_done]
        self._rewrite(kept)
        for row in kept:
            self._consider(row, None)
        self._clock_start = time.perf_counter() - (float(kept[-1]["wall_s"]) if kept else 0.0)
        self.bar = tqdm(total=total_episodes, initial=episodes_done, desc="episodes", disable=not progress,
                        unit="ep")

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        with self.csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=EPISODE_COLUMNS)
            writer.writeheader()
            writer.writerows({k: r.get(k, "") for k in EPISODE_COLUMNS} for r in rows)

    def _consider(self, row: dict[str, Any], info: dict | None) -> None:
        if row["within_budget"] and (self.best is None or row["quality"] > self.best["quality"]):
            self.best = {"episode": row["episode"], "quality": row["quality"],
                         "normalized_score": row["normalized_score"],
                         "choices": [int(c) for c in str(row["choices"]).split()]}
            if info is not None:
                self.best.update(config=info["config"], costs=info["costs"], exact=info["exact"])
                tmp = self.best_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.best, indent=2))
                tmp.replace(self.best_path)

    @property
    def wall_s(self) -> float:
        """Training time so far (continued across resumes)."""
        return time.perf_counter() - self._clock_start

    @property
    def finished(self) -> bool:
        """Whether the run has its episodes, or has used its wall-clock allowance."""
        return ((self.total is not None and self.episodes >= self.total)
                or (self.seconds is not None and self.wall_s >= self.seconds))

    def record(self, reward: float, info: dict) -> bool:
        """Record one finished episode; returns whether training should go on. Episodes a learner finishes
        after the run's end (the rest of a batch) are not recorded."""
        if self.finished:
            return False
        self.episodes += 1
        costs = info["costs"]
        row = {"episode": self.episodes, "wall_s": round(self.wall_s, 3),
               "reward": reward, "quality": float(info["quality"]), "exact": info["exact"],
               "normalized_score": float(info["normalized_score"]),
               "within_budget": bool(info["within_budget"]), "budget_ratio": info["budget_ratio"],
               "budget_used": info["budget_used"],
               "bops_ratio": costs.get("bops_ratio", math.nan), "size_bits_ratio": costs.get("size_bits_ratio", math.nan),
               "choices": " ".join(map(str, info["choices"]))}
        self._consider(row, info)
        row["best_quality"] = self.best["quality"] if self.best else math.nan
        row["best_normalized"] = self.best["normalized_score"] if self.best else math.nan
        with self.csv_path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=EPISODE_COLUMNS).writerow(row)
        if self.logger is not None:
            for key in LOGGED:
                self.logger.record(f"episode/{key}", row[key])
            self.logger.dump(step=self.episodes * self.steps)
        if self.tracker is not None:
            self.tracker.log_metrics({f"episode/{k}": row[k] for k in LOGGED}, step=self.episodes)
        self.bar.update(1)
        self.bar.set_postfix(best=f"{row['best_quality']:.2f}", norm=f"{row['best_normalized']:.3f}",
                             last=f"{row['quality']:.2f}")
        return not self.finished

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()


class EpisodeCallback(BaseCallback):
    """SB3 adapter of :class:`EpisodeLog`, with a checkpoint every ``checkpoint_every`` episodes."""

    def __init__(self, log: EpisodeLog, checkpoint: Any = None, checkpoint_every: int = 0) -> None:
        super().__init__()
        self.log, self.checkpoint, self.checkpoint_every = log, checkpoint, checkpoint_every

    def _on_step(self) -> bool:
        go_on = True
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if self.log.finished:  # copies finishing together past the run's end are not recorded
                return False
            if done and "config" in info:
                go_on = self.log.record(float(info.get("episode", {}).get("r", 0.0)), info) and go_on
                if self.checkpoint is not None and self.checkpoint_every and (
                        self.log.episodes % self.checkpoint_every == 0 or self.log.finished):
                    self.checkpoint(self.log.episodes)
        return go_on
