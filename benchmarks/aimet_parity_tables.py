"""Markdown tables from the parity store: the parity table (AIMET vs mpq-gym variants, both splits) and the
ablation table (every mpq-gym variant measured, main split).

    python -m benchmarks.aimet_parity_tables [--store docs/data/aimet_parity.json] default w_tfe_bc w_outmse_g3_bc
"""
import json
import sys
from pathlib import Path

args = sys.argv[1:]
path = Path("docs/data/aimet_parity.json")
if args[:1] == ["--store"]:
    path, args = Path(args[1]), args[2:]
store = json.loads(path.read_text())
CONFIGS = ["W8A16", "W8A8", "W6A8", "W4A8", "issue"]
variants = args or ["default"]


def get(tool, c, s):
    v = store.get(f"{tool}|{c}|{s}")
    return None if v is None else float(v)


def fmt(v):
    return "-" if v is None else f"{v:.1f}"


out = []
for split, n in (("main", 500), ("heldout", 436)):
    out.append(f"\n**{split}** ({n} images; FP32 {store.get(f'fp32|{split}', float('nan')):.1f})\n")
    head = "| config | AIMET 2.42 tf_enhanced | " + " | ".join(f"mpq `{v}` | Δ" for v in variants) + " |"
    out += [head, "|" + "---|" * (2 + 2 * len(variants))]
    for c in CONFIGS:
        a = get("aimet:tf_enhanced", c, split)
        cells = []
        for v in variants:
            m = get(f"mpq:{v}", c, split)
            cells += [fmt(m), "-" if a is None or m is None else f"{m - a:+.1f}"]
        out.append(f"| {c} | {fmt(a)} | " + " | ".join(cells) + " |")
out.append("\n**Ablation** (main split, 500 images; '-' = not run)\n")
names = sorted({k.split("|")[0][4:] for k in store if k.startswith("mpq:")})
out += ["| mpq-gym variant | " + " | ".join(CONFIGS) + " |", "|---" * (1 + len(CONFIGS)) + "|"]
for v in names:
    out.append(f"| `{v}` | " + " | ".join(fmt(get(f"mpq:{v}", c, "main")) for c in CONFIGS) + " |")
out.append("| AIMET tf_enhanced | " + " | ".join(fmt(get("aimet:tf_enhanced", c, "main")) for c in CONFIGS) + " |")
print("\n".join(out))
