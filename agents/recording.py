"""Per-episode records of a training run: episodes.csv, best_config.json, TensorBoard scalars, progress."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from tqdm.auto import tqdm

from mpq_gym.tracking import MlflowTracker

EPISODE_COLUMNS = ("episode", "reward", "quality", "exact", "within_budget", "budget_used", "bops_ratio",
                   "size_bits_ratio", "best_quality", "choices")


class EpisodeLog:
    """Appends one row per finished episode and keeps the best configuration within budget.

    On resume (``episodes_done`` > 0) rows past ``episodes_done`` (written after the last checkpoint)
    are dropped and the best is recomputed from the rows kept, so a resumed run equals an
    uninterrupted one.
    """

    def __init__(self, run_dir: Path, total_episodes: int, steps_per_episode: int, logger: Logger | None = None,
                 episodes_done: int = 0, progress: bool = True, tracker: MlflowTracker | None = None) -> None:
        self.run_dir, self.total, self.steps = Path(run_dir), total_episodes, steps_per_episode
        self.logger, self.tracker = logger, tracker
        self.csv_path = self.run_dir / "episodes.csv"
        self.best_path = self.run_dir / "best_config.json"
        self.episodes = episodes_done
        self.best: dict[str, Any] | None = None
        kept = self._rows()[:episodes_done]
        self._rewrite(kept)
        for row in kept:
            self._consider(row, None)
        self.bar = tqdm(total=total_episodes, initial=episodes_done, desc="episodes", disable=not progress,
                        unit="ep")

    def _rows(self) -> list[dict[str, Any]]:
        if not self.csv_path.exists():
            return []
        with self.csv_path.open(newline="") as f:
            return [dict(r, quality=float(r["quality"]), within_budget=r["within_budget"] == "True",
                         episode=int(r["episode"])) for r in csv.DictReader(f)]

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        with self.csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=EPISODE_COLUMNS)
            writer.writeheader()
            writer.writerows({k: r[k] for k in EPISODE_COLUMNS} for r in rows)

    def _consider(self, row: dict[str, Any], info: dict | None) -> None:
        if row["within_budget"] and (self.best is None or row["quality"] > self.best["quality"]):
            self.best = {"episode": row["episode"], "quality": row["quality"],
                         "choices": [int(c) for c in str(row["choices"]).split()]}
            if info is not None:
                self.best.update(config=info["config"], costs=info["costs"], exact=info["exact"])
                tmp = self.best_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.best, indent=2))
                tmp.replace(self.best_path)

    @property
    def finished(self) -> bool:
        """Whether the run has its episodes."""
        return self.episodes >= self.total

    def record(self, reward: float, info: dict) -> bool:
        """Record one finished episode; returns whether training should go on."""
        self.episodes += 1
        costs = info["costs"]
        row = {"episode": self.episodes, "reward": reward, "quality": float(info["quality"]), "exact": info["exact"],
               "within_budget": bool(info["within_budget"]), "budget_used": info["budget_used"],
               "bops_ratio": costs.get("bops_ratio", math.nan), "size_bits_ratio": costs.get("size_bits_ratio", math.nan),
               "choices": " ".join(map(str, info["choices"]))}
        self._consider(row, info)
        row["best_quality"] = self.best["quality"] if self.best else math.nan
        with self.csv_path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=EPISODE_COLUMNS).writerow(row)
        if self.logger is not None:
            for key in ("reward", "quality", "budget_used", "best_quality"):
                self.logger.record(f"episode/{key}", row[key])
            self.logger.dump(step=self.episodes * self.steps)
        if self.tracker is not None:
            self.tracker.log_metrics({f"episode/{k}": row[k] for k in ("reward", "quality", "budget_used",
                                                                        "best_quality")}, step=self.episodes)
        self.bar.update(1)
        self.bar.set_postfix(best=f"{row['best_quality']:.2f}", last=f"{row['quality']:.2f}")
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
            if done and "config" in info:
                go_on = self.log.record(float(info.get("episode", {}).get("r", 0.0)), info) and go_on
                if self.checkpoint is not None and self.checkpoint_every and (
                        self.log.episodes % self.checkpoint_every == 0 or self.log.finished):
                    self.checkpoint(self.log.episodes)
        return go_on
