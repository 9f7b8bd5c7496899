"""Worker processes for one problem on this machine: ``gym.make(ID, workers=N)`` with no set-up.

Phase-1 rows and the surrogate's calibration points are the slow part of a cold start (minutes on a large
network) and are independent of each other, so ``N`` processes compute them side by side. Written on the
standard library's :class:`concurrent.futures.ProcessPoolExecutor` rather than Ray (``--ray`` in the bench,
:mod:`mpq_gym.bench.parallel`, for clusters): a local pool needs no extra dependency and starts in the time
it takes to import torch. Processes use the *spawn* start method (a forked child would inherit torch's thread
pools), so a script that starts one must guard its entry point with ``if __name__ == "__main__":``, as with
a torch ``DataLoader``'s workers.

Each worker builds its own copy of the problem from a picklable factory and gets an equal share of the cores
as torch threads. The driver fits the quantizers once (a pass of the calibration data through the network)
and saves them before handing out work; the disk cache (quantizers, FP32 outputs, the result store) is shared,
so workers start warm on what the driver computed. Results equal a serial run's up to the order of float
sums (torch's thread count changes it).

On the project's 2-core machine, two workers do *not* beat one process using both cores through torch's own
threads (docs/benchmarks.md, "Workers"); they pay off where the cores outnumber what one forward pass keeps
busy.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from itertools import repeat
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import torch

from mpq_gym.errors import ConfigError

if TYPE_CHECKING:
    from mpq_gym.problem import Problem

ProblemFactory = Callable[[], "Problem"]

_problem: "Problem | None" = None  # the worker process's problem (set by _start)


def _start(factory: ProblemFactory, threads: int) -> None:
    """Worker initializer: its share of the cores as torch threads, then the problem."""
    torch.set_num_threads(threads)
    global _problem
    _problem = factory()


def worker_threads(workers: int) -> int:
    """Torch threads per worker: the machine's cores shared out (at least one)."""
    return max(1, (os.cpu_count() or 1) // workers)


def _worker_problem() -> "Problem":
    assert _problem is not None, "called outside a worker process"
    return _problem


def _quality(choices: Sequence[int], split: str) -> float:
    problem = _worker_problem()
    return problem.quality(problem.config(choices), split)


def _sensitivity_rows(which: Sequence[int]) -> dict[int, Any]:
    return _worker_problem().sensitivity_rows(which)


def _broken(workers: int) -> ConfigError:
    return ConfigError(f"a worker process (workers={workers}) stopped before its work was done: a script that starts "
                       "workers must guard its entry point with `if __name__ == \"__main__\":` (the spawn start method "
                       "re-imports it in every worker), and each worker needs the memory of its own copy of the "
                       "network; or pass workers=1")


class ProcessPool:
    """``workers`` local processes, each holding a copy of one problem (started on first use)."""

    def __init__(self, factory: ProblemFactory, workers: int) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a whole number >= 1, got {workers!r}")
        self.workers = workers
        self._executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start, initargs=(factory, worker_threads(workers)))

    def qualities(self, choices: Iterable[Sequence[int]], split: str) -> list[float]:
        """Exact quality of each configuration, in input order."""
        try:
            return list(self._executor.map(_quality, [[int(c) for c in cs] for cs in choices], repeat(split)))
        except BrokenProcessPool as exc:
            raise _broken(self.workers) from exc

    def sensitivity_rows(self, chunks: Iterable[Sequence[int]]) -> Iterator[tuple[int, Any]]:
        """(group, phase-1 row) for every group of every chunk, one chunk per task, as chunks finish."""
        try:
            futures = [self._executor.submit(_sensitivity_rows, [int(g) for g in chunk]) for chunk in chunks if len(chunk)]
            for future in as_completed(futures):
                yield from future.result().items()
        except BrokenProcessPool as exc:
            raise _broken(self.workers) from exc

    def close(self) -> None:
        """Stop the workers (pending work is cancelled)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "ProcessPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
