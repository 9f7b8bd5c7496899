import time

import pytest
import torch

from mpq_gym.config import Candidate, parse_config, uniform_config
from mpq_gym.errors import CacheCorruptedError
from mpq_gym.evaluate.exact import ExactEvaluator
from mpq_gym.evaluate.store import ResultStore


def test_digits_fp32_accuracy_is_real(digits_evaluator):
    result = digits_evaluator.evaluate(parse_config("fp32", digits_evaluator.qmodel.layer_names), "test")
    assert result["top1"] >= 95.0
    assert result["agreement"] == 100.0


def test_low_bits_measurably_hurt(digits_evaluator):
    names = digits_evaluator.qmodel.layer_names
    w8 = digits_evaluator.evaluate(uniform_config(names, Candidate(8, 8)), "test")
    w2 = digits_evaluator.evaluate(uniform_config(names, Candidate(2, 2)), "test")
    assert w8["top1"] - w2["top1"] >= 3.0  # 98.75 vs 93.5 (quantizer v2; v1: 71.75)
    assert w8["sqnr_db"] > w2["sqnr_db"] + 10
    assert w8["agreement"] >= 99.0


def test_repeated_config_is_a_memo_lookup(digits_evaluator):
    config = uniform_config(digits_evaluator.qmodel.layer_names, Candidate(5, 7))
    first = digits_evaluator.evaluate(config, "search")
    passes = digits_evaluator.forward_passes
    start = time.perf_counter()
    again = digits_evaluator.evaluate(config, "search")
    elapsed = time.perf_counter() - start
    assert again == first
    assert digits_evaluator.forward_passes == passes
    assert elapsed < 0.05  # the < 1 ms figure is measured in docs/benchmarks.md, not asserted on a noisy CI box


def test_results_persist_across_evaluators(digits, digits_evaluator):
    config = uniform_config(digits_evaluator.qmodel.layer_names, Candidate(3, 8))
    first = digits_evaluator.evaluate(config, "test")
    fresh = ExactEvaluator(digits, progress=False)
    assert fresh.evaluate(config, "test") == first
    assert fresh.forward_passes == 0


def test_unknown_split_is_named(digits_evaluator):
    with pytest.raises(ValueError, match="no split 'validation'"):
        digits_evaluator.evaluate(uniform_config(digits_evaluator.qmodel.layer_names, Candidate(8, 8)), "validation")


def test_corrupted_result_store_names_the_fix(tmp_path):
    path = tmp_path / "evaluations.sqlite"
    path.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(CacheCorruptedError, match="Delete it"):
        ResultStore(path)


def test_corrupted_quant_cache_is_rebuilt_with_a_warning(digits, tmp_path, monkeypatch):
    from mpq_gym.errors import CacheIntegrityWarning
    from mpq_gym.evaluate.exact import build_quantized_model
    monkeypatch.setenv("MPQ_GYM_CACHE", str(tmp_path))
    qm = build_quantized_model(digits)
    qm.set_config(uniform_config(qm.layer_names, Candidate(8, 8)))
    (cache_file,) = (tmp_path / "quant").glob("*.pt")
    cache_file.write_bytes(b"garbage")
    with pytest.warns(CacheIntegrityWarning, match=cache_file.name):
        again = build_quantized_model(digits)
    again.set_config(uniform_config(qm.layer_names, Candidate(8, 8)))
    assert all(torch.equal(again.quantized_weight(n, 8), qm.quantized_weight(n, 8)) for n in qm.layer_names)


# ------------------------------------------------------------------------------ reused activations
def _full_forward(evaluator: ExactEvaluator, config, split: str) -> torch.Tensor:
    """The outputs of a plain forward of the whole network (no stages, nothing reused)."""
    evaluator.qmodel.set_config(config)
    with torch.inference_mode():
        return torch.cat([evaluator.qmodel(x).float()
                          for x, _ in evaluator.workload.split(split).batches(evaluator.workload.batch_size)])


def test_reused_activations_give_the_full_forward_outputs(digits):
    from mpq_gym.evaluate.exact import StageInputCache
    evaluator = ExactEvaluator(digits, progress=False, store=ResultStore(None))
    names = evaluator.qmodel.layer_names
    assert len(evaluator.chain) > 1
    base = uniform_config(names, Candidate(4, 8))
    configs = [base] + [{**base, **{n: Candidate(2, 4) for n in names[i:]}} for i in range(len(names) - 1, 0, -1)]
    configs += [{**base, names[-1]: Candidate(8, 8)}, {**base, names[0]: Candidate(3, 3)}]
    evaluator.stage_inputs = StageInputCache(1 << 30)
    for config in configs:
        assert torch.equal(evaluator.outputs(config, "search"), _full_forward(evaluator, config, "search"))
    # every configuration but the first and the one changing the first layer starts from a kept input
    assert evaluator.stage_inputs.hits == len(configs) - 2
    assert 0 < evaluator.stage_inputs.bytes <= 1 << 30


def test_stage_input_cache_stays_within_its_budget_and_drops_the_oldest():
    from mpq_gym.evaluate.exact import StageInputCache
    cache = StageInputCache(8 * 4000)  # an entry may take 1/8 of it: 4000 bytes = 1000 float32
    for i in range(10):
        cache.put(i, [torch.zeros(1000)])
    assert cache.bytes <= 8 * 4000 and len(cache) == 8
    assert cache.get(0) is None and cache.get(9) is not None
    cache.put("big", [torch.zeros(1001)])  # over the per-entry share: not kept
    assert "big" not in cache


def test_reuse_off_and_on_agree_on_stages_that_work_in_place(monkeypatch):
    """A stage that overwrites its input before using it must not damage the kept input it started from."""
    from torch import nn

    from mpq_gym.evaluate.exact import StageInputCache
    from mpq_gym.metrics import classification_metrics
    from mpq_gym.workloads.base import Split, Workload

    class AddInPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x.add_(1.0))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), AddInPlace(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    x, y = torch.randn(24, 1, 8, 8), torch.randint(0, 3, (24,))
    splits = {s: Split(x, y) for s in ("calibration", "search", "test")}
    workload = Workload("inplace", model, (1, 8, 8), classification_metrics, "top1", "test", lambda: splits,
                        batch_size=8)
    evaluator = ExactEvaluator(workload, progress=False, store=ResultStore(None))
    evaluator.stage_inputs = StageInputCache(1 << 24)
    names = evaluator.qmodel.layer_names
    base = uniform_config(names, Candidate(4, 4))
    for bits in (4, 8, 2, 8):  # the in-place block's layer changes: each run starts from the kept input of its stage
        config = {**base, names[1]: Candidate(bits, bits)}
        assert torch.equal(evaluator.outputs(config, "search"), _full_forward(evaluator, config, "search"))
    assert evaluator.stage_inputs.hits == 3
