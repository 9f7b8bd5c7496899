"""StageChain on models that are no nn.Sequential chain: stages cut from the torch.fx graph, verified against
the real forward, calling the very modules the quantizer hooks; untraceable models fall back with a reason."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from benchmarks.phase1_stages import BlockLoopNet
from mpq_gym.candidates import make_groups, parse_candidates
from mpq_gym.config import FP32, Candidate, uniform_config
from mpq_gym.evaluate.sensitivity import sensitivity_rows
from mpq_gym.quant.graph import quantizable_layers
from mpq_gym.quant.model import QuantizedModel
from mpq_gym.quant.quantizers import QuantSettings
from mpq_gym.quant.stages import StageChain
from mpq_gym.workloads import get_workload


def _check_chain(model: nn.Module, x: torch.Tensor) -> StageChain:
    """Build the chain and check: fx stages, > 1 of them, same output as the forward, every layer staged,
    and every stage calls the model's own module objects."""
    chain = StageChain.build(model, x)
    assert chain.method == "fx" and len(chain) > 1 and chain.fallback_reason is None
    with torch.no_grad():
        assert torch.allclose(chain.run(x), model(x), rtol=1e-5, atol=1e-6)
    stages = [chain.stage_of(layer.name) for layer in quantizable_layers(model, x, fold_bn=False)]
    assert stages == sorted(stages) and set(stages) == set(range(len(chain)))  # each stage holds a layer
    modules = dict(model.named_modules())
    for _, stage in chain.stages:
        assert isinstance(stage, fx.GraphModule)
        for node in stage.graph.nodes:
            if node.op == "call_module":
                assert stage.get_submodule(node.target) is modules[node.target]
    return chain


def test_mobilenet_v2_is_cut_from_its_fx_graph():
    workload = get_workload("mobilenet_v2", random_weights=True)
    chain = _check_chain(workload.model.eval(), workload.example_input())
    assert len(chain) > 20  # a cut between blocks, and inside blocks without a residual


def test_block_loop_model_is_cut_and_runs_in_batches():
    torch.manual_seed(0)
    model = BlockLoopNet().eval()
    x = torch.randn(1, 3, 16, 16)
    assert StageChain.build(model, x).names[0] != ""
    chain = _check_chain(model, x)
    assert chain.stage_of("blocks.0.conv1") == chain.stage_of("blocks.0.conv2")  # a residual block is not cut
    batch = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        middle = chain.run_batched(batch, 2, 0, 3)
        assert torch.allclose(chain.run_batched(middle, 2, 3), model(batch), rtol=1e-5, atol=1e-6)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a(x))
        return self.b(x) if x.sum() > 0 else -self.b(x)


def test_data_dependent_control_flow_falls_back_with_a_reason():
    chain = StageChain.build(DataDependent().eval(), torch.randn(1, 4))
    assert len(chain) == 1 and chain.names == [""] and chain.method == "whole"
    assert "torch.fx cannot trace DataDependent.forward" in chain.fallback_reason
    assert chain.stage_of("a") == chain.stage_of("b") == 0


def test_minilm_falls_back_with_a_reason():
    workload = get_workload("minilm", random_weights=True)
    chain = StageChain.build(workload.model, workload.example_input())
    assert len(chain) == 1 and "torch.fx cannot trace PairEncoder.forward" in chain.fallback_reason


class Dict(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> dict:
        return {"y": torch.relu(self.a(x))}


def test_non_tensor_output_falls_back():
    chain = StageChain.build(Dict().eval(), torch.randn(1, 4))
    assert len(chain) == 1 and "returns a dict" in chain.fallback_reason


class InPlaceAndShared(nn.Module):
    """An in-place op right after a layer (through an alias: Identity, as a folded BN leaves), a Linear
    called twice, and an optional argument."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.shared = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.same = nn.Identity()

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        x = self.shared(x)
        x = F.relu(self.same(self.a(x)), inplace=True)
        x = self.b(x)
        x = self.shared(x).add_(1.0)
        return x if scale is None else x * scale


def test_no_stage_writes_into_its_input_and_shared_layers_map_to_the_earliest_stage():
    model = InPlaceAndShared().eval()
    x = torch.randn(3, 4)
    chain = StageChain.build(model, x[:1])
    assert chain.method == "fx" and chain.names == ["shared", "a", "b", "shared"]  # shared is called twice
    assert chain.stage_of("shared") == 0 and chain.stage_of("a") == 1 and chain.stage_of("b") == 2
    assert "relu" in chain.stages[1][1].code  # the cut is after the in-place ReLU, not between it and `a`
    with torch.no_grad():
        for k in range(len(chain)):
            kept = chain.run(x, 0, k)
            copy = kept.clone()
            chain.run(kept, k)
            assert torch.equal(kept, copy), f"stage {k} wrote into its input"
        assert torch.allclose(chain.run(x), model(x))
    with pytest.raises(ValueError, match="in no stage"):
        chain.stage_of("nope")


@pytest.fixture(scope="module")
def block_loop_qmodel() -> tuple[QuantizedModel, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(12, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    qm = QuantizedModel(BlockLoopNet().eval(), x[:1], calibration_batches=lambda: [x[:6], x[6:]],
                        settings=QuantSettings(), progress=False)
    return qm, x


def test_chain_sees_the_quantizers_hooks_and_weights(block_loop_qmodel):
    qm, x = block_loop_qmodel
    qm.set_config(uniform_config(qm.layer_names, FP32))
    chain = StageChain.build(qm.model, x[:1])
    assert chain.method == "fx"
    with torch.no_grad():
        fp32 = chain.run(x)
        qm.set_config({**uniform_config(qm.layer_names, FP32), "blocks.2.conv1": Candidate(4, 4)})
        quantized = chain.run(x)
        assert torch.equal(quantized, qm(x)) and not torch.allclose(quantized, fp32)
    qm.set_config(uniform_config(qm.layer_names, FP32))


def test_phase1_rows_equal_one_stage_rows(block_loop_qmodel, monkeypatch):
    qm, x = block_loop_qmodel
    groups, candidates = make_groups(qm.layer_names), parse_candidates("W4A8,W8A8")
    which = range(len(groups))
    staged = sensitivity_rows(qm, x, groups, candidates, which, batch_size=5)
    assert len(StageChain.build(qm.model, x[:1])) > 1
    monkeypatch.setattr(StageChain, "build", classmethod(lambda cls, model, example: cls.whole(model, "forced")))
    whole = sensitivity_rows(qm, x, groups, candidates, which, batch_size=5)
    assert np.isfinite(np.stack(list(staged.values()))).all()
    for g in which:
        np.testing.assert_allclose(staged[g], whole[g], rtol=1e-4, atol=1e-3)
