"""Worker processes for one problem on this machine: ``gym.make(ID, workers=N)`` with no set-up.

Phase-1 rows and the surrogate's calibration points are the slow part of a cold start (minutes on a large
network) and are independent of each other, so ``N`` processes compute them side by side. Written on the
standard library's :class:`concurrent.futures.ProcessPoolExecutor` rather than Ray (``--ray`` in the bench,
:mod:`mpq_gym.bench.parallel`, for clusters): a local pool needs no extra dependency and starts in the time
it takes to import torch. Processes use the *spawn* start method (a forked child would inherit torch's thread
pools), so a script that starts one must guard its entry point with ``if __name__ == "__main__":``, as with
a torch ``DataLoader``'s workers.

Each worker builds its own copy of the problem from a picklable factory and uses one torch thread; the disk
cache (quantizer ranges, quantized weights, FP32 outputs, the result store) is shared, so workers start warm
on what the driver computed. Results are deterministic, so they equal a serial run's.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from itertools import repeat
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from mpq_gym.errors import ConfigError

if TYPE_CHECKING:
    from mpq_gym.problem import Problem

ProblemFactory = Callable[[], "Problem"]

_problem: "Problem | None" = None  # the worker process's problem (set by _start)


def _start(factory: ProblemFactory) -> None:
    """Worker initializer: one torch thread, then the problem."""
    import torch
    torch.set_num_threads(1)
    global _problem
    _problem = factory()


def _worker_problem() -> "Problem":
    assert _problem is not None, "called outside a worker process"
    return _problem


def _quality(choices: Sequence[int], split: str) -> float:
    problem = _worker_problem()
    return problem.quality(problem.config(choices), split)


def _sensitivity_rows(which: Sequence[int]) -> dict[int, Any]:
    return _worker_problem().sensitivity_rows(which)


class ProcessPool:
    """``workers`` local processes, each holding a copy of one problem (started on first use)."""

    def __init__(self, factory: ProblemFactory, workers: int) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a whole number >= 1, got {workers!r}")
        self.workers = workers
        self._executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start, initargs=(factory,))

    def qualities(self, choices: Iterable[Sequence[int]], split: str) -> list[float]:
        """Exact quality of each configuration, in input order."""
        return list(self._executor.map(_quality, [[int(c) for c in cs] for cs in choices], repeat(split)))

    def sensitivity_rows(self, chunks: Iterable[Sequence[int]]) -> Iterator[tuple[int, Any]]:
        """(group, phase-1 row) for every group of every chunk, one chunk per task, as chunks finish."""
        futures = [self._executor.submit(_sensitivity_rows, [int(g) for g in chunk]) for chunk in chunks if len(chunk)]
        for future in as_completed(futures):
            yield from future.result().items()

    def close(self) -> None:
        """Stop the workers (pending work is cancelled)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "ProcessPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
