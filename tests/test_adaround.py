"""AdaRound: the row formulation matches the layers, learned rounding beats nearest, and it is cached
per (layer, bits) and reused by the evaluator, sensitivity and the env."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mpq_gym.config import Candidate, uniform_config
from mpq_gym.evaluate.exact import ExactEvaluator, build_quantized_model
from mpq_gym.quant.adaround import adaround, layer_rows, rows_output
from mpq_gym.quant.quantizers import QuantSettings, weight_scales

ADAROUND = QuantSettings(weight_rounding="adaround", adaround_iterations=300, adaround_rows=1024)


@pytest.mark.parametrize("groups", [1, 4])
def test_rows_reproduce_the_conv_output(groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 8, 9, 9)
    expected = conv(x).permute(0, 2, 3, 1).reshape(-1, 8)
    assert torch.allclose(rows_output(layer_rows(conv, x), conv.weight, groups), expected, atol=1e-5)
    linear = nn.Linear(8, 5, bias=False)
    tokens = torch.randn(2, 7, 8)
    assert torch.allclose(rows_output(layer_rows(linear, tokens), linear.weight, 1), F.linear(tokens, linear.weight)
                          .reshape(-1, 5), atol=1e-5)


def test_learned_rounding_beats_nearest_and_stays_on_the_grid():
    torch.manual_seed(0)
    weight = torch.randn(16, 32)
    rows = torch.randn(2048, 32) @ torch.randn(32, 32)  # correlated inputs: where AdaRound helps
    scale = weight_scales(weight, 3)
    result = adaround(weight, scale, 3, rows, iterations=500)
    assert result.error < 0.9 * result.nearest_error
    units = result.weight / scale[:, None]
    assert torch.allclose(units, units.round(), atol=1e-4) and units.min() >= -4 and units.max() <= 3
    assert ((units.round() - torch.floor(weight / scale[:, None])).abs() <= 1).all()  # floor or ceil only


def test_adaround_model_is_better_and_cached(digits, monkeypatch):
    nearest = ExactEvaluator(digits, build_quantized_model(digits), progress=False)
    learned = ExactEvaluator(digits, build_quantized_model(digits, ADAROUND), progress=False)
    w3 = uniform_config(nearest.qmodel.layer_names, Candidate(3, 32))
    # 300 iterations: 21.3 vs 20.2 dB with quantizer v2 (output-aware ranges + bias correction leave less
    # to learn; 1000 iterations: 22.5), where v1's nearest rounding was 14.0 dB
    assert learned.evaluate(w3, "test")["sqnr_db"] > nearest.evaluate(w3, "test")["sqnr_db"] + 0.5
    monkeypatch.setattr("mpq_gym.quant.model.adaround", lambda *a, **k: pytest.fail("should come from the cache"))
    again = build_quantized_model(digits, ADAROUND)
    again.set_config(w3)
    name = again.layer_names[1]
    assert torch.equal(again.quantized_weight(name, 3), learned.qmodel.quantized_weight(name, 3))


def test_env_and_sensitivity_use_adaround(digits, monkeypatch):
    import mpq_gym.quant.model as qmodel_module
    from mpq_gym.envs import MixedPrecisionEnv
    from mpq_gym.problem import ProblemSpec
    from mpq_gym.problem import Problem
    assert ProblemSpec(weight_rounding="adaround").build().evaluator.qmodel.settings.weight_rounding == "adaround"
    candidates = "W2A8,W3A8,W8A8"
    learned = Problem(digits, candidates, settings=ADAROUND, sensitivity_images=64, progress=False)
    passes = []
    real_collect = qmodel_module.collect_rows
    monkeypatch.setattr(qmodel_module, "collect_rows", lambda *a, **k: passes.append(1) or real_collect(*a, **k))
    learned.sensitivity
    assert len(passes) == 1  # every (layer, bits) learned from one pass over the calibration data
    rounded = Problem(digits, candidates, sensitivity_images=64, progress=False)
    # 2-bit weights: learned rounding makes every layer less sensitive
    assert learned.sensitivity.sqnr_db[:, 0].mean() > rounded.sensitivity.sqnr_db[:, 0].mean()
    env = MixedPrecisionEnv(problem=learned, budget=0.5)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_adaround_on_an_explicit_cpu_device_equals_the_default():
    """Every tensor AdaRound makes goes through ``.to(device)``: on the CPU that changes nothing, bit for bit."""
    torch.manual_seed(0)
    weight = torch.randn(8, 16)
    rows = torch.randn(512, 16) @ torch.randn(16, 16)
    scale = weight_scales(weight, 3)
    default = adaround(weight, scale, 3, rows, iterations=100)
    cpu = adaround(weight, scale, 3, rows, iterations=100, device="cpu")
    assert torch.equal(default.weight, cpu.weight) and cpu.weight.device.type == "cpu"
    assert (default.error, default.nearest_error) == (cpu.error, cpu.nearest_error)


def test_a_models_adaround_runs_on_its_device_and_cpu_keys_are_unchanged(digits, monkeypatch):
    import mpq_gym.quant.model as qmodel_module
    from mpq_gym.cache import content_hash
    from mpq_gym.quant.adaround import ADAROUND_FORMAT
    from mpq_gym.quant.model import ADAROUND_CACHE_FORMAT, QuantizedModel
    settings = QuantSettings(weight_rounding="adaround", adaround_iterations=50, adaround_rows=256)
    devices = []
    real = qmodel_module.adaround
    monkeypatch.setattr(qmodel_module, "adaround", lambda *a, **k: devices.append(k["device"]) or real(*a, **k))
    models = [QuantizedModel(digits.model, digits.example_input(), digits.calibration_batches, settings,
                             progress=False, **kw) for kw in ({}, {"device": "cpu"})]  # no cache_key: no disk cache
    name = models[0].layer_names[1]
    default, cpu = (m.quantized_weight(name, 3) for m in models)
    assert torch.equal(default, cpu) and devices == [torch.device("cpu")] * 2
    keyed = QuantizedModel(digits.model, digits.example_input(), None, settings, cache_key="k", progress=False,
                           device="cpu")
    expected = content_hash("k", settings, ADAROUND_FORMAT, ADAROUND_CACHE_FORMAT, name, 3)
    assert keyed._adaround_path(name, 3).name == f"{expected}.pt"  # the key of CPU results before devices
