"""The architecture, enforced: imports run one way between layers, no module imports itself in a loop,
and the wheel's package list names every package folder."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package it installs as (pyproject's package-dir)
SOURCES = {"mpq_gym": "mpq_gym", "agents": "mpq_gym.agents", "baselines": "mpq_gym.baselines"}
#: lowest first: unit -> the modules and packages in it. A module may import from a lower layer or from its
#: own unit (where the no-cycle test keeps the order one way), never up or sideways.
LAYERS: list[dict[str, tuple[str, ...]]] = [
    {"core": ("mpq_gym.errors", "mpq_gym.allocator", "mpq_gym.cache", "mpq_gym.config", "mpq_gym.candidates", "mpq_gym.budget",
              "mpq_gym.metrics", "mpq_gym.tracking", "mpq_gym.markdown", "mpq_gym.provenance", "mpq_gym.devices")},
    {"workloads": ("mpq_gym.workloads",), "quant": ("mpq_gym.quant",)},
    {"evaluate": ("mpq_gym.evaluate",), "cost": ("mpq_gym.cost",)},
    {"problem": ("mpq_gym.problem", "mpq_gym.tabular", "mpq_gym.search", "mpq_gym.scores", "mpq_gym.workers")},
    {"envs": ("mpq_gym.envs",)},
    {"registration": ("mpq_gym",)},  # `import mpq_gym` registers the env ids
    {"agents": ("mpq_gym.agents",), "baselines": ("mpq_gym.baselines",)},
    {"bench": ("mpq_gym.bench",)},
    {"cli": ("mpq_gym.cli",)},
]


def unit(module: str) -> str:
    """The unit a module belongs to (by the longest listed prefix)."""
    best, best_unit = "", ""
    for layer in LAYERS:
        for name, prefixes in layer.items():
            for prefix in prefixes:
                if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                    best, best_unit = prefix, name
    assert best, f"module {module} is in no layer: add it to LAYERS"
    return best_unit


def level(module: str) -> int:
    u = unit(module)
    return next(i for i, layer in enumerate(LAYERS) if u in layer)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def module_imports() -> dict[str, set[str]]:
    """module -> project modules it imports anywhere (functions included; TYPE_CHECKING blocks and
    ``__main__`` entry shims excluded)."""
    graph: dict[str, set[str]] = {}
    for folder, package in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if parts and parts[-1] == "__main__":
                continue
            name = ".".join([package, *parts])
            tree = ast.parse(path.read_text())
            skip = _type_checking_lines(tree)
            targets: set[str] = set()
            for node in ast.walk(tree):
                if getattr(node, "lineno", None) in skip:
                    continue
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found = [node.module]
                elif isinstance(node, ast.ImportFrom) and node.level:
                    raise AssertionError(f"{name}: use absolute imports (from mpq_gym... import ...)")
                elif isinstance(node, ast.Import):
                    found = [a.name for a in node.names]
                else:
                    continue
                for target in found:
                    if target.split(".")[0] in ("agents", "baselines"):
                        raise AssertionError(f"{name} imports {target}: import it as mpq_gym.{target}")
                    if target.split(".")[0] == "mpq_gym":
                        targets.add(target)
            graph[name] = targets
    return graph


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that go up a layer or sideways into another unit of the same layer."""
    bad = []
    for module, targets in graph.items():
        for target in targets:
            if unit(target) == unit(module):
                continue
            if level(target) >= level(module):
                bad.append(f"{module} ({unit(module)}, layer {level(module)}) imports {target} "
                           f"({unit(target)}, layer {level(target)})")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            w = w if w in graph else next((m for m in graph if w.startswith(m + ".")), w)
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_imports_run_one_way() -> None:
    assert layer_violations(module_imports()) == []


def test_no_import_cycles() -> None:
    graph = module_imports()
    # a package's __init__ re-exporting its own modules is not a loop of the design
    graph = {m: {t for t in ts if not (m.startswith(t + ".") and unit(m) == unit(t))} for m, ts in graph.items()}
    assert cycles(graph) == []


def test_the_check_catches_a_reversed_import() -> None:
    graph = module_imports()
    graph["mpq_gym.config"] = graph["mpq_gym.config"] | {"mpq_gym.envs.env"}        # core -> envs: up
    graph["mpq_gym.quant.model"] = graph["mpq_gym.quant.model"] | {"mpq_gym.workloads.base"}  # sideways
    assert layer_violations(graph) == sorted([
        "mpq_gym.config (core, layer 0) imports mpq_gym.envs.env (envs, layer 4)",
        "mpq_gym.quant.model (quant, layer 1) imports mpq_gym.workloads.base (workloads, layer 1)"])
    graph["mpq_gym.bench.runner"] = graph["mpq_gym.bench.runner"] | {"mpq_gym.bench.parallel"}
    graph["mpq_gym.bench.parallel"] = graph["mpq_gym.bench.parallel"] | {"mpq_gym.bench.runner"}
    assert ["mpq_gym.bench.parallel", "mpq_gym.bench.runner"] in cycles(graph)


def test_wheel_package_list_names_every_package() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(mpq_gym[\w.]*)"', text.split("packages = [", 1)[1].split("]", 1)[0]))
    found = set()
    for folder, package in SOURCES.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([package, *parts]))
    assert listed == found


@pytest.mark.parametrize("module", ["mpq_gym.search", "mpq_gym.evaluate.sensitivity"])
def test_layers_take_a_pool_by_interface(module: str) -> None:
    """Sensitivity and the search context get parallel workers as a small interface, not Ray's pool."""
    assert not any(t.startswith("mpq_gym.bench") for t in module_imports()[module])
