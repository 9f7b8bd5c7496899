"""Learning curves of several ``benchmarks.agents_table`` result files in one figure (best normalized score
so far against wall time and against episodes, one colour per algorithm tag).

Example::

    python -m benchmarks.plot_agents --out docs/img/agents_minilm_project.png --title "MiniLM, r = 0.15" \\
        docs/data/dense/minilm_5min.ppo.json docs/data/project/minilm.ppo.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.agents_table import plot


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="agents_table --out files")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--title", default="")
    ap.add_argument("--ymin", type=float, default=None, help="lower end of the score axis, e.g. 0.95")
    args = ap.parse_args(argv)
    missing = [p for p in args.results if not Path(p).is_file()]
    if missing:
        ap.error(f"no such results file: {missing[0]} (give benchmarks.agents_table --out files)")
    runs = [run for p in args.results for run in json.loads(Path(p).read_text())["runs"]]
    plot(runs, list(dict.fromkeys(r["algo"] for r in runs)), Path(args.out), args.title, args.ymin)
    print(f"wrote {args.out} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
