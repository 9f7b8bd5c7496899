"""Real pretrained EfficientNet-Lite0 on real ImageNet images (a small subset, to stay fast)."""
import pytest

from mpq_gym.config import parse_config
from mpq_gym.evaluate.exact import ExactEvaluator
from mpq_gym.workloads import SplitSizes, get_workload


@pytest.mark.slow
def test_efficientnet_lite0_fp32_and_w8a8_on_real_images():
    workload = get_workload("efficientnet_lite0", split_sizes=SplitSizes(64, 32, 96))
    evaluator = ExactEvaluator(workload, progress=False)
    names = evaluator.qmodel.layer_names
    assert len(names) == 50
    fp32 = evaluator.evaluate(parse_config("fp32", names), "test")
    w8a8 = evaluator.evaluate(parse_config("uniform:W8A8", names), "test")
    w4a8 = evaluator.evaluate(parse_config("uniform:W4A8", names), "test")
    assert fp32["top1"] >= 80.0  # 88.2 % on all 1000 images; a wrong normalisation gives ~77 %
    assert w8a8["agreement"] >= 90.0 and abs(w8a8["top1"] - fp32["top1"]) <= 4.0
    assert w4a8["top1"] < w8a8["top1"] - 10  # W4A8 collapses post-training, as in the AIMET paper
