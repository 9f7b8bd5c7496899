"""A network as a verified chain of stages, each taking what the stage before returned: one tensor, or a
tuple of tensors (e.g. a transformer's hidden states and attention mask), passed as its arguments.

Phase 1 (:mod:`mpq_gym.evaluate.sensitivity`) needs it: a configuration that changes only layers from
stage s on re-runs only stages s.. from a kept input of stage s. Three ways to find the stages; each is
checked against the model's real forward on an example input before it is accepted:

0. the stages the model declares itself: a method ``mpq_stages()`` returning (name, module) pairs (or
   None where it cannot), each module calling the model's own submodules (the Hugging Face wrappers of
   :mod:`mpq_gym.workloads.transformer_models` do: embeddings, each encoder layer's attention /
   intermediate / output, the pooling or head), checked also to call the quantizable layers the forward
   calls; a layer maps to the first stage that calls it;
1. the model's top-level modules (``nn.Sequential`` expanded), when they compose to its forward;
2. its ``torch.fx`` graph (Conv2d, Linear and every hooked module kept as one call, so each stage calls the
   very module objects the quantizer hooks), cut where a single batched tensor is live and nothing later
   writes into it, with at least one quantizable layer per stage.

A stage's input and output is an :data:`Activation`: a tensor, or a tuple of tensors. Tuples are kept per
batch (:meth:`StageChain.run_batched` returns a list of them): batches may differ in shapes (a text batch
trimmed to its own length), so they cannot be concatenated.

A model that is neither is one stage (correct, only slower), and :attr:`StageChain.fallback_reason` says
why (e.g. data-dependent control flow that ``torch.fx`` cannot trace).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence, Union

import torch
from torch import fx, nn

from mpq_gym.quant.graph import QUANTIZABLE_TYPES

#: Stage lists, as (name, module) pairs.
Stages = list[tuple[str, nn.Module]]
#: What a stage takes and returns: a tensor, or a tuple of tensors (passed to the next stage as its arguments).
Activation = Union[torch.Tensor, tuple[torch.Tensor, ...]]
#: What :meth:`StageChain.run_batched` takes and returns: one batched tensor, or one activation per batch.
Batched = Union[torch.Tensor, list[Activation]]


def clone_activation(x: Any) -> Any:
    """A copy of a tensor, of a tuple of them or of a per-batch list (a stage may write into its input)."""
    if isinstance(x, torch.Tensor):
        return x.clone()
    return type(x)(clone_activation(v) for v in x)


def activation_bytes(x: Any) -> int:
    """Bytes held by a tensor, a tuple of them or a per-batch list (the sum over its tensors)."""
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    return sum(activation_bytes(v) for v in x)


class _NoChain(Exception):
    """The model cannot be cut this way; the message is the reason."""


def _top_level_stages(model: nn.Module, prefix: str = "") -> Stages:
    """The model's children in definition order, ``nn.Sequential`` containers expanded."""
    stages = []
    for name, child in model.named_children():
        full = f"{prefix}{name}"
        stages += _top_level_stages(child, full + ".") if isinstance(child, nn.Sequential) else [(full, child)]
    return stages


def _run(stages: Sequence[tuple[str, nn.Module]], x: Activation) -> Activation:
    for _, module in stages:
        if isinstance(x, tuple):
            x = module(*x)
            continue
        if isinstance(module, nn.Linear) and x.ndim > 2:
            x = x.flatten(1)
        x = module(x)
    return x


def _reproduces(stages: Stages, example: torch.Tensor, reference: torch.Tensor) -> bool:
    """Whether the stages, chained, give ``reference`` on ``example`` (a stage that rejects its input: no)."""
    try:
        out = _run(stages, example)
    except Exception:  # noqa: BLE001 - a module that rejects the chained input is simply not a chain
        return False
    return (isinstance(out, torch.Tensor) and out.shape == reference.shape
            and torch.allclose(out, reference, rtol=1e-5, atol=1e-6))


