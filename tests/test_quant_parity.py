"""The quantizer options added for AIMET parity: tf-enhanced (clip-weighted) ranges, output-aware weight
ranges, bias correction and sequential activation calibration."""
import pytest
import torch
from torch import nn

from mpq_gym.config import Candidate
from mpq_gym.quant.model import QuantizedModel
from mpq_gym.errors import ConfigError
from mpq_gym.problem import ProblemSpec
from mpq_gym.quant.quantizers import (QUANTIZERS, ActivationObserver, QuantSettings, _output_channel_errors,
                                      fake_quant_weight, quantizer_settings, weight_scales)


def _heavy_tailed(rows=16, cols=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    w[:, 0] *= 8  # one outlier per channel
    return w


def test_tf_enhanced_weight_range_clips_less_than_mse_and_gamma_1_is_mse():
    w = _heavy_tailed()
    for bits in (3, 4):
        mse = weight_scales(w, bits, "mse")
        tfe = weight_scales(w, bits, "tf_enhanced", gamma=3.0)
        assert torch.all(tfe >= mse - 1e-7)
        assert torch.allclose(weight_scales(w, bits, "tf_enhanced", gamma=1.0), mse)


def test_output_mse_with_identity_moment_is_weight_mse():
    w = _heavy_tailed(8, 12)
    eye = torch.eye(12)[None]
    assert torch.allclose(weight_scales(w, 4, "output_mse", gamma=1.0, moment=eye), weight_scales(w, 4, "mse"))


def test_output_mse_errors_are_quadratic_forms_per_group():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 4, generator=g)  # 3 groups of 2 channels, d = 4
    a = torch.randn(3, 4, 4, generator=g)
    moment = a @ a.transpose(1, 2)
    scale = w.abs().amax(1) / 7
    err = _output_channel_errors(w, scale, -8, 7, moment)
    delta = fake_quant_weight(w, scale, 4) - w
    expected = torch.stack([delta[c] @ moment[c // 2] @ delta[c] for c in range(6)])
    assert torch.allclose(err, expected, rtol=1e-4, atol=1e-7)


def test_output_mse_needs_moments():
    with pytest.raises(ValueError):
        weight_scales(torch.randn(4, 4), 4, "output_mse")


def test_tf_enhanced_activation_range_is_wider_than_mse():
    x = torch.cat([torch.rand(100000), torch.rand(50) * 20])  # long tail
    obs = ActivationObserver()
    obs.observe(x)
    mse = obs.ranges([4], QuantSettings(act_range="mse"))[4]
    tfe = obs.ranges([4], QuantSettings(act_range="tf_enhanced", clip_gamma=3.0))[4]
    assert tfe.hi >= mse.hi and tfe.lo == mse.lo == 0.0


def _toy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(), nn.Conv2d(8, 16, 1), nn.Flatten(),
                          nn.Linear(16 * 8 * 8, 10)).eval()
    model[1].running_mean.uniform_(-1, 1)
    batches = [torch.randn(16, 3, 8, 8) + 0.5 for _ in range(2)]
    return model, batches


def _rel_error(settings, w_bits=4, a_bits=32):
    model, batches = _toy()
    q = QuantizedModel(model, batches[0][:1], calibration_batches=lambda: iter(batches), settings=settings,
                       progress=False)
    q.set_config({n: Candidate(w_bits, a_bits) for n in q.layer_names})
    with torch.no_grad():
        ref, out = model(batches[0]), q(batches[0])
    return ((out - ref) ** 2).mean().item() / (ref ** 2).mean().item(), q


def test_bias_correction_cancels_the_mean_output_shift():
    plain, _ = _rel_error(QuantSettings(weight_range="mse", bias_correction=False))
    corrected, q = _rel_error(QuantSettings(weight_range="mse", bias_correction=True))
    assert corrected < plain
    q.set_config({n: Candidate(32, 32) for n in q.layer_names})  # FP32 restores the FP32 biases
    for name in q.layer_names:
        assert torch.equal(q.model.get_submodule(name).bias, q._fp32_biases[name])


def test_output_mse_reconstructs_outputs_better_than_weight_mse():
    plain, _ = _rel_error(QuantSettings(weight_range="mse", bias_correction=False))
    aware, _ = _rel_error(QuantSettings(weight_range="output_mse", clip_gamma=1.0, bias_correction=False))
    assert aware <= plain * 1.05


def test_sequential_calibration_gives_ranges_for_every_bit_width():
    err, q = _rel_error(QuantSettings(act_calibration="sequential"), w_bits=8, a_bits=8)
    assert err < 0.05
    assert all(set(q._act_ranges[n]) >= {2, 4, 8, 16} for n in q.layer_names)
    with pytest.raises(ValueError):
        QuantSettings(act_calibration="nope")


def test_without_calibration_data_output_mse_falls_back_and_biases_stay():
    model, batches = _toy()
    q = QuantizedModel(model, batches[0][:1], settings=QuantSettings(weight_range="output_mse", bias_correction=True),
                       progress=False)
    q.set_config({n: Candidate(4, 32) for n in q.layer_names})
    for name in q.layer_names:
        assert q.weight_quantizer(name, 4).scale.shape[0] == q._fp32_weights[name].shape[0]
        assert torch.equal(q.model.get_submodule(name).bias, q._fp32_biases[name])


def test_input_means_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("MPQ_GYM_CACHE", str(tmp_path))
    model, batches = _toy()
    settings = QuantSettings(bias_correction=True)
    q = QuantizedModel(model, batches[0][:1], calibration_batches=lambda: iter(batches), settings=settings,
                       cache_key="toy", progress=False)
    q.set_config({n: Candidate(4, 8) for n in q.layer_names})
    again = QuantizedModel(model, batches[0][:1], calibration_batches=None, settings=settings, cache_key="toy",
                           progress=False)
    assert again._input_means.keys() == q._input_means.keys()


def test_v2_is_the_default_and_v1_stays_selectable():
    assert QuantSettings() == QUANTIZERS["v2"]
    assert (QuantSettings().weight_range, QuantSettings().bias_correction) == ("output_mse", True)
    v1 = ProblemSpec("digits_cnn", quantizer="v1").settings()
    assert (v1.weight_range, v1.bias_correction) == ("mse", False)
    assert ProblemSpec("digits_cnn", weight_rounding="adaround").settings().weight_range == "output_mse"
    assert quantizer_settings("v1") != quantizer_settings("v2")
    with pytest.raises(ConfigError, match="quantizer"):
        ProblemSpec("digits_cnn", quantizer="v9")


@pytest.mark.parametrize("settings", [QuantSettings(), QuantSettings(weight_range="mse")], ids=["v2", "mse_bc"])
def test_the_first_switch_gives_the_same_model_as_a_later_one(settings):
    """Input statistics collected lazily during the first switch must not leave layers in the old state
    (the first layer has no bias, so the statistics are first needed after it is switched)."""
    model, batches = _toy()
    model[0], model[1] = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Identity()
    q = QuantizedModel(model, batches[0][:1], calibration_batches=lambda: iter(batches), settings=settings,
                       progress=False)
    config = {n: Candidate(4, 8) for n in q.layer_names}
    q.set_config(config)
    with torch.no_grad():
        first = q(batches[1])
    q.set_config({n: Candidate(32, 32) for n in q.layer_names})
    q.set_config(config)
    with torch.no_grad():
        assert torch.equal(q(batches[1]), first)
