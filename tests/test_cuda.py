"""The fake-quant core on a CUDA GPU: runs only where one is present (and says so where not)."""
import numpy as np
import pytest
import torch

from mpq_gym.config import FP32, Candidate, uniform_config
from mpq_gym.evaluate.exact import ExactEvaluator, build_quantized_model
from mpq_gym.evaluate.sensitivity import sensitivity_rows
from mpq_gym.evaluate.store import ResultStore

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA GPU on this machine: the CUDA tests did not run here")


def _evaluator(workload, device):
    return ExactEvaluator(workload, build_quantized_model(workload, progress=False, device=device),
                          store=ResultStore(None), progress=False)


def test_cuda_outputs_match_cpu(digits):
    cpu, gpu = _evaluator(digits, "cpu"), _evaluator(digits, "cuda")
    names = cpu.qmodel.layer_names
    for config in (uniform_config(names, Candidate(8, 8)), uniform_config(names, Candidate(4, 4)),
                   {**uniform_config(names, Candidate(4, 8)), names[0]: Candidate(4, 4, "ant")}):
        a, b = cpu.outputs(config, "test"), gpu.outputs(config, "test")
        assert b.device.type == "cpu"  # outputs come back to the CPU
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-3 * a.abs().max().item())
        assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99


def test_cuda_phase1_rows_match_cpu(digits):
    from mpq_gym.candidates import make_groups
    cpu, gpu = _evaluator(digits, "cpu"), _evaluator(digits, "cuda")
    groups = make_groups(cpu.qmodel.layer_names, ())
    inputs = next(digits.split("calibration").batches(64))[0]
    candidates = [Candidate(4, 8), Candidate(8, 8)]
    a = sensitivity_rows(cpu.qmodel, inputs, groups, candidates, range(len(groups)))
    b = sensitivity_rows(gpu.qmodel, inputs, groups, candidates, range(len(groups)))
    assert all(np.allclose(a[g], b[g], atol=0.05) for g in a)


def test_reused_activations_on_cuda_equal_full_runs(digits):
    gpu = _evaluator(digits, "cuda")
    names = gpu.qmodel.layer_names
    base = uniform_config(names, Candidate(4, 8))
    first = gpu.outputs(base, "search")
    changed = {**base, names[-1]: Candidate(8, 8)}
    reused = gpu.outputs(changed, "search")
    assert gpu.stage_inputs.hits >= 1
    gpu.stage_inputs.clear()
    assert torch.equal(reused, gpu.outputs(changed, "search")) and first.shape == reused.shape


def test_adaround_of_one_digits_layer_on_cuda_matches_cpu(digits):
    """AdaRound learned on the GPU (rounding variables, Adam state, row batches there) lands on the CPU (the
    cache's device-independent form) and agrees with the CPU's up to a few weights rounded the other way."""
    from mpq_gym.quant.model import QuantizedModel
    from mpq_gym.quant.quantizers import QuantSettings
    settings = QuantSettings(weight_rounding="adaround", adaround_iterations=200, adaround_rows=1024)
    cpu, gpu = (QuantizedModel(digits.model, digits.example_input(), digits.calibration_batches, settings,
                               progress=False, device=device) for device in ("cpu", "cuda"))
    name = cpu.layer_names[1]
    a, b = cpu.quantized_weight(name, 3), gpu.quantized_weight(name, 3)
    assert b.device.type == "cpu" and a.shape == b.shape
    units = [w / m.weight_quantizer(name, 3, "int").scale.reshape(-1, *([1] * (w.dim() - 1)))
             for w, m in ((a, cpu), (b, gpu))]  # each on its own grid (scales fitted on the CPU either way)
    differ = (units[0].round() - units[1].round()).abs()
    assert differ.max() <= 1 and (differ > 0).float().mean() < 0.05  # the same rounding almost everywhere
    gpu.set_config({**uniform_config(gpu.layer_names, FP32), name: Candidate(3, 32)})
    assert gpu.model.get_submodule(name).weight.device.type == "cuda"
