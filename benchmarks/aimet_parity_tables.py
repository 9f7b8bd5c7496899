"""Markdown tables from the parity store (docs/data/aimet_parity.json).

    python -m benchmarks.aimet_parity_tables v1 w_tfe_bc v2                      # parity + ablation tables
    python -m benchmarks.aimet_parity_tables --mixed docs/data/aimet_configs_a8.json v2
    python -m benchmarks.aimet_parity_tables --amp docs/data/aimet_configs_amp.json v2

``--mixed``: mpq-gym's ILP / greedy answers over {W4A8, W8A8} at each budget, scored by both tools.
``--amp``: the end-to-end comparison with AIMET's AMP Pareto points (the issue's figures, AIMET's BOPs
accounting; mpq-gym searched at r x 0.9603 in its own accounting, see benchmarks.aimet_configs).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

CONFIGS = ["W8A16", "W8A8", "W6A8", "W4A8", "issue"]
SPLITS = (("main", 500), ("heldout", 436))
#: AIMET 2.42 AMP's Pareto points on the first 500 images (issue 19 / 17): r (AIMET's BOPs) -> top-1
AIMET_AMP = {0.439: 87.0, 0.398: 87.2, 0.365: 85.8, 0.343: 85.4}


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def delta(m: float | None, a: float | None) -> str:
    return "-" if m is None or a is None else f"{m - a:+.1f}"


def parity(store: dict, variants: list[str]) -> list[str]:
    out = []
    for split, n in SPLITS:
        out.append(f"\n**{split}** ({n} images; FP32 {store.get(f'fp32|{split}', float('nan')):.1f})\n")
        out += ["| config | AIMET 2.42 tf_enhanced | " + " | ".join(f"mpq `{v}` | Δ" for v in variants) + " |",
                "|" + "---|" * (2 + 2 * len(variants))]
        for c in CONFIGS:
            a = store.get(f"aimet:tf_enhanced|{c}|{split}")
            cells = []
            for v in variants:
                m = store.get(f"mpq:{v}|{c}|{split}")
                cells += [fmt(m), delta(m, a)]
            out.append(f"| {c} | {fmt(a)} | " + " | ".join(cells) + " |")
    out.append("\n**Ablation** (main split, 500 images; '-' = not run)\n")
    names = sorted({k.split("|")[0][4:] for k in store if k.startswith("mpq:")})
    out += ["| mpq-gym variant | " + " | ".join(CONFIGS) + " |", "|---" * (1 + len(CONFIGS)) + "|"]
    for v in names:
        out.append(f"| `{v}` | " + " | ".join(fmt(store.get(f"mpq:{v}|{c}|main")) for c in CONFIGS) + " |")
    out.append("| AIMET tf_enhanced | " + " | ".join(fmt(store.get(f"aimet:tf_enhanced|{c}|main"))
                                                   for c in CONFIGS) + " |")
    return out


def mixed(store: dict, configs: dict, variant: str) -> list[str]:
    out = ["| configuration | BOPs ratio (mpq-gym) | AIMET main | mpq main | Δ | AIMET heldout | mpq heldout | Δ |",
           "|---|---|---|---|---|---|---|---|"]
    for name, entry in configs.items():
        if name.startswith("best") or name.startswith("greedy_per_cost"):
            continue
        row = [f"`{name}`", f"{entry['bops_ratio']:.4f}"]
        for split, _ in SPLITS:
            a, m = store.get(f"aimet:tf_enhanced|{name}|{split}"), store.get(f"mpq:{variant}|{name}|{split}")
            row += [fmt(a), fmt(m), delta(m, a)]
        out.append("| " + " | ".join(row) + " |")
    return out


def amp(store: dict, configs: dict, variant: str) -> list[str]:
    out = ["| AIMET r | AIMET AMP (main) | policy | mpq-gym r | search top-1 | mpq main | AIMET-sim main | "
           "mpq heldout | AIMET-sim heldout |", "|---|---|---|---|---|---|---|---|---|"]
    for r, aimet in AIMET_AMP.items():
        best = configs.get(f"best@{r:g}", {}).get("policy")
        for policy in ("ilp", "greedy", "greedy_per_cost"):
            name = f"{policy}@{r:g}"
            entry = configs.get(name)
            if entry is None or f"mpq:{variant}|{name}|main" not in store:  # not evaluated
                continue
            label = f"**{policy}** (best on search)" if policy == best else policy
            cells = [f"{r:g}", f"{aimet:.1f}", label, f"{entry['bops_ratio']:.4f}", f"{entry['search_top1']:.2f}"]
            for split, _ in SPLITS:
                cells += [fmt(store.get(f"mpq:{variant}|{name}|{split}")),
                          fmt(store.get(f"aimet:tf_enhanced|{name}|{split}"))]
            out.append("| " + " | ".join(cells) + " |")
    return out


def main(argv: list[str]) -> None:
    path = Path("docs/data/aimet_parity.json")
    if argv[:1] == ["--store"]:
        path, argv = Path(argv[1]), argv[2:]
    store = {k: float(v) for k, v in json.loads(path.read_text()).items()}
    if argv[:1] in (["--mixed"], ["--amp"]):
        kind, configs, variant = argv[0], json.loads(Path(argv[1]).read_text()), (argv[2:] or ["v2"])[0]
        print("\n".join(mixed(store, configs, variant) if kind == "--mixed" else amp(store, configs, variant)))
        return
    print("\n".join(parity(store, argv or ["v2"])))


if __name__ == "__main__":
    main(sys.argv[1:])
