"""Quantization configurations: a candidate (weight bits, activation bits) per layer."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

from mpq_gym.errors import ConfigError

#: Bit-widths the fake-quant core supports; 32 means "left in floating point".
SUPPORTED_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 16, 32)
FLOAT_BITS = 32


class Candidate(NamedTuple):
    """One layer's choice: weight bits and activation (input) bits."""

    w_bits: int
    a_bits: int

    def __str__(self) -> str:
        return f"W{self.w_bits}A{self.a_bits}"


#: A configuration maps every quantizable layer name to its candidate.
Config = dict[str, Candidate]

FP32 = Candidate(FLOAT_BITS, FLOAT_BITS)
_CANDIDATE_RE = re.compile(r"^W(\d+)A(\d+)$", re.IGNORECASE)


def check_bits(bits: int, what: str = "bit-width") -> int:
    """Return ``bits`` as int, or raise :class:`ConfigError` naming the supported values."""
    if isinstance(bits, bool) or not isinstance(bits, (int, float)) or int(bits) != bits \
            or int(bits) not in SUPPORTED_BITS:
        raise ConfigError(
            f"unsupported {what} {bits!r}: choose one of {list(SUPPORTED_BITS)} (32 = unquantized)"
        )
    return int(bits)


def make_candidate(w_bits: int, a_bits: int) -> Candidate:
    """Validated :class:`Candidate`."""
    return Candidate(check_bits(w_bits, "weight bit-width"), check_bits(a_bits, "activation bit-width"))


def parse_candidate(text: str) -> Candidate:
    """Parse ``"W8A8"`` (case-insensitive) or ``"fp32"``."""
    text = text.strip()
    if text.lower() in ("fp32", "float", "w32a32"):
        return FP32
    match = _CANDIDATE_RE.match(text)
    if not match:
        raise ConfigError(f"cannot parse candidate {text!r}: write it as W<bits>A<bits>, e.g. W8A8 or W4A8")
    return make_candidate(int(match.group(1)), int(match.group(2)))


def uniform_config(layer_names: Sequence[str], candidate: Candidate) -> Config:
    """Every layer at the same candidate."""
    return {name: candidate for name in layer_names}


def config_from_mapping(mapping: Mapping[str, object], layer_names: Sequence[str]) -> Config:
    """Validate a ``{layer: [w, a] | "W8A8"}`` mapping; the key ``"*"`` sets a default for unlisted layers."""
    known = set(layer_names)
    unknown = [k for k in mapping if k != "*" and k not in known]
    if unknown:
        raise ConfigError(
            f"configuration names layers this workload does not have: {unknown[:5]}"
            f"{' ...' if len(unknown) > 5 else ''}. List them with `python -m mpq_gym.layers --workload NAME`."
        )

    def as_candidate(layer: str, value: object) -> Candidate:
        if isinstance(value, str):
            return parse_candidate(value)
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return make_candidate(*value)
        raise ConfigError(f"layer {layer!r}: expected [w_bits, a_bits] or 'W8A8', got {value!r}")

    default = as_candidate("*", mapping["*"]) if "*" in mapping else None
    missing = [n for n in layer_names if n not in mapping]
    if missing and default is None:
        raise ConfigError(
            f"configuration leaves {len(missing)} layer(s) unset, e.g. {missing[:3]}: give every layer "
            f'a [w_bits, a_bits] pair or add a default entry "*": [8, 8]'
        )
    return {n: as_candidate(n, mapping[n]) if n in mapping else default for n in layer_names}


def parse_config(spec: str, layer_names: Sequence[str]) -> Config:
    """Parse ``uniform:W8A8``, ``fp32`` or a path to a JSON file ``{layer: [w_bits, a_bits]}``."""
    if spec.lower() in ("fp32", "float"):
        return uniform_config(layer_names, FP32)
    if spec.lower().startswith("uniform:"):
        return uniform_config(layer_names, parse_candidate(spec.split(":", 1)[1]))
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"config {spec!r} is neither 'fp32', 'uniform:W<w>A<a>' nor an existing JSON file"
        )
    try:
        mapping = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON ({exc}); expected {{layer: [w_bits, a_bits]}}") from exc
    if not isinstance(mapping, dict):
        raise ConfigError(f"config file {path} must hold a JSON object {{layer: [w_bits, a_bits]}}, got {type(mapping).__name__}")
    return config_from_mapping(mapping, layer_names)


def config_to_json(config: Config) -> dict[str, list[int]]:
    """JSON-able form, the same format :func:`parse_config` reads."""
    return {name: [c.w_bits, c.a_bits] for name, c in config.items()}
