"""Quantization configurations: a candidate (weight bits, activation bits, number format) per layer."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

from mpq_gym.errors import ConfigError

#: Bit-widths the fake-quant core supports; 32 means "left in floating point".
SUPPORTED_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 16, 32)
FLOAT_BITS = 32
#: Number formats of the fake-quant core (see :mod:`mpq_gym.quant.formats`); ``int`` is the default.
NUMBER_FORMATS: tuple[str, ...] = ("int", "pot", "flint", "ant", "olive")
DEFAULT_FORMAT = "int"


class Candidate(NamedTuple):
    """One layer's choice: weight bits, activation (input) bits and the number format of both.

    ``fmt`` is ``int`` (uniform integer grid), ``pot`` (power of two), ``flint`` (ANT's float-int),
    ``ant`` (per tensor, whichever of int / pot / flint has the least quantization MSE) or ``olive``
    (outlier-victim pairs). It does not change the cost: every format stores ``bits`` per value.
    """

    w_bits: int
    a_bits: int
    fmt: str = DEFAULT_FORMAT

    def __str__(self) -> str:
        suffix = "" if self.fmt == DEFAULT_FORMAT else f"-{self.fmt}"
        return f"W{self.w_bits}A{self.a_bits}{suffix}"


#: A configuration maps every quantizable layer name to its candidate.
Config = dict[str, Candidate]

FP32 = Candidate(FLOAT_BITS, FLOAT_BITS)
_CANDIDATE_RE = re.compile(r"^W(\d+)A(\d+)(?:-([a-z0-9]+))?$", re.IGNORECASE)


def check_bits(bits: int, what: str = "bit-width") -> int:
    """Return ``bits`` as int, or raise :class:`ConfigError` naming the supported values."""
    if isinstance(bits, bool) or not isinstance(bits, (int, float)) or int(bits) != bits \
            or int(bits) not in SUPPORTED_BITS:
        raise ConfigError(
            f"unsupported {what} {bits!r}: choose one of {list(SUPPORTED_BITS)} (32 = unquantized)"
        )
    return int(bits)


def check_format(fmt: str) -> str:
    """Return ``fmt`` lower-cased, or raise :class:`ConfigError` naming the known formats."""
    if not isinstance(fmt, str) or fmt.lower() not in NUMBER_FORMATS:
        raise ConfigError(f"unknown number format {fmt!r}: choose one of {list(NUMBER_FORMATS)}")
    return fmt.lower()


def make_candidate(w_bits: int, a_bits: int, fmt: str = DEFAULT_FORMAT) -> Candidate:
    """Validated :class:`Candidate`."""
    return Candidate(check_bits(w_bits, "weight bit-width"), check_bits(a_bits, "activation bit-width"),
                     check_format(fmt))


def parse_candidate(text: str) -> Candidate:
    """Parse ``"W8A8"``, ``"W4A8-ant"`` (case-insensitive) or ``"fp32"``."""
    text = text.strip()
    if text.lower() in ("fp32", "float", "w32a32"):
        return FP32
    match = _CANDIDATE_RE.match(text)
    if not match:
        raise ConfigError(f"cannot parse candidate {text!r}: write it as W<bits>A<bits>[-<format>], "
                          f"e.g. W8A8, W4A8 or W4A8-olive (formats: {', '.join(NUMBER_FORMATS)})")
    return make_candidate(int(match.group(1)), int(match.group(2)), match.group(3) or DEFAULT_FORMAT)


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
            f"{' ...' if len(unknown) > 5 else ''}. List them with `mpq-gym layers --workload NAME`."
        )

    def as_candidate(layer: str, value: object) -> Candidate:
        if isinstance(value, str):
            return parse_candidate(value)
        if isinstance(value, (list, tuple)) and len(value) in (2, 3):
            return make_candidate(*value)
        raise ConfigError(f"layer {layer!r}: expected [w_bits, a_bits], [w_bits, a_bits, format] or 'W8A8', "
                          f"got {value!r}")

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


def candidate_to_json(candidate: Candidate) -> list:
    """``[w_bits, a_bits]`` for int, ``[w_bits, a_bits, format]`` otherwise."""
    head = [candidate.w_bits, candidate.a_bits]
    return head if candidate.fmt == DEFAULT_FORMAT else [*head, candidate.fmt]


def config_to_json(config: Config) -> dict[str, list]:
    """JSON-able form, the same format :func:`parse_config` reads."""
    return {name: candidate_to_json(c) for name, c in config.items()}
