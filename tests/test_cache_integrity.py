"""Checksummed caches: every kind of cache file, damaged (64 flipped bytes, truncated, a foreign or
wrong-structure object), gives exactly the number a clean cache gives, with a warning naming the file;
and the result store never keeps a result computed from a discarded cache entry."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mpq_gym.cache import load_cached, save_atomic
from mpq_gym.candidates import make_groups
from mpq_gym.config import Candidate, uniform_config
from mpq_gym.errors import CacheIntegrityWarning
from mpq_gym.evaluate.exact import ExactEvaluator, build_quantized_model
from mpq_gym.evaluate.sensitivity import compute_sensitivity
from mpq_gym.evaluate.store import ResultStore
from mpq_gym.quant.quantizers import QuantSettings
from mpq_gym.workloads import get_workload

ADAROUND = QuantSettings(weight_rounding="adaround", adaround_iterations=100, adaround_rows=256)
CANDIDATES = [Candidate(2, 8), Candidate(4, 8), Candidate(8, 8)]
SENSITIVITY_IMAGES = 32
#: the issue's damaged cases: 64 bytes flipped in the middle, the file cut in half, header bytes flipped
DAMAGE = ("flip64", "truncate", "header", "foreign_pickle", "wrong_structure", "renamed_entry")


def _measure(adaround: bool = False, sensitivity: bool = False) -> dict:
    """Every number the caches feed, computed from whatever the current cache holds (a fresh store, so
    nothing comes from memoised results)."""
    workload = get_workload("digits_cnn")
    out = {}
    evaluator = ExactEvaluator(workload, store=ResultStore(None), progress=False)
    names = evaluator.qmodel.layer_names
    for cand in (Candidate(2, 4), Candidate(8, 8)):
        out[str(cand)] = evaluator.evaluate(uniform_config(names, cand), "test")
    if adaround:
        ada = ExactEvaluator(workload, build_quantized_model(workload, ADAROUND, progress=False),
                             store=ResultStore(None), progress=False)
        out["adaround-W3A8"] = ada.evaluate(uniform_config(names, Candidate(3, 8)), "test")
    if sensitivity:
        inputs = next(workload.split("calibration").batches(SENSITIVITY_IMAGES))[0]
        table = compute_sensitivity(evaluator.qmodel, inputs, make_groups(names), CANDIDATES,
                                    cache_key=workload.fingerprint(), progress=False)
        out["sensitivity"] = table.sqnr_db.tolist()
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A cache filled once (every kind of file), and the numbers it gives."""
    root = tmp_path_factory.mktemp("clean_cache")
    previous = os.environ.get("MPQ_GYM_CACHE")
    os.environ["MPQ_GYM_CACHE"] = str(root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheIntegrityWarning)
            numbers = _measure(adaround=True, sensitivity=True)
            assert _measure(adaround=True, sensitivity=True) == numbers  # a warm cache gives the same numbers
    finally:
        if previous is None:
            del os.environ["MPQ_GYM_CACHE"]
        else:
            os.environ["MPQ_GYM_CACHE"] = previous
    return root, numbers


