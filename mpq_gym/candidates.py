"""Candidate sets and quantizer groups (layers that must always share one choice)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from mpq_gym.config import Candidate, Config, check_format, parse_candidate
from mpq_gym.errors import ConfigError

#: The hardware-style set of the AIMET mixed-precision paper.
HARDWARE_CANDIDATES: tuple[Candidate, ...] = (Candidate(4, 8), Candidate(8, 8), Candidate(8, 16))
#: The expanded set of the same paper.
EXPANDED_CANDIDATES: tuple[Candidate, ...] = tuple(parse_candidate(c) for c in (
    "W4A4", "W4A6", "W6A4", "W6A6", "W8A6", "W6A8", "W8A8", "W8A16"))
NAMED_CANDIDATE_SETS = {"hardware": HARDWARE_CANDIDATES, "expanded": EXPANDED_CANDIDATES}


def with_formats(candidates: Sequence[Candidate], formats: Sequence[str]) -> list[Candidate]:
    """Each candidate in each number format (formats vary fastest): the format becomes a search dimension."""
    return [c._replace(fmt=check_format(f)) for c in candidates for f in formats]


def parse_candidates(spec: str | Sequence[Candidate] | Sequence[str]) -> list[Candidate]:
    """``"W4A8,W8A8,W8A16"``, ``"hardware"``, ``"expanded"``, ``"W4A8-ant,W8A8"`` or a sequence of candidates,
    without repeats. ``<set>@<format>+<format>...`` crosses a set with number formats, e.g.
    ``"hardware@int+ant"`` = W4A8, W4A8-ant, W8A8, W8A8-ant, W8A16, W8A16-ant."""
    if isinstance(spec, str):
        base, _, formats = spec.partition("@")
        if formats:
            return parse_candidates(with_formats(parse_candidates(base), formats.split("+")))
        if spec in NAMED_CANDIDATE_SETS:
            return list(NAMED_CANDIDATE_SETS[spec])
        spec = [s for s in spec.split(",") if s.strip()]
    candidates = [c if isinstance(c, Candidate) else parse_candidate(str(c)) for c in spec]
    if not candidates:
        raise ConfigError("the candidate set is empty: give at least one W<w>A<a>")
    if len(set(candidates)) != len(candidates):
        raise ConfigError(f"the candidate set repeats a candidate: {[str(c) for c in candidates]}")
    return candidates


@dataclass(frozen=True)
class QuantizerGroup:
    """Layers flipped together; named after its first layer in execution order."""

    name: str
    layers: tuple[str, ...]


def make_groups(layer_names: Sequence[str], tied: Sequence[Sequence[str]] = ()) -> list[QuantizerGroup]:
    """One group per user tie, one singleton group per remaining layer, ordered by first layer."""
    position = {name: i for i, name in enumerate(layer_names)}
    owner: dict[str, int] = {}
    for t, group in enumerate(tied):
        for name in group:
            if name not in position:
                raise ConfigError(f"tied group {list(group)} names unknown layer {name!r}; "
                                  "list the layers with `mpq-gym layers --workload NAME`")
            if name in owner:
                raise ConfigError(f"layer {name!r} is in two tied groups; merge them into one")
            owner[name] = t
    members: dict[str, tuple[str, ...]] = {}
    for name in layer_names:
        if name in owner:
            tie = tuple(sorted(tied[owner[name]], key=position.__getitem__))
            members.setdefault(tie[0], tie)
        else:
            members[name] = (name,)
    return [QuantizerGroup(first, layers) for first, layers in sorted(members.items(), key=lambda kv: position[kv[0]])]


def config_from_choices(groups: Sequence[QuantizerGroup], candidates: Sequence[Candidate],
                        choices: Sequence[int]) -> Config:
    """Configuration with group ``g`` at ``candidates[choices[g]]`` (layers in execution order)."""
    if len(choices) != len(groups):
        raise ConfigError(f"{len(choices)} choices for {len(groups)} quantizer groups")
    config = {}
    for group, choice in zip(groups, choices):
        if not 0 <= int(choice) < len(candidates):
            raise ConfigError(f"choice {choice} is out of range for {len(candidates)} candidates")
        for layer in group.layers:
            config[layer] = candidates[int(choice)]
    return config