# --------------------------------------------------------------------------------------------- torch.fx
class _LeafTracer(fx.Tracer):
    """Keeps Conv2d / Linear and every module with forward hooks or pre-hooks as one ``call_module``: the
    quantizer acts through pre-hooks on those very objects and swaps their weights."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (isinstance(m, QUANTIZABLE_TYPES) or bool(m._forward_hooks or m._forward_pre_hooks)
                or super().is_leaf_module(m, module_qualified_name))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _trace(model: nn.Module) -> fx.Graph:
    """The model's fx graph, its optional forward arguments fixed at their defaults."""
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    empty = inspect.Parameter.empty
    required = [p.name for p in params if p.default is empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if required:
        raise _NoChain(f"forward takes more inputs than one tensor ({', '.join(required)} have no default)")
    concrete = {p.name: p.default for p in params if p.default is not empty}
    try:
        return _LeafTracer().trace(model, concrete_args=concrete or None)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: not traceable, fall back
        raise _NoChain(f"torch.fx cannot trace {type(model).__name__}.forward ({type(exc).__name__}: "
                       f"{_first_line(exc)}): data-dependent control flow or values read from tensors") from exc


def _free_nodes(nodes: list[fx.Node]) -> set[fx.Node]:
    """Values that do not depend on the input (parameters, fixed optional arguments and what is computed
    from them only): each stage recomputes those it uses, so they are never "live" across a cut. A call
    whose result nobody uses (an assert, an in-place update) is not free: it stays where it was."""
    first = next(n for n in nodes if n.op == "placeholder")
    free: set[fx.Node] = set()
    for n in nodes:
        fixed_argument = n.op == "placeholder" and n is not first
        computed = n.op in ("call_function", "call_method") and bool(n.users)
        if n.op == "get_attr" or fixed_argument or (computed and all(a in free for a in n.all_input_nodes)):
            free.add(n)
    return free


def _single_live(nodes: list[fx.Node], free: set[fx.Node]) -> dict[fx.Node, fx.Node]:
    """node -> v where v is the one input-dependent value computed so far that a later node uses."""
    pos = {n: i for i, n in enumerate(nodes)}
    last = {n: max((pos[u] for u in n.users), default=-1) for n in nodes}
    live: set[fx.Node] = set()
    single: dict[fx.Node, fx.Node] = {}
    for i, n in enumerate(nodes):
        if n.op == "output":
            break
        live.difference_update(a for a in n.all_input_nodes if last[a] <= i)
        if n not in free and last[n] > i:
            live.add(n)
        if len(live) == 1 and next(iter(live)).op != "placeholder":
            single[n] = next(iter(live))
    return single


class _Probe(fx.Interpreter):
    """Runs the graph on the example input and keeps, at each candidate cut, the live value and its version
    counter: a cut is usable only where the value is a batched tensor that no later node writes into."""

    def __init__(self, module: fx.GraphModule, single: dict[fx.Node, fx.Node], batch: int) -> None:
        super().__init__(module, garbage_collect_values=True)
        self.single, self.batch = single, batch
        self.seen: dict[fx.Node, tuple[torch.Tensor, int]] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        v = self.single.get(n)
        if v is not None:
            value = result if v is n else self.env[v]
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == self.batch:
                self.seen[n] = (value, value._version)
        return result

    def usable_cuts(self) -> set[fx.Node]:
        """The cuts whose value was still intact when the graph finished."""
        return {n for n, (value, version) in self.seen.items() if value._version == version}


def _layers_called(model: nn.Module) -> dict[str, list[str]]:
    """Qualified module name -> the quantizable layers it is or contains (names as ``named_modules`` gives)."""
    names = [name for name, m in model.named_modules() if isinstance(m, QUANTIZABLE_TYPES)]
    return {prefix: [n for n in names if n == prefix or n.startswith(prefix + ".")] if prefix else names
            for prefix, _ in model.named_modules()}


def _choose_cuts(nodes: list[fx.Node], usable: set[fx.Node], layers_of: dict[str, list[str]]) -> list[int]:
    """Positions to cut after: the first usable cut once at least one quantizable layer ran since the last
    one, and none whose tail would hold no quantizable layer."""
    chosen, pending = [], 0
    for i, n in enumerate(nodes):
        if n.op == "call_module":
            pending += len(layers_of.get(str(n.target), []))
        if n in usable and pending:
            chosen.append(i)
            pending = 0
    if chosen and not pending:
        chosen.pop()
    return chosen


def _segment(model: nn.Module, nodes: list[fx.Node], source: fx.Node, result: Any,
             free: set[fx.Node]) -> fx.GraphModule:
    """The nodes as a module of one tensor (the value of ``source``) returning ``result``; the copied
    ``call_module`` nodes refer to the model's own module objects (fx assigns them, never copies them)."""
    graph = fx.Graph()
    env: dict[fx.Node, Any] = {source: graph.placeholder("x")}
    inside = set(nodes)

    def value(n: fx.Node) -> Any:
        if n not in env:
            if n not in free and n not in inside:
                raise _NoChain(f"internal: value {n.name} crosses a cut")
            env[n] = (n.args[0] if n.args else None) if n.op == "placeholder" else graph.node_copy(n, value)
        return env[n]

    for n in nodes:
        if n not in free and n.op not in ("placeholder", "output"):
            value(n)
    graph.output(fx.map_arg(result, value))
    return fx.GraphModule(model, graph)


def _stage_name(called: list[str], k: int) -> str:
    """An fx stage's name: its first and last quantizable layer (``stage<k>`` if it calls none)."""
    if not called:
        return f"stage{k}"
    return called[0] if called[0] == called[-1] else f"{called[0]}..{called[-1]}"


def _traced_stages(model: nn.Module, example: torch.Tensor) -> tuple[Stages, dict[str, int]]:
    """Stages cut from the model's fx graph, and layer name -> the earliest stage that calls it."""
    graph = _trace(model)
    nodes = list(graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if any(not n.args for n in placeholders[1:]):
        raise _NoChain("forward takes more inputs than one tensor (a *args / **kwargs parameter)")
    free = _free_nodes(nodes)
    probe = _Probe(fx.GraphModule(model, graph), _single_live(nodes, free), len(example))
    with torch.inference_mode(False), torch.no_grad():  # inference tensors keep no version counter
        probe.run(example.clone())
    layers_of = _layers_called(model)
    cuts = _choose_cuts(nodes, probe.usable_cuts(), layers_of)
    if not cuts:
        raise _NoChain("no point between quantizable layers where a single tensor is live (e.g. an attention "
                       "mask or the input itself is used until the end)")
    bounds = [-1, *cuts, len(nodes) - 1]
    stages, layers = [], {}
    for k, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        part = nodes[lo + 1:hi + 1]
        source = placeholders[0] if lo < 0 else probe.single[nodes[lo]]
        result = nodes[-1].args[0] if hi == len(nodes) - 1 else probe.single[nodes[hi]]
        called = [name for n in part if n.op == "call_module" for name in layers_of.get(str(n.target), [])]
        for name in called:
            layers.setdefault(name, k)
        stages.append((_stage_name(called, k), _segment(model, part, source, result, free)))
    return stages, layers


# --------------------------------------------------------------------------------------------- declared
def _called_layers(model: nn.Module, run: Any) -> tuple[list[str], Any]:
    """(the quantizable layers of ``model`` that ``run()`` calls, in order of first call, named as
    ``named_modules`` names them; what ``run()`` returned): recorded by forward pre-hooks, removed again."""
    calls: dict[str, None] = {}
    handles = [module.register_forward_pre_hook(lambda m, args, name=name: calls.setdefault(name, None))
               for name, module in model.named_modules() if isinstance(module, QUANTIZABLE_TYPES)]
    try:
        result = run()
    finally:
        for handle in handles:
            handle.remove()
    return list(calls), result


def _declared_stages(model: nn.Module, example: torch.Tensor, reference: torch.Tensor) -> tuple[Stages, dict[str, int]]:
    """The stages ``model.mpq_stages()`` declares, verified: chained on ``example`` they give the forward's
    output and call the quantizable layers the forward calls; layer name -> the first stage that calls it."""
    try:
        stages = model.mpq_stages()
    except Exception as exc:  # noqa: BLE001 - a model that cannot declare its stages says why
        raise _NoChain(f"its mpq_stages() failed ({type(exc).__name__}: {_first_line(exc)})") from exc
    if not stages:
        raise _NoChain("its mpq_stages() declares no stages")
    stages, layers, x = list(stages), {}, example
    try:
        for k, stage in enumerate(stages):
            called, x = _called_layers(model, lambda: _run([stage], x))
            for name in called:
                layers.setdefault(name, k)
    except Exception as exc:  # noqa: BLE001 - a stage that rejects the chained input: not a chain
        raise _NoChain(f"the stages its mpq_stages() declares do not run on the example input "
                       f"({type(exc).__name__}: {_first_line(exc)})") from exc
    if not (isinstance(x, torch.Tensor) and x.shape == reference.shape
            and torch.allclose(x, reference, rtol=1e-5, atol=1e-6)):
        raise _NoChain("the stages its mpq_stages() declares do not reproduce its forward on the example input")
    real, _ = _called_layers(model, lambda: model(example))
    if set(layers) != set(real):
        differ = sorted(set(real) ^ set(layers))
        raise _NoChain(f"the stages its mpq_stages() declares call other layers than its forward ({differ[:3]})")
    return stages, layers


# --------------------------------------------------------------------------------------------- the chain
@dataclass
class StageChain:
    """(name, module) stages whose composition is the model's forward; ``len(chain) == 1`` when the model is
    not a chain (the fallback: the whole model is one stage, and ``fallback_reason`` says why).

    ``method`` is how the stages were found: ``"declared"`` (the model's ``mpq_stages()``), ``"modules"``
    (top-level modules), ``"fx"`` (cut from the ``torch.fx`` graph) or ``"whole"`` (the fallback); for
    ``declared`` and ``fx``, ``layers`` maps each quantizable layer to its stage.
    """

    stages: Stages
    layers: dict[str, int] | None = None
    fallback_reason: str | None = None
    method: str = "modules"

    @classmethod
    def whole(cls, model: nn.Module, reason: str) -> "StageChain":
        """The one-stage fallback, with the reason it was taken."""
        return cls([("", model)], fallback_reason=reason, method="whole")

    @classmethod
    @torch.inference_mode()
    def build(cls, model: nn.Module, example_input: torch.Tensor) -> "StageChain":
        """The stages the model declares (``mpq_stages()``), else its top-level modules (``nn.Sequential``
        expanded), else stages cut from its ``torch.fx`` graph, each accepted only if it composes to the
        forward on ``example_input``; else one stage with ``fallback_reason`` set."""
        reference = model(example_input)
        if not isinstance(reference, torch.Tensor):
            return cls.whole(model, f"the model returns a {type(reference).__name__}, not one tensor")
        declared_reason = ""
        if callable(getattr(model, "mpq_stages", None)):
            try:
                stages, layers = _declared_stages(model, example_input, reference)
                return cls(stages, layers, method="declared")
            except _NoChain as exc:
                declared_reason = f"{exc}; "
        top = _top_level_stages(model)
        if top and _reproduces(top, example_input, reference):
            return cls(top)
        try:
            stages, layers = _traced_stages(model, example_input)
        except _NoChain as exc:
            return cls.whole(model, declared_reason + str(exc))
        except Exception as exc:  # noqa: BLE001 - the traced graph failed to run: not a chain we can use
            return cls.whole(model, f"{declared_reason}its fx graph does not run on the example input "
                                    f"({type(exc).__name__}: {_first_line(exc)})")
        if not _reproduces(stages, example_input, reference):
            return cls.whole(model, f"{declared_reason}the stages cut from its fx graph do not reproduce its "
                                    "forward on the example input")
        return cls(stages, layers, method="fx")

    def __len__(self) -> int:
        return len(self.stages)

    @property
    def names(self) -> list[str]:
        """Stage names ("" for the whole-model fallback; "first layer..last layer" for fx stages; the module
        qualified name for top-level and, by the models' convention, declared stages)."""
        return [name for name, _ in self.stages]

    def stage_of(self, layer: str) -> int:
        """The stage that holds (for fx stages: first calls) the layer named ``layer``. A layer called in
        several stages (shared weights) maps to the earliest, so a suffix re-run from there covers every call."""
        if self.method == "whole":
            return 0
        if self.layers is not None:
            if layer in self.layers:
                return self.layers[layer]
        else:
            for i, (name, _) in enumerate(self.stages):
                if layer == name or layer.startswith(name + "."):
                    return i
        raise ValueError(f"layer {layer!r} is in no stage: name it as dict(model.named_modules()) does, "
                         f"for a Conv2d / Linear that runs in the forward")

    def run(self, x: Activation, start: int = 0, stop: int | None = None) -> Activation:
        """Stages ``start`` to ``stop`` (exclusive; default: to the end) on ``x``, the input of stage ``start``
        (a tuple is passed as the stage's arguments)."""
        return _run(self.stages[start:stop], x)

    def run_batched(self, x: Batched, batch_size: int, start: int = 0, stop: int | None = None) -> Batched:
        """:meth:`run` per batch: ``x`` is one batched tensor (cut into batches of ``batch_size``) or a list of
        per-batch activations (as this returns; ``batch_size`` is then unused). The results are concatenated
        when they are all tensors of one shape but the batch (as :meth:`run` on all of ``x`` would give);
        otherwise (tuples, or tensors of per-batch lengths) they come back as the per-batch list."""
        parts = [x[i:i + batch_size] for i in range(0, len(x), batch_size)] if isinstance(x, torch.Tensor) else x
        out = [self.run(part, start, stop) for part in parts]
        if out and all(isinstance(o, torch.Tensor) and o.ndim > 0 and o.shape[1:] == out[0].shape[1:] for o in out):
            return torch.cat(out)
        return out
