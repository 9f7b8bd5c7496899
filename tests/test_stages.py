"""StageChain on models that are no nn.Sequential chain: stages cut from the torch.fx graph or declared by the
model (Hugging Face encoders: tuples of tensors between stages, kept per batch), verified against the real
forward, calling the very modules the quantizer hooks; untraceable models fall back with a reason."""
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
from mpq_gym.workloads import SplitSizes, get_workload


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


def _check_declared_chain(model: nn.Module, example: torch.Tensor, x: torch.Tensor, layers: list[str]) -> StageChain:
    """The chain of a model that declares its stages: accepted, equal to the forward on ``x``, every layer
    staged in order, and its stages hold (so call) the model's own layer objects."""
    chain = StageChain.build(model, example)
    assert chain.method == "declared" and len(chain) > 1 and chain.fallback_reason is None
    with torch.no_grad():
        assert torch.equal(chain.run(x), model(x))
    stages = [chain.stage_of(name) for name in layers]
    assert stages == sorted(stages) and stages[0] > 0 and len(set(stages)) > 1
    modules = dict(model.named_modules())
    for name in layers:
        assert any(m is modules[name] for m in chain.stages[chain.stage_of(name)][1].modules())
    return chain


@pytest.fixture(scope="module")
def minilm():
    return get_workload("minilm", random_weights=True, split_sizes=SplitSizes(12, 8), batch_size=4)


def test_minilm_is_a_chain_of_declared_stages(minilm):
    model = minilm.model.eval()
    layers = [layer.name for layer in quantizable_layers(model, minilm.example_input(), fold_bn=False)]
    x = minilm.split("calibration").inputs
    chain = _check_declared_chain(model, minilm.example_input(), x, layers)
    assert len(chain) == 1 + 6 * 4 + 1  # embeddings, 4 parts per encoder layer, pooling
    assert chain.names[0] == "sentence.encoder.embeddings" and chain.names[-1] == "pooling"
    assert chain.stage_of("sentence.encoder.encoder.layer.0.attention.self.query") == 1
    assert chain.stage_of("sentence.encoder.encoder.layer.5.output.dense") == len(chain) - 2
    with torch.no_grad():
        # per batch: each batch is trimmed to its own length, so the kept activations stay a list of tuples
        middle = chain.run_batched(x, 4, 0, 9)
        assert isinstance(middle, list) and len(middle) == 3 and all(isinstance(m, tuple) for m in middle)
        assert len({m[0].shape[1] for m in middle}) > 1  # different lengths: no concatenation possible
        assert torch.equal(chain.run_batched(middle, 4, 9), torch.cat([model(b) for b in x.split(4)]))


def test_hf_classifiers_declare_their_stages(tiny_hf):
    workload = get_workload(f"hf:{tiny_hf['bert']}", dataset=tiny_hf["data"])
    model = workload.model.eval()
    layers = [layer.name for layer in quantizable_layers(model, workload.example_input(), fold_bn=False)]
    chain = _check_declared_chain(model, workload.example_input(), workload.split("search").inputs, layers)
    assert chain.names[-1] == "model.classifier" and chain.stage_of("model.bert.pooler.dense") == len(chain) - 1


def test_roberta_style_heads_and_non_bert_encoders():
    from transformers import DistilBertConfig, DistilBertModel, RobertaConfig, RobertaForSequenceClassification

    from mpq_gym.workloads.transformer_models import MeanPooledEncoder, SequenceClassifier
    torch.manual_seed(0)
    tokens = torch.stack([torch.randint(3, 90, (5, 12)), torch.ones(5, 12, dtype=torch.long)], dim=1)
    tokens[1:, 1, 7:] = 0  # right padding
    tokens[:, 0] *= tokens[:, 1]
    roberta = SequenceClassifier(RobertaForSequenceClassification(RobertaConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=40, num_labels=3, pad_token_id=1)).eval()).eval()
    chain = _check_declared_chain(roberta, tokens[:2], tokens, ["model.roberta.encoder.layer.0.attention.self.query",
                                                              "model.classifier.out_proj"])
    assert chain.names[-1] == "model.classifier"
    distil = MeanPooledEncoder(DistilBertModel(DistilBertConfig(vocab_size=100, dim=16, n_layers=1, n_heads=2,
                                                                hidden_dim=32)).eval()).eval()
    chain = StageChain.build(distil, tokens[:2])
    assert len(chain) == 1 and "DistilBertModel is no BERT-style encoder" in chain.fallback_reason


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