def _copy(clean_root: Path, dest: Path, monkeypatch) -> Path:
    cache = dest / "cache"
    shutil.copytree(clean_root, cache)
    monkeypatch.setenv("MPQ_GYM_CACHE", str(cache))
    return cache


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip64":
        mid = len(data) // 2
        data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(bytes(data[:len(data) // 2]))
    elif how == "header":
        data[20:28] = bytes(b ^ 0x55 for b in data[20:28])
        path.write_bytes(bytes(data))
    elif how == "foreign_pickle":  # a readable torch file of the wrong object, without our header
        torch.save({"x": 1}, path)
    elif how == "wrong_structure":  # a *valid* cache file (good checksum) holding the wrong object
        save_atomic({"x": 1}, path)
    elif how == "renamed_entry":  # a valid cache file of another entry copied under this name
        other = path.with_name("other-" + path.name)
        save_atomic(torch.zeros(3), other)
        os.replace(other, path)
    else:
        raise ValueError(how)


def _only(cache: Path, folder: str) -> list[Path]:
    files = sorted((cache / folder).glob("*.pt"))
    assert files, f"no cache files under {folder}"
    return files


#: every damage on every kind; AdaRound files are plain tensors like fp32_outputs, so they get the three
#: damages that differ for them (the other three are covered on fp32_outputs)
CASES = [(kind, how) for kind in ("digits", "quant", "fp32_outputs", "sensitivity") for how in DAMAGE] + [
    ("adaround", how) for how in ("flip64", "truncate", "wrong_structure")]


@pytest.mark.parametrize("kind, how", CASES)
def test_damaged_cache_file_gives_the_clean_number(kind, how, clean, tmp_path, monkeypatch):
    clean_root, numbers = clean
    cache = _copy(clean_root, tmp_path, monkeypatch)
    damaged = _only(cache, kind)
    for path in damaged:
        _damage(path, how)
    uses = {"adaround": kind in ("adaround", "quant"), "sensitivity": kind == "sensitivity"}
    with pytest.warns(CacheIntegrityWarning) as record:
        again = _measure(**uses)
    expected = {k: v for k, v in numbers.items() if k in again}
    assert again == expected  # exactly the clean numbers: 0 wrong results
    messages = " ".join(str(w.message) for w in record)
    assert all(str(path) in messages for path in damaged)
    # the rebuilt file verifies again: no warning on the next run
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheIntegrityWarning)
        assert _measure(**uses) == expected


def test_restoring_a_damaged_fp32_file_keeps_the_right_sqnr(clean, tmp_path, monkeypatch):
    """The issue's case: damaged FP32 outputs must not leave a wrong sqnr_db in the SQLite store."""
    clean_root, numbers = clean
    cache = _copy(clean_root, tmp_path, monkeypatch)
    workload = get_workload("digits_cnn")
    names = ExactEvaluator(workload, store=ResultStore(None), progress=False).qmodel.layer_names
    config = uniform_config(names, Candidate(2, 4))
    saved = {p: p.read_bytes() for p in _only(cache, "fp32_outputs")}
    for path in saved:
        _damage(path, "flip64")
    with pytest.warns(CacheIntegrityWarning):
        damaged_run = ExactEvaluator(workload, progress=False).evaluate(config, "test")  # the default store
    assert damaged_run == numbers["W2A4"]
    for path, data in saved.items():
        path.write_bytes(data)
    assert ExactEvaluator(workload, progress=False).evaluate(config, "test") == numbers["W2A4"]


def test_stored_rows_from_another_fp32_reference_are_ignored(clean, tmp_path, monkeypatch):
    clean_root, numbers = clean
    _copy(clean_root, tmp_path, monkeypatch)
    workload = get_workload("digits_cnn")
    evaluator = ExactEvaluator(workload, progress=False)
    config = uniform_config(evaluator.qmodel.layer_names, Candidate(2, 4))
    key = evaluator._key(config, "test")
    entry, _ = evaluator._fp32_entry("test")
    # a row computed against other FP32 outputs (e.g. a damaged file read by an older version)
    evaluator.store.put(key, {**numbers["W2A4"], "sqnr_db": 0.0}, {entry: "0" * 64})
    fresh = ExactEvaluator(workload, progress=False)
    assert fresh.evaluate(config, "test") == numbers["W2A4"]
    assert fresh.forward_passes == 1  # recomputed, not looked up
    assert ExactEvaluator(workload, progress=False).store.get(key) == numbers["W2A4"]


def test_discarding_a_damaged_quantizer_cache_invalidates_its_rows(clean, tmp_path, monkeypatch):
    clean_root, numbers = clean
    cache = _copy(clean_root, tmp_path, monkeypatch)
    workload = get_workload("digits_cnn")
    evaluator = ExactEvaluator(workload, progress=False)
    config = uniform_config(evaluator.qmodel.layer_names, Candidate(2, 4))
    assert evaluator.evaluate(config, "test") == numbers["W2A4"]
    key = evaluator._key(config, "test")
    quant_file = evaluator.qmodel._cache_path
    assert quant_file in _only(cache, "quant")
    _, deps = evaluator.store.get_with_deps(key)
    assert f"quant/{quant_file.name}" in deps and any(k.startswith("fp32_outputs/") for k in deps)
    _damage(quant_file, "flip64")
    shutil.copy(cache / "evaluations.sqlite", tmp_path / "elsewhere.sqlite")  # a store no process has open
    with pytest.warns(CacheIntegrityWarning, match=quant_file.name):
        fresh = ExactEvaluator(workload, progress=False)  # finds the damage while loading its quantizers
    assert fresh.store.get(key) is None  # the rows computed from that entry are gone
    assert evaluator.store.get(key) is None  # also from the memory of a store that was open
    elsewhere = ResultStore(tmp_path / "elsewhere.sqlite")  # and from a store that reads the journal later
    assert elsewhere.get(key) is None
    assert fresh.evaluate(config, "test") == numbers["W2A4"] and fresh.forward_passes == 1


def _fake_imagenet(tmp_path: Path, **save: Any) -> tuple[Path, np.random.Generator]:
    """A small ImageFolder with 1000 class folders, 6 of them holding one random PNG; and the generator."""
    from PIL import Image
    root = tmp_path / "val"
    rng = np.random.default_rng(0)
    for c in range(1000):
        (root / f"n{c:08d}").mkdir(parents=True)
        if c < 6:
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / f"n{c:08d}" / "a.png", **save)
    return root, rng


def test_damaged_decoded_images_are_decoded_again(tmp_path, monkeypatch):
    """The ImageNet decoded-images cache (a small fake ImageFolder with 1000 class folders)."""
    from PIL import Image

    from mpq_gym.workloads.base import SplitSizes
    from mpq_gym.workloads.imagenet import ImagePreprocessing, load_imagenet_splits
    monkeypatch.setenv("MPQ_GYM_CACHE", str(tmp_path / "cache"))
    root, rng = _fake_imagenet(tmp_path)
    prep, sizes = ImagePreprocessing(resize=36, crop=32), SplitSizes(2, 2, 2)
    clean = {k: (s.inputs.clone(), s.targets.clone()) for k, s in load_imagenet_splits(root, prep, sizes).items()}
    (cache_file,) = (tmp_path / "cache" / "data").glob("*.pt")
    for how in DAMAGE:
        _damage(cache_file, how)
        with pytest.warns(CacheIntegrityWarning, match=cache_file.name):
            again = load_imagenet_splits(root, prep, sizes)
        assert all(torch.equal(again[k].inputs, x) and torch.equal(again[k].targets, y) for k, (x, y) in clean.items())


def test_an_image_replaced_by_one_of_the_same_size_is_decoded_again(tmp_path, monkeypatch):
    """The decoded-images cache is keyed by the files' bytes: a changed image of unchanged size is not served stale."""
    from PIL import Image

    from mpq_gym.workloads.base import SplitSizes
    from mpq_gym.workloads.imagenet import ImagePreprocessing, load_imagenet_splits
    monkeypatch.setenv("MPQ_GYM_CACHE", str(tmp_path / "cache"))
    root, rng = _fake_imagenet(tmp_path, compress_level=0)
    prep, sizes = ImagePreprocessing(resize=36, crop=32), SplitSizes(2, 2, 2)
    before = load_imagenet_splits(root, prep, sizes)
    image = root / "n00000000" / "a.png"
    size = image.stat().st_size
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(image, compress_level=0)  # same size
    assert image.stat().st_size == size
    after = load_imagenet_splits(root, prep, sizes)
    assert any(not torch.equal(before[k].inputs, after[k].inputs) for k in before)
    assert len(list((tmp_path / "cache" / "data").glob("*.pt"))) == 2


def test_load_cached_never_runs_a_planted_pickle(tmp_path, monkeypatch):
    """A cache file replaced by a pickle that would run code is discarded without being unpickled."""
    import pickle
    monkeypatch.setenv("MPQ_GYM_CACHE", str(tmp_path))
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "quant" / "x.pt"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.warns(CacheIntegrityWarning):
        assert load_cached(path) is None
    entry = save_atomic({"ok": torch.ones(1)}, path)  # even a verified file loads with weights_only=True
    data = bytearray(path.read_bytes())
    header, payload = bytes(data).split(b"\n", 1)
    torch.save(Evil(), tmp_path / "evil.pt")
    evil = (tmp_path / "evil.pt").read_bytes()
    from mpq_gym.cache import _digest
    forged = header.replace(entry.digest.encode(), _digest(entry.key, entry.lineage, evil).encode())
    path.write_bytes(forged + b"\n" + evil)
    with pytest.warns(CacheIntegrityWarning, match="does not load"):
        assert load_cached(path) is None
    assert not marker.exists() and not path.exists()


def test_concurrent_processes_share_one_cache_safely(tmp_path):
    """Several processes fill one cold cache at once: every one gets the clean number, none warns."""
    script = ("import warnings, json, sys\n"
              "from mpq_gym.errors import CacheIntegrityWarning\n"
              "warnings.simplefilter('error', CacheIntegrityWarning)\n"
              "from mpq_gym.workloads import get_workload\n"
              "from mpq_gym.evaluate.exact import ExactEvaluator\n"
              "from mpq_gym.config import Candidate, uniform_config\n"
              "e = ExactEvaluator(get_workload('digits_cnn'), progress=False)\n"
              "r = e.evaluate(uniform_config(e.qmodel.layer_names, Candidate(2, 4)), 'test')\n"
              "print(json.dumps(r))\n")
    env = {**os.environ, "MPQ_GYM_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    results = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(results) == 1
