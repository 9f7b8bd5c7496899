"""Gymnasium ids: ``MixedPrecision-<Model>-v0`` and ``MixedPrecisionContinuous-<Model>-v0``."""
from __future__ import annotations

from typing import Any

import gymnasium as gym

from mpq_gym.errors import ConfigError

ENTRY_POINT = "mpq_gym.envs.env:MixedPrecisionEnv"
#: ``gym.make_vec(ID, num_envs=N)``: N copies stepped as numpy batches (surrogate reward)
VECTOR_ENTRY_POINT = "mpq_gym.envs.vector:MixedPrecisionVectorEnv"
#: id model name -> (workload, extra default kwargs). Episodes have one step per quantizer group (50 for
#: EfficientNet-Lite0, 54 for ResNet50, 4 for DigitsCNN ...) and the env ends them itself, with
#: ``terminated=True``: the ids register no ``TimeLimit`` (``max_episode_steps=None``), so the natural last
#: step is never also reported as a truncation.
MODELS: dict[str, tuple[str, dict]] = {
    "ResNet18": ("resnet18", {}),
    "ResNet50": ("resnet50", {}),
    "MobileNetV2": ("mobilenet_v2", {}),
    "EfficientNetLite0": ("efficientnet_lite0", {}),
    "DigitsCNN": ("digits_cnn", {}),
    # Spearman lives in [-1, 1]: reward 10 x Δ makes 0.01 of Spearman weigh what 1 top-1 point does (0.1)
    "MiniLM": ("minilm", {"reward_scale": 10.0, "sensitivity_images": 32}),
    # any Hugging Face checkpoint: gym.make("MixedPrecision-HF-v0", workload="hf:<id or dir>",
    #                                       workload_kwargs={"dataset": "data.csv"})
    "HF": ("hf:", {}),
}


def env_ids() -> list[str]:
    """Every id this package registers."""
    return [f"{prefix}-{model}-v0" for model in MODELS for prefix in ("MixedPrecision", "MixedPrecisionContinuous")]


def register_envs() -> None:
    """Register all ids (idempotent)."""
    for model, (workload, extra) in MODELS.items():
        for prefix, continuous in (("MixedPrecision", False), ("MixedPrecisionContinuous", True)):
            env_id = f"{prefix}-{model}-v0"
            if env_id not in gym.registry:
                gym.register(id=env_id, entry_point=ENTRY_POINT, max_episode_steps=None,
                             vector_entry_point=VECTOR_ENTRY_POINT,
                             kwargs={"workload": workload, "continuous": continuous, **extra})


def require_env_id(env_id: str) -> None:
    """Raise :class:`ConfigError` listing the registered ids unless ``env_id`` (optionally ``module:id``) is one."""
    if env_id.rpartition(":")[2] not in gym.registry:
        registered = sorted(i for i in gym.registry if i.startswith("MixedPrecision"))
        raise ConfigError(f"unknown env id {env_id!r}; registered ids: {registered}")



def registered_kwargs(env_id: str) -> dict[str, Any]:
    """The kwargs an id registers (``module:id`` accepted)."""
    require_env_id(env_id)
    return dict(gym.spec(env_id.rpartition(":")[2]).kwargs)
