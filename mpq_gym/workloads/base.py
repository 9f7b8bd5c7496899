"""Workload: an FP32 model, its data splits and its metric, behind one small interface."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from mpq_gym.cache import content_hash

SPLITS = ("calibration", "search", "test")
ALL_SPLITS = "all"
RANDOM_WEIGHTS = "RANDOM (random_weights=True: structure and cost only, accuracy is meaningless)"

@contextlib.contextmanager
def seeded_init(seed: int = 0) -> Iterator[None]:
    """Build networks under a fixed seed (random_weights=True is the same network every time),
    leaving the global RNG as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class SplitSizes:
    """How many samples go to calibration and search; ``test`` takes the rest unless given."""

    calibration: int = 256
    search: int = 256
    test: int | None = None


def split_indices(n: int, sizes: SplitSizes, seed: int = 0, what: str = "the data") -> dict[str, np.ndarray]:
    """Disjoint calibration / search / test indices into ``n`` samples, from one seeded permutation."""
    test = sizes.test if sizes.test is not None else n - sizes.calibration - sizes.search
    if min(sizes.calibration, sizes.search, test) <= 0 or sizes.calibration + sizes.search + test > n:
        raise ValueError(f"split sizes {sizes} do not fit the {n} samples of {what}; "
                         "pass split_sizes=SplitSizes(calibration, search, test) that fit")
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum([0, sizes.calibration, sizes.search, test])
    return {name: order[lo:hi] for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:])}


#: metric(outputs, targets, fp32_outputs) -> {name: value}; outputs are the model's, concatenated.
Metric = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict[str, float]]


@dataclass
class Split:
    """One data split held as tensors; ``transform`` turns a stored batch into model input."""

    inputs: torch.Tensor
    targets: torch.Tensor
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(model input, target) batches in a fixed order."""
        for start in range(0, len(self), batch_size):
            x = self.inputs[start:start + batch_size]
            yield (self.transform(x) if self.transform else x), self.targets[start:start + batch_size]

    def fingerprint(self) -> str:
        """Content hash of the stored tensors."""
        return content_hash(self.inputs, self.targets)


@dataclass
class Workload:
    """A task to quantize: FP32 model + splits + metric.

    ``splits`` are built lazily by ``load_splits`` (structure-only work never touches data).
    ``weights`` says where the weights came from; random weights are always named as such.
    """

    name: str
    model: nn.Module
    input_shape: tuple[int, ...]
    metric: Metric
    primary_metric: str
    weights: str
    load_splits: Callable[[], Mapping[str, Split]]
    batch_size: int = 64
    #: a batch-1 model input; default: random values of ``input_shape`` (set it for token inputs)
    example: Callable[[], torch.Tensor] | None = None
    _splits: dict[str, Split] | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def random_weights(self) -> bool:
        """True when the model carries random (untrained) weights: fit for structure and cost work only."""
        return self.weights.startswith("RANDOM")

    @property
    def splits(self) -> dict[str, Split]:
        """The data splits (loaded on first access)."""
        if self._splits is None:
            self._splits = dict(self.load_splits())
        return self._splits

    def split(self, name: str) -> Split:
        """One split by name (``all`` = every split concatenated), with a clear error for a wrong name."""
        if name == ALL_SPLITS:
            parts = [self.splits[s] for s in SPLITS]
            return Split(torch.cat([p.inputs for p in parts]), torch.cat([p.targets for p in parts]),
                         parts[0].transform)
        if name not in self.splits:
            raise ValueError(f"workload {self.name!r} has no split {name!r}; "
                             f"choose one of {sorted(self.splits) + [ALL_SPLITS]}")
        return self.splits[name]

    def example_input(self) -> torch.Tensor:
        """A batch-1 input of the right shape (structure only: values are not data)."""
        if self.example is not None:
            return self.example()
        return torch.randn((1, *self.input_shape), generator=torch.Generator().manual_seed(0))

    def calibration_batches(self) -> Iterator[torch.Tensor]:
        """Model inputs of the calibration split."""
        for x, _ in self.split("calibration").batches(self.batch_size):
            yield x

    def fingerprint(self) -> str:
        """Content hash of weights and data: the root of every cache key for this workload."""
        if self._fingerprint is None:
            self._fingerprint = content_hash(
                self.name, self.model.state_dict(), {k: s.fingerprint() for k, s in sorted(self.splits.items())})
        return self._fingerprint

    def model_fingerprint(self) -> str:
        """Content hash of the weights alone."""
        return content_hash(self.name, self.model.state_dict())