def _staged_and_whole_rows(qm, x, groups, candidates, which, batch_size, monkeypatch):
    """Phase-1 rows with the model's chain of stages (checked to have several), then with one forced stage."""
    staged = sensitivity_rows(qm, x, groups, candidates, which, batch_size=batch_size)
    assert len(StageChain.build(qm.model, x[:1])) > 1
    monkeypatch.setattr(StageChain, "build", classmethod(lambda cls, model, example: cls.whole(model, "forced")))
    whole = sensitivity_rows(qm, x, groups, candidates, which, batch_size=batch_size)
    assert np.isfinite(np.stack(list(staged.values()))).all()
    return staged, whole


def test_phase1_rows_equal_one_stage_rows(block_loop_qmodel, monkeypatch):
    qm, x = block_loop_qmodel
    groups, candidates = make_groups(qm.layer_names), parse_candidates("W4A8,W8A8")
    which = range(len(groups))
    staged, whole = _staged_and_whole_rows(qm, x, groups, candidates, which, 5, monkeypatch)
    for g in which:
        np.testing.assert_allclose(staged[g], whole[g], rtol=1e-4, atol=1e-3)


@pytest.fixture(scope="module")
def minilm_qmodel(minilm) -> tuple[QuantizedModel, torch.Tensor]:
    x = minilm.split("calibration").inputs  # 12 pairs: 3 batches of 4, each trimmed to its own length
    qm = QuantizedModel(minilm.model, minilm.example_input(), calibration_batches=lambda: list(x.split(4)),
                        settings=QuantSettings(), progress=False)
    return qm, x


def test_minilm_phase1_rows_equal_one_stage_rows(minilm_qmodel, monkeypatch):
    qm, x = minilm_qmodel
    groups, candidates = make_groups(qm.layer_names), parse_candidates("W8A4,W8A8")  # one weight fit per layer
    which = [0, 3, 16, len(groups) - 1]  # layer 0 query and attention output, layer 2 intermediate, layer 5 output
    staged, whole = _staged_and_whole_rows(qm, x, groups, candidates, which, 4, monkeypatch)
    for g in which:
        np.testing.assert_allclose(staged[g], whole[g], rtol=1e-5, atol=1e-4)


def test_minilm_reused_activations_give_the_full_forward_outputs(minilm):
    from mpq_gym.evaluate.exact import ExactEvaluator, StageInputCache
    from mpq_gym.evaluate.store import ResultStore
    with pytest.warns(UserWarning, match="RANDOM weights"):
        evaluator = ExactEvaluator(minilm, progress=False, store=ResultStore(None))
    evaluator.stage_inputs = StageInputCache(1 << 28)
    names = evaluator.qmodel.layer_names
    assert len(evaluator.chain) > 1 and evaluator.chain.method == "declared"
    w8a8, w8a4 = Candidate(8, 8), Candidate(8, 4)  # few layers, one weight width: few quantizers to fit
    base = {**uniform_config(names, FP32), names[3]: w8a8, names[30]: w8a8}
    configs = [base, {**base, names[-1]: w8a4}, {**base, names[20]: w8a8}, {**base, names[21]: w8a4},
               {**base, names[0]: w8a8}]
    for config in configs:
        evaluator.qmodel.set_config(config)
        with torch.inference_mode():
            full = torch.cat([evaluator.qmodel(b) for b, _ in minilm.split("search").batches(minilm.batch_size)])
        assert torch.equal(evaluator.outputs(config, "search"), full)
    # every configuration starts from a kept input: the embeddings stage holds no layer, so its output is
    # shared by all; the others differ from the first only from a later stage on
    assert evaluator.stage_inputs.hits == len(configs) - 1 and evaluator.stage_inputs.misses == 1
    assert 0 < evaluator.stage_inputs.bytes <= 1 << 28
