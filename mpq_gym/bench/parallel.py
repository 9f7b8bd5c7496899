"""Parallel exact evaluation on Ray (``--ray [ADDRESS]``): a local Ray instance or an existing cluster.

Each worker (one CPU, one torch thread) builds its own copy of the problem from a picklable factory;
the disk cache (quantized weights, calibration ranges, phase-1 tables) and the SQLite result store are
shared, so workers start warm and never evaluate a configuration another process already stored.
Evaluations are deterministic, so parallel results equal serial ones.
"""
from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Iterable, Iterator, Sequence

from mpq_gym.bench.cells import run_cell
from mpq_gym.cache import CACHE_ENV
from mpq_gym.errors import ConfigError
from mpq_gym.problem import Problem

ProblemFactory = Callable[[], Problem]  # e.g. functools.partial(problem_from_env, env_id, env_kwargs)
#: environment variables a worker must share with the driver (cache, data, offline switches)
SHARED_ENV = (CACHE_ENV, "MPQ_GYM_DATA", "MPQ_GYM_OFFLINE", "HF_HUB_OFFLINE", "TORCH_HOME", "HF_HOME")


class _Worker:
    """A Ray actor holding one problem."""

    def __init__(self, factory: ProblemFactory, plugins: Sequence[str] = ()) -> None:
        import torch
        torch.set_num_threads(1)
        for module in plugins:
            importlib.import_module(module)
        self.problem = factory()

    def quality(self, choices: Sequence[int], split: str) -> float:
        return self.problem.quality(self.problem.config(choices), split)

    def sensitivity_rows(self, which: Sequence[int]) -> dict[int, Any]:
        return self.problem.sensitivity_rows(which)

    def run_cell(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return run_cell(self.problem, **kwargs)


class RayPool:
    """``workers`` Ray actors evaluating configurations (or whole benchmark cells) of one problem."""

    def __init__(self, factory: ProblemFactory, workers: int = 2, address: str | None = None,
                 plugins: Sequence[str] = ()) -> None:
        try:
            import ray
            from ray.util import ActorPool
        except ImportError as exc:
            raise ConfigError("--ray needs Ray: pip install 'mpq-gym[ray]'") from exc
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            ray.init(address=address or None, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        env_vars = {k: os.environ[k] for k in SHARED_ENV if k in os.environ}
        actor = ray.remote(num_cpus=1)(_Worker).options(runtime_env={"env_vars": env_vars})
        self.workers = workers
        self.actors = [actor.remote(factory, tuple(plugins)) for _ in range(workers)]
        self.pool = ActorPool(self.actors)

    def qualities(self, choices: Iterable[Sequence[int]], split: str) -> list[float]:
        """Exact quality of each configuration, in input order."""
        return list(self.pool.map(lambda a, c: a.quality.remote(list(map(int, c)), split), list(choices)))

    def sensitivity_rows(self, chunks: Iterable[Sequence[int]]) -> Iterator[tuple[int, Any]]:
        """(group, phase-1 row) for every group of every chunk, one chunk per worker, as chunks finish."""
        for rows in self.pool.map_unordered(lambda a, chunk: a.sensitivity_rows.remote(list(chunk)),
                                            [c for c in chunks if len(c)]):
            yield from rows.items()

    def run_cells(self, cells: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Benchmark rows of ``run_cell(problem, **cell)``, as they finish."""
        return self.pool.map_unordered(lambda a, cell: a.run_cell.remote(cell), list(cells))

    def close(self) -> None:
        """Stop the workers (and the local Ray instance this pool started)."""
        for actor in self.actors:
            self.ray.kill(actor)
        if self._started:
            self.ray.shutdown()

    def __enter__(self) -> "RayPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
