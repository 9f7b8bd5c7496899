"""Text data for transformer workloads: reading sentence pairs and user datasets, tokenizing into the
[n, rows, length] token tensors of :mod:`mpq_gym.workloads.transformer_models`."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from mpq_gym.errors import MissingDataError
from mpq_gym.workloads.locate import DATA_ENV, data_sources

STSB_FILE = Path("stsb") / "sts-test.csv"


def find_data_file(relative: Path, data_dir: str | os.PathLike | None, what: str) -> Path:
    """``relative`` under the first data folder that has it (``data_dir``, ``$MPQ_GYM_DATA``, ``../shared/data``)."""
    tried = [source / relative for source in data_sources(data_dir)]
    for path in tried:
        if path.is_file():
            return path
    raise MissingDataError(f"{what} not found (looked for {', '.join(map(str, tried))}). Pass data_dir=/path "
                           f"(CLI: --data-dir) or set {DATA_ENV} to a folder holding {relative}.")


def read_sts_pairs(path: Path) -> tuple[list[str], list[str], torch.Tensor]:
    """(first sentences, second sentences, gold scores) of an STS-B style TSV (columns score, sent1, sent2)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    required = {"score", "sent1", "sent2"}
    if not rows or not required <= set(rows[0]):
        raise MissingDataError(f"{path} is not an STS file: expected tab-separated columns {sorted(required)}")
    return [r["sent1"] for r in rows], [r["sent2"] for r in rows], torch.tensor([float(r["score"]) for r in rows])


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``.csv``, ``.tsv`` or ``.jsonl`` file as dicts."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(f"dataset file {path} does not exist; pass dataset=/path/to/file.csv|.tsv|.jsonl")
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    if path.suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ","))
    raise MissingDataError(f"dataset {path}: unsupported file type {path.suffix!r}; use .csv, .tsv or .jsonl")


def tokenize(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None = None,
             max_length: int = 128) -> torch.Tensor:
    """Token tensor [n, 3, length] (ids, attention mask, token types), padded to the longest text."""
    if getattr(tokenizer, "pad_token", None) is None:  # GPT-2 style tokenizers have no pad token
        tokenizer.pad_token = tokenizer.eos_token
    encoded = tokenizer(list(texts), list(pairs) if pairs is not None else None, padding="longest",
                        truncation=True, max_length=max_length, return_tensors="pt")
    types = encoded.get("token_type_ids", torch.zeros_like(encoded["input_ids"]))
    return torch.stack([encoded["input_ids"], encoded["attention_mask"], types], dim=1).long()
