"""Shared command-line plumbing: workload arguments and clean error exits."""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Callable, Sequence

from mpq_gym.errors import ConfigError, MpqGymError
from mpq_gym.workloads import Workload, available_workloads, get_workload


def add_workload_args(parser: argparse.ArgumentParser) -> None:
    """--workload, --data-dir, --weights, --random-weights."""
    parser.add_argument("--workload", required=True, help=f"one of: {', '.join(available_workloads())}, or hf:<model id or dir>")
    parser.add_argument("--data-dir", default=None,
                        help="ImageNet folder (ImageFolder layout); default $MPQ_GYM_DATA, then ../shared/data")
    parser.add_argument("--weights", default=None, help="path to a pretrained weights file (default: cache / package)")
    parser.add_argument("--random-weights", action="store_true",
                        help="RANDOM weights: structure and cost work only, accuracy is meaningless")


def workload_from_args(args: argparse.Namespace) -> Workload:
    """Build the workload the arguments name."""
    return get_workload(args.workload, data_dir=args.data_dir, weights=args.weights,
                        random_weights=args.random_weights)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def print_json(obj: Any) -> None:
    """Print strict JSON (infinite floats become the strings "inf" / "-inf")."""
    print(json.dumps(_json_safe(obj), indent=2))


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run ``main``; an mpq-gym input error exits with status 2 and its message, not a traceback."""
    try:
        sys.exit(main(argv))
    except MpqGymError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def parse_env_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    """``k=v`` pairs; values parsed as JSON when they parse, else kept as strings."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"env kwarg {pair!r} is not key=value")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs
