import copy

import pytest
import torch

from mpq_gym.quant.graph import quantizable_layers
from mpq_gym.quant.graph import discover_layers, fold_batchnorm
from mpq_gym.workloads import get_workload


def test_resnet50_structure_random_weights():
    """Structure only, so random weights are fine and named as such."""
    workload = get_workload("resnet50", random_weights=True)
    assert workload.random_weights and "RANDOM" in workload.weights
    layers = quantizable_layers(workload.model, workload.example_input())
    assert len(layers) == 54
    params = sum(l.params for l in layers)
    macs = sum(l.macs for l in layers)
    assert 25.5e6 <= params <= 25.6e6
    assert abs(macs - 4.1e9) / 4.1e9 < 0.02
    assert layers[0].name == "conv1" and layers[-1].name == "fc"
    assert [l.index for l in layers] == list(range(54))


def test_mobilenet_v2_depthwise_flags():
    workload = get_workload("mobilenet_v2", random_weights=True)
    layers = quantizable_layers(workload.model, workload.example_input())
    depthwise = [l for l in layers if l.depthwise]
    assert len(depthwise) == 17
    assert all(l.groups == l.c_in == l.c_out for l in depthwise)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_bn_folding_preserves_outputs(name):
    workload = get_workload(name, random_weights=True)
    model = copy.deepcopy(workload.model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        folded = fold_batchnorm(model, workload.example_input())
        after = model(x)
    assert folded == len(discover_layers(model, workload.example_input())) - 1  # every conv, not the fc
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-4 * before.abs().max().item())


def test_folding_refuses_a_conv_output_used_twice():
    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.bn = torch.nn.BatchNorm2d(4)
            self.bn.running_mean.fill_(1.0)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y
    with pytest.raises(RuntimeError, match="fold_bn=False"):
        fold_batchnorm(Twice().eval(), torch.randn(1, 3, 8, 8))
