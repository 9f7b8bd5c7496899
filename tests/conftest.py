"""Test fixtures: an isolated cache per session, the repository's reference data, shared workloads."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["MPQ_GYM_CACHE"] = str(tmp_path_factory.mktemp("mpq_cache"))
    os.environ.setdefault("MPQ_GYM_DATA", str(SHARED_DATA))


@pytest.fixture(scope="session")
def digits():
    from mpq_gym.workloads import get_workload
    return get_workload("digits_cnn")


@pytest.fixture(scope="session")
def digits_evaluator(digits):
    from mpq_gym.evaluate.exact import ExactEvaluator
    return ExactEvaluator(digits, progress=False)


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two tiny Hugging Face checkpoints saved to disk (a GPT-2 LM and a BERT classifier, random weights
    saved by this fixture: mechanics only) with MiniLM's real tokenizer, and a 40-row text dataset."""
    import csv

    import torch
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    from mpq_gym.workloads.minilm import minilm_source
    from mpq_gym.workloads.transformer_models import load_tokenizer

    root = tmp_path_factory.mktemp("hf")
    tokenizer = load_tokenizer(minilm_source(None), "MiniLM tokenizer")
    torch.manual_seed(0)
    vocab = tokenizer.vocab_size
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=0, eos_token_id=0))
    bert = BertForSequenceClassification(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=64, num_labels=2))
    for name, model in (("gpt", gpt), ("bert", bert)):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    data = root / "data.csv"
    with open(data, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["text", "label"])
        writer.writeheader()
        writer.writerows({"text": f"sentence {i} is about {'cats' if i % 2 else 'dogs'}", "label": i % 2}
                         for i in range(40))
    return {"gpt": str(root / "gpt"), "bert": str(root / "bert"), "data": str(data)}
