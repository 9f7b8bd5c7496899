"""``hf:<model id or path>``: any Hugging Face BERT / GPT-2 / OPT / Bloom style checkpoint on a dataset
the user gives.

* ``task="classification"``: a ``...ForSequenceClassification`` checkpoint; dataset columns ``text``
  (and optionally ``text_pair``) and ``label`` (an index, or a name in the model's ``label2id``);
  metric top-1 accuracy.
* ``task="lm"``: a causal LM; dataset column ``text``; metric perplexity (the searches maximise
  ``neg_perplexity``).
* ``task="auto"`` reads the checkpoint's ``architectures``.

Weights come from a local directory or the HF cache (downloaded only when online); a checkpoint that
lacks the task's head is refused rather than completed with random weights. GPT-2's ``Conv1D`` layers
become equivalent ``nn.Linear`` and tied LM heads get their own weight, so every projection is a layer.
"""
from __future__ import annotations

import os

import torch

from mpq_gym.errors import ConfigError, MissingDataError
from mpq_gym.metrics import classification_metrics, perplexity_metrics
from mpq_gym.workloads.base import Split, SplitSizes, Workload, split_indices
from mpq_gym.workloads.text import read_records, tokenize
from mpq_gym.workloads.transformer_models import (MASK, SequenceClassifier, TokenNLL, conv1d_to_linear,
                                                  from_pretrained, load_pretrained, load_tokenizer,
                                                  untie_linear_weights)

PREFIX = "hf:"
TASKS = ("auto", "classification", "lm")


def detect_task(source: str) -> str:
    """``classification`` or ``lm`` from the checkpoint's ``architectures``."""
    from transformers import AutoConfig
    config = from_pretrained(AutoConfig, source, f"hf:{source}", part="config")
    architectures = " ".join(config.architectures or [])
    if "ForSequenceClassification" in architectures:
        return "classification"
    if "CausalLM" in architectures or "LMHeadModel" in architectures:
        return "lm"
    raise ConfigError(f"hf:{source}: cannot tell the task from architectures {config.architectures}; "
                      "pass task='classification' or task='lm' (workload_kwargs={'task': ...})")


def _labels(records: list[dict], column: str, label2id: dict[str, int]) -> torch.Tensor:
    labels = []
    for row in records:
        value = row[column]
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            if value not in label2id:
                raise MissingDataError(f"label {value!r} is not one of the model's labels {sorted(label2id)}")
            labels.append(label2id[value])
        else:
            labels.append(int(value))
    return torch.tensor(labels)


def hf_workload(model: str, dataset: str | os.PathLike | None = None, task: str = "auto", text_column: str = "text",
                text_pair_column: str = "text_pair", label_column: str = "label", max_length: int = 128,
                split_sizes: SplitSizes | None = None, batch_size: int = 16, weights: str | None = None,
                data_dir: str | None = None, random_weights: bool = False) -> Workload:
    """A workload from a Hugging Face checkpoint (``model``: hub id or directory; ``weights`` overrides it)
    and a ``.csv`` / ``.tsv`` / ``.jsonl`` ``dataset``. ``split_sizes`` default: a quarter of the rows
    each for calibration and search, the rest for test."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    source = weights or model
    if not source:
        raise ConfigError("the hf workload needs a model: workload='hf:<model id or local directory>'")
    if random_weights:
        raise ConfigError("hf: workloads load pretrained checkpoints only; for structure work save a model "
                          "with save_pretrained(DIR) and pass hf:DIR")
    if dataset is None:
        raise MissingDataError(f"hf:{model} needs a dataset: workload_kwargs={{'dataset': '/path/data.csv'}} "
                               f"(CLI: --env-kwargs 'workload_kwargs={{\"dataset\": \"...\"}}'), with a "
                               f"'{text_column}' column{' and a label column' if task != 'lm' else ''}")
    if task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
    task = detect_task(source) if task == "auto" else task
    what = f"hf:{source}"
    records = read_records(dataset)
    if not records or text_column not in records[0]:
        raise MissingDataError(f"dataset {dataset} has no column {text_column!r} (columns: "
                               f"{sorted(records[0]) if records else 'none'}); pass text_column=")
    tokenizer = load_tokenizer(source, what)
    texts = [str(r[text_column]) for r in records]
    if task == "classification":
        network = load_pretrained(AutoModelForSequenceClassification, source, what)
        if label_column not in records[0]:
            raise MissingDataError(f"dataset {dataset} has no label column {label_column!r}; pass label_column=")
        pairs = [str(r[text_pair_column]) for r in records] if text_pair_column in records[0] else None
        if tokenizer.pad_token is None or network.config.pad_token_id is None:
            tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
            network.config.pad_token_id = tokenizer.pad_token_id
        tokens = tokenize(tokenizer, texts, pairs, max_length)
        targets = _labels(records, label_column, {str(k): v for k, v in (network.config.label2id or {}).items()})
        wrapped, metric, primary = SequenceClassifier(network), classification_metrics, "top1"
    else:
        network = load_pretrained(AutoModelForCausalLM, source, what)
        tokens = tokenize(tokenizer, texts, max_length=max_length)
        targets = tokens[:, MASK, 1:].float()
        wrapped, metric, primary = TokenNLL(network), perplexity_metrics, "neg_perplexity"
    conv1d_to_linear(wrapped)
    untie_linear_weights(wrapped)
    n = len(records)
    sizes = split_sizes or SplitSizes(max(n // 4, 1), max(n // 4, 1))
    splits = {name: Split(tokens[idx], targets[idx])
              for name, idx in split_indices(n, sizes, what=f"dataset {dataset}").items()}
    return Workload(name=f"{PREFIX}{model}", model=wrapped.eval(), input_shape=tuple(tokens.shape[1:]), metric=metric,
                    primary_metric=primary, weights=str(source), load_splits=lambda: splits, batch_size=batch_size,
                    example=lambda: splits["calibration"].inputs[:1])
