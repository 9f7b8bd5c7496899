"""ImageNet-style image data in ``ImageFolder`` layout: located, split deterministically, cached as uint8."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from mpq_gym.cache import cache_dir, content_hash, load_cached, save_atomic, tensor_like
from mpq_gym.errors import ConfigError, MissingDataError
from mpq_gym.workloads.base import SplitSizes, Split, split_indices
from mpq_gym.workloads.locate import DATA_ENV, data_sources

IMAGENET_CLASSES = 1000
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
#: Bump when the decoded-images cache layout changes.
IMAGES_CACHE_FORMAT = 2


@dataclass(frozen=True)
class ImagePreprocessing:
    """Eval transform: resize the short side, centre-crop, then normalise per channel."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def normalize(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW crop -> normalised float input (exactly what ToTensor + Normalize produce)."""
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (images_u8.float() / 255.0 - mean) / std


def _candidate_roots(root: Path) -> list[Path]:
    return [root / "imagenet-sample" / "val", root / "val", root]


def find_imagenet_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Locate an ``ImageFolder`` root with 1000 class folders: ``data_dir``, ``$MPQ_GYM_DATA``, ``../shared/data``."""
    tried: list[Path] = []
    for source in data_sources(data_dir):
        for root in _candidate_roots(source):
            tried.append(root)
            if root.is_dir() and any(p.is_dir() for p in root.iterdir()):
                n_classes = sum(1 for p in root.iterdir() if p.is_dir())
                if n_classes == IMAGENET_CLASSES:
                    return root
    raise MissingDataError(
        "ImageNet images not found (looked in: " + ", ".join(str(p) for p in dict.fromkeys(tried)) + "). "
        f"Pass data_dir=/path (CLI: --data-dir) or set {DATA_ENV} to a folder in ImageFolder layout with "
        "1000 class folders: <dir>/val/<wnid>/*.JPEG (e.g. a real ImageNet val, or the 1000-image sample "
        "in shared/data/imagenet-sample)."
    )


def list_images(root: Path) -> tuple[list[Path], list[int]]:
    """Image paths sorted by path and their class indices (position of the wnid in sorted order)."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths, labels = [], []
    for index, wnid in enumerate(classes):
        for file in sorted((root / wnid).iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(file)
                labels.append(index)
    if not paths:
        raise MissingDataError(f"no images (*.JPEG, *.jpg, *.png) under {root}; check the data folder")
    return paths, labels


def import_torchvision(what: str):
    """The ``torchvision`` module, imported on first use so that ``mpq_gym.workloads`` (and so every CLI
    command and the DigitsCNN / MiniLM workloads) imports without it; a :class:`ConfigError` naming ``what``
    needs it when it is missing (or does not load beside this torch)."""
    try:
        import torchvision
    except (ImportError, RuntimeError) as exc:  # a torchvision built for another torch can fail either way
        raise ConfigError(f"{what} needs torchvision, which does not import here ({type(exc).__name__}: {exc}); "
                          f"install the torchvision release built for torch {torch.__version__}") from exc
    return torchvision


def _decode(paths: list[Path], prep: ImagePreprocessing, desc: str) -> torch.Tensor:
    transforms = import_torchvision("decoding ImageNet-style images").transforms
    interpolation = transforms.InterpolationMode(prep.interpolation)
    tf = transforms.Compose([transforms.Resize(prep.resize, interpolation=interpolation),
                             transforms.CenterCrop(prep.crop), transforms.PILToTensor()])
    out = torch.empty((len(paths), 3, prep.crop, prep.crop), dtype=torch.uint8)
    for i, path in enumerate(tqdm(paths, desc=desc, leave=False)):
        with Image.open(path) as img:
            out[i] = tf(img.convert("RGB"))
    return out


def load_imagenet_splits(data_dir: str | os.PathLike | None, prep: ImagePreprocessing,
                         sizes: SplitSizes = SplitSizes(), seed: int = 0) -> dict[str, Split]:
    """Deterministic calibration / search / test splits, decoded once and cached on disk as uint8 crops."""
    root = find_imagenet_dir(data_dir)
    paths, labels = list_images(root)
    indices = split_indices(len(paths), sizes, seed, f"the images in {root}")
    # keyed by the files' bytes, not their sizes: a re-extracted or edited image of the same size is decoded again
    listing = [(str(p.relative_to(root)), hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()) for p in paths]
    key = content_hash(str(root), listing, prep, sizes, seed, IMAGES_CACHE_FORMAT)
    cache_file = cache_dir() / "data" / f"imagenet-{key}.pt"

    def valid(obj: object) -> bool:  # uint8 crops and int labels, one per image of each split
        return isinstance(obj, dict) and set(obj) == set(indices) and all(
            isinstance(obj[name], tuple) and len(obj[name]) == 2
            and tensor_like(obj[name][0], (len(idx), 3, prep.crop, prep.crop), torch.uint8)
            and tensor_like(obj[name][1], (len(idx),)) and not obj[name][1].is_floating_point()
            for name, idx in indices.items())

    stored = load_cached(cache_file, valid)
    if stored is None:  # absent or damaged: decode again
        stored = {}
        for name, idx in indices.items():
            stored[name] = (_decode([paths[i] for i in idx], prep, f"decoding {name} images"),
                            torch.tensor([labels[i] for i in idx]))
        save_atomic(stored, cache_file)
    return {name: Split(x, y, prep.normalize) for name, (x, y) in stored.items()}
