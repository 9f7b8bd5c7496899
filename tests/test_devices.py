"""The ``device`` option on CPU-only machines: resolution, clear errors, and CPU results unchanged."""
import pytest
import torch

from mpq_gym.config import Candidate, uniform_config
from mpq_gym.devices import batch_size_for, resolve_device
from mpq_gym.errors import ConfigError
from mpq_gym.evaluate.exact import ExactEvaluator, build_quantized_model
from mpq_gym.evaluate.store import ResultStore


def test_resolution_and_clear_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="not a device; choose one of auto, cpu"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU: use device='cpu'"):
            resolve_device("cuda:0")
    assert batch_size_for(torch.device("cpu"), 64) == 64
    assert batch_size_for(torch.device("cuda"), 64) > 64


def test_an_explicit_cpu_device_changes_nothing(digits):
    """device='cpu' (and 'auto' on a machine without a GPU) gives the same tensors as the default."""
    names = None
    outputs = []
    for device in ("cpu", "auto") if not torch.cuda.is_available() else ("cpu",):
        evaluator = ExactEvaluator(digits, build_quantized_model(digits, progress=False, device=device),
                                   store=ResultStore(None), progress=False)
        names = names or evaluator.qmodel.layer_names
        config = {**uniform_config(names, Candidate(4, 8)), names[0]: Candidate(2, 4, "olive")}
        outputs.append(evaluator.outputs(config, "search"))
    default = ExactEvaluator(digits, store=ResultStore(None), progress=False)
    reference = default.outputs({**uniform_config(names, Candidate(4, 8)), names[0]: Candidate(2, 4, "olive")}, "search")
    assert all(torch.equal(o, reference) for o in outputs)
