import pytest
import torch

import mpq_gym.quant.model as qmodel_module
from mpq_gym.config import FP32, Candidate, uniform_config
from mpq_gym.errors import ConfigError
from mpq_gym.evaluate.exact import build_quantized_model


def _inputs(workload):
    return next(workload.split("test").batches(64))[0]


def test_fp32_config_reproduces_the_original_model(digits):
    qm = build_quantized_model(digits)
    x = _inputs(digits)
    with torch.no_grad():
        reference = digits.model(x)
        qm.set_config(uniform_config(qm.layer_names, Candidate(4, 4)))
        assert not torch.allclose(qm(x), reference, atol=1e-3)
        qm.set_config(uniform_config(qm.layer_names, FP32))
        assert torch.allclose(qm(x), reference, atol=1e-4)


def test_set_config_never_requantizes(digits, monkeypatch):
    qm = build_quantized_model(digits)
    w4 = uniform_config(qm.layer_names, Candidate(4, 8))
    qm.set_config(w4)
    calls = []
    real_scales = qmodel_module.weight_quantizer
    monkeypatch.setattr(qmodel_module, "weight_quantizer", lambda *a, **k: calls.append(a) or real_scales(*a, **k))
    monkeypatch.setattr(qm, "calibrate", lambda: calls.append("calibrate"))
    qm.set_config(uniform_config(qm.layer_names, Candidate(8, 8)))  # new bits: scales computed once
    calls.clear()
    for step in range(4):
        qm.set_config(uniform_config(qm.layer_names, Candidate(8, 8)) if step % 2 else w4)
    assert calls == []


def test_mixed_config_only_touches_named_layers(digits):
    qm = build_quantized_model(digits)
    first = qm.layer_names[0]
    config = uniform_config(qm.layer_names, FP32) | {first: Candidate(2, 32)}
    qm.set_config(config)
    module = qm.model.get_submodule(first)
    assert module.weight.unique().numel() <= 4 * module.weight.shape[0]
    other = qm.model.get_submodule(qm.layer_names[1])
    assert other.weight.unique().numel() > 4 * other.weight.shape[0]
    assert qm.config == config


def test_disk_cache_skips_calibration_in_a_new_instance(digits, monkeypatch):
    qm = build_quantized_model(digits)
    qm.set_config(uniform_config(qm.layer_names, Candidate(6, 6)))
    second = build_quantized_model(digits)
    monkeypatch.setattr(second, "calibrate", lambda: pytest.fail("recalibrated despite the disk cache"))
    second.set_config(uniform_config(second.layer_names, Candidate(6, 6)))
    x = _inputs(digits)
    with torch.no_grad():
        assert torch.equal(qm(x), second(x))


def test_config_must_match_layers(digits):
    qm = build_quantized_model(digits)
    with pytest.raises(ConfigError, match="missing"):
        qm.set_config({qm.layer_names[0]: Candidate(8, 8)})


def test_first_config_with_calibration_equals_a_later_switch(digits, tmp_path, monkeypatch):
    """Regression: calibration triggered inside set_config once reset already-switched weights to FP32."""
    monkeypatch.setenv("MPQ_GYM_CACHE", str(tmp_path))
    qm = build_quantized_model(digits)
    w4 = uniform_config(qm.layer_names, Candidate(4, 8))
    x = _inputs(digits)
    with torch.no_grad():
        qm.set_config(w4)  # calibrates now
        first = qm(x)
        qm.set_config(uniform_config(qm.layer_names, FP32))
        qm.set_config(w4)
        assert torch.equal(first, qm(x))


_FAULTS_PROBE = """
import resource, sys, torch
from mpq_gym import allocator
assert allocator.tune_allocator() is (sys.argv[1] == "tuned")
for _ in range(4):  # warm-up: the heap grows to hold the block (64 MiB: an mmap of its own by default)
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(6):
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults_of_six_64mib_tensors(malloc_env: str | None) -> int:
    """Minor page faults of six 64 MiB allocations after four in a fresh interpreter (a long test session's heap may
    hold over the trim threshold free at its top, and glibc then rightly gives the block back)."""
    import os
    import subprocess
    import sys

    from mpq_gym import allocator
    env = {k: v for k, v in os.environ.items() if k != allocator.ENV}
    if malloc_env is not None:
        env[allocator.ENV] = malloc_env
    out = subprocess.run([sys.executable, "-c", _FAULTS_PROBE, "tuned" if malloc_env is None else "system"],
                         env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_the_allocator_keeps_large_tensors_in_the_heap(monkeypatch):
    import sys

    from mpq_gym import allocator
    monkeypatch.setenv(allocator.ENV, "system")
    assert allocator._tune() is False  # the opt-out
    if not sys.platform.startswith("linux"):
        return
    one_tensor = (64 << 20) // 4096
    assert _page_faults_of_six_64mib_tensors("system") > 5 * one_tensor  # glibc's default: a fresh mmap each
    # tuned: the heap's block is reused (while the heap settles, a block may still land on new pages once:
    # seen 0-1 times in six on the 2-core CI machine under load)
    assert _page_faults_of_six_64mib_tensors(None) < 2 * one_tensor
