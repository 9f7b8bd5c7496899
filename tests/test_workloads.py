import json
import os
import subprocess
import sys

import pytest
import torch

from mpq_gym.errors import MissingDataError, MissingWeightsError, UnknownWorkloadError
from mpq_gym.evaluate.exact import ExactEvaluator
from mpq_gym.workloads import custom_workload, get_workload
from mpq_gym.workloads.imagenet import find_imagenet_dir
from mpq_gym.workloads.imagenet_models import map_positional_state_dict


def test_unknown_workload_suggests_a_name():
    with pytest.raises(UnknownWorkloadError, match="Did you mean 'resnet50'"):
        get_workload("resnet5O")


def test_missing_data_dir_names_the_fix(tmp_path):
    with pytest.raises(MissingDataError, match="MPQ_GYM_DATA"):
        find_imagenet_dir(tmp_path / "nowhere")


def test_data_dir_with_wrong_class_count_is_refused(tmp_path):
    for wnid in ("n01", "n02"):
        (tmp_path / "val" / wnid).mkdir(parents=True)
    with pytest.raises(MissingDataError, match="1000 class folders"):
        find_imagenet_dir(tmp_path)


def test_shared_data_is_found():
    assert find_imagenet_dir().name == "val"


def test_missing_torchvision_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("MPQ_GYM_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="random_weights=True"):
        get_workload("resnet18")


def test_weights_from_a_user_path(tmp_path):
    random = get_workload("resnet18", random_weights=True)
    path = tmp_path / "r18.pth"
    torch.save(random.model.state_dict(), path)
    loaded = get_workload("resnet18", weights=str(path))
    assert not loaded.random_weights and loaded.weights == str(path)
    with pytest.raises(MissingWeightsError, match="does not exist"):
        get_workload("resnet18", weights=str(tmp_path / "missing.pth"))


def test_efficientnet_weights_are_the_packaged_ones():
    workload = get_workload("efficientnet_lite0")
    assert "efficientnet-lite0" in workload.weights and not workload.random_weights
    stem = workload.model.conv_stem.weight
    assert stem.shape == (32, 3, 3, 3) and stem.std() > 0.05  # trained, not an init


def test_positional_mapping_checks_shapes():
    target = torch.nn.Sequential(torch.nn.Linear(3, 4))
    with pytest.raises(MissingWeightsError, match="shape"):
        map_positional_state_dict({"w": torch.zeros(4, 2), "b": torch.zeros(4)}, target)


def test_custom_workload_end_to_end():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x = torch.randn(96, 6)
    y = model(x).argmax(1).detach()
    loaders = {s: [(x[i:i + 32], y[i:i + 32]) for i in range(0, 96, 32)] for s in ("calibration", "search", "test")}
    workload = custom_workload(model, loaders, name="toy")
    evaluator = ExactEvaluator(workload, progress=False)
    assert [layer.kind for layer in evaluator.qmodel.layers] == ["Linear", "Linear"]
    from mpq_gym.config import parse_config
    assert evaluator.evaluate(parse_config("fp32", evaluator.qmodel.layer_names), "test")["top1"] == 100.0
    assert evaluator.evaluate(parse_config("uniform:W8A8", evaluator.qmodel.layer_names), "test")["agreement"] > 90


def test_custom_workload_needs_all_splits():
    with pytest.raises(ValueError, match="missing"):
        custom_workload(torch.nn.Linear(2, 2), {"test": [(torch.zeros(1, 2), torch.zeros(1))]})


def test_random_weights_are_deterministic():
    one, two = (get_workload("resnet18", random_weights=True) for _ in range(2))
    assert one.model_fingerprint() == two.model_fingerprint()


WITHOUT_TORCHVISION = """
import json, sys
sys.modules["torchvision"] = None  # as on an install with no torchvision, or one that does not load beside torch
from mpq_gym.cli.common import get_workload
from mpq_gym.errors import ConfigError
digits = get_workload("digits_cnn", random_weights=True)
errors = {}
for name in ("resnet18", "efficientnet_lite0"):
    try:
        get_workload(name, random_weights=True)
    except ConfigError as exc:
        errors[name] = str(exc)
print(json.dumps({"digits_layers": len(digits.model.features), "errors": errors,
                  "loaded": [m for m in ("torchvision", "timm") if sys.modules.get(m) is not None]}))
"""


def test_workloads_and_the_cli_import_without_torchvision(tmp_path):
    """torchvision (and timm, which imports it) load only for the ImageNet workloads: the CLI and DigitsCNN run
    where torchvision is absent or was built for another torch; the ImageNet workloads then say it is missing."""
    env = {**os.environ, "MPQ_GYM_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TORCHVISION], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["digits_layers"] == 9 and out["loaded"] == []
    assert set(out["errors"]) == {"resnet18", "efficientnet_lite0"}
    assert all("needs torchvision" in message and torch.__version__ in message for message in out["errors"].values())
