"""DigitsCNN: a small CNN trained deterministically on scikit-learn's 8x8 digits on first use, then cached.

The fast real workload: real weights, real held-out accuracy, seconds on a CPU.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from mpq_gym.cache import cache_dir, content_hash, load_cached, matches_state_dict, save_atomic
from mpq_gym.metrics import classification_metrics
from mpq_gym.workloads.base import RANDOM_WEIGHTS, Split, Workload, seeded_init
from mpq_gym.workloads.weights import apply_state_dict, load_state_dict_file

TRAIN_RECIPE = {"epochs": 40, "lr": 3e-3, "batch": 64, "seed": 0, "test": 400, "search": 300, "calibration": 256,
                "arch": "digits_cnn_v1"}
#: Bump when the trained-weights cache layout changes.
WEIGHTS_CACHE_FORMAT = 2


class DigitsCNN(nn.Module):
    """Three conv-BN-ReLU blocks and a linear classifier for 1x8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.features = nn.Sequential(*block(1, 16, 1), *block(16, 32, 2), *block(32, 64, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _digits_data(recipe: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.from_numpy(np.random.default_rng(recipe["seed"]).permutation(len(y)))
    n_test, n_search = recipe["test"], recipe["search"]
    test, search, train = order[:n_test], order[n_test:n_test + n_search], order[n_test + n_search:]
    return {"train": (x[train], y[train]), "calibration": (x[train[:recipe["calibration"]]], y[train[:recipe["calibration"]]]),
            "search": (x[search], y[search]), "test": (x[test], y[test])}


def train_digits_cnn(recipe: dict = TRAIN_RECIPE) -> DigitsCNN:
    """Train from a fixed seed, single-threaded so the result does not depend on the core count."""
    data = _digits_data(recipe)
    x, y = data["train"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(recipe["seed"])
        torch.manual_seed(recipe["seed"])
        model = DigitsCNN()
        opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe["epochs"])
        model.train()
        for _ in range(recipe["epochs"]):
            perm = torch.randperm(len(y), generator=gen)
            for i in range(0, len(y), recipe["batch"]):
                idx = perm[i:i + recipe["batch"]]
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
            sched.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def digits_workload(random_weights: bool = False, weights: str | None = None, batch_size: int = 256,
                    data_dir: str | None = None) -> Workload:
    """The DigitsCNN workload; trained weights are cached under the recipe's hash.

    ``data_dir`` is accepted for a uniform interface and unused: the digits ship with scikit-learn."""
    with seeded_init():
        model = DigitsCNN()
    if random_weights:
        source = RANDOM_WEIGHTS
    elif weights:  # the user's file: never unpickled, checked against the architecture
        apply_state_dict(model, load_state_dict_file(weights, "digits_cnn"), weights, "digits_cnn")
        source = str(weights)
    else:
        path = cache_dir() / "digits" / f"digits_cnn-{content_hash(TRAIN_RECIPE, WEIGHTS_CACHE_FORMAT)}.pt"
        reference = model.state_dict()
        state = load_cached(path, lambda s: matches_state_dict(s, reference)
                            and all(bool(torch.isfinite(t).all()) for t in s.values() if t.is_floating_point()))
        if state is None:  # absent or damaged: train again (deterministic)
            state = train_digits_cnn().state_dict()
            save_atomic(state, path)
        model.load_state_dict(state)
        source = str(path)
    data = _digits_data(TRAIN_RECIPE)
    return Workload(name="digits_cnn", model=model.eval(), input_shape=(1, 8, 8), metric=classification_metrics,
                    primary_metric="top1", weights=source, batch_size=batch_size,
                    load_splits=lambda: {k: Split(*v) for k, v in data.items() if k != "train"})
