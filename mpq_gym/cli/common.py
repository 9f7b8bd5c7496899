"""Shared command-line plumbing: workload and device arguments and clean error exits."""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Callable, NoReturn, Sequence

from mpq_gym.devices import DEVICES, resolve_device
from mpq_gym.errors import ConfigError, MpqGymError
from mpq_gym.quant.quantizers import DEFAULT_QUANTIZER, QUANTIZERS, WEIGHT_ROUNDING, QuantSettings, quantizer_settings
from mpq_gym.workloads import Workload, available_workloads, get_workload


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the fix (exit status 2), not usage dumps."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def make_parser(command: str, doc: str | None, *examples: str) -> Parser:
    """The parser of ``mpq-gym COMMAND``: its module docstring as description, the examples as epilog."""
    epilog = "example:\n" + "\n".join(f"  mpq-gym {command} {e}" for e in examples) if examples else None
    return Parser(prog=f"mpq-gym {command}", description=doc, epilog=epilog,
                  formatter_class=argparse.RawDescriptionHelpFormatter)


# ------------------------------------------------------------------ argument types (argparse ``type=``)
def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def positive_floats(text: str) -> list[float]:
    """A comma-separated, non-empty list of finite numbers > 0 (e.g. budget ratios ``0.25,0.375``)."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 0.25,0.375")
    return [positive_float(t) for t in items]


def names(text: str) -> list[str]:
    """A comma-separated, non-empty list of names without blanks."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of names, e.g. greedy,ilp")
    return items


def add_workload_args(parser: argparse.ArgumentParser) -> None:
    """--workload, --data-dir, --weights, --random-weights."""
    parser.add_argument("--workload", required=True, help=f"one of: {', '.join(available_workloads())}, or hf:<model id or dir>")
    parser.add_argument("--data-dir", default=None,
                        help="ImageNet folder (ImageFolder layout); default $MPQ_GYM_DATA, then ../shared/data")
    parser.add_argument("--weights", default=None, help="path to a pretrained weights file (default: cache / package)")
    parser.add_argument("--random-weights", action="store_true",
                        help="RANDOM weights: structure and cost work only, accuracy is meaningless")


def device_arg(text: str) -> str:
    """A device this machine has (``auto``, ``cpu``, ``cuda[:N]``, ``mps``), kept as given; else the error
    :func:`mpq_gym.devices.resolve_device` gives, naming the ``--device`` to use instead."""
    try:
        resolve_device(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("device=", "--device ")) from None
    return text


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    """``--device``: where the quantized network runs (the env kwarg / ``ProblemSpec`` field ``device``)."""
    parser.add_argument("--device", type=device_arg, default=None, metavar="DEVICE",
                        help=f"where the quantized network runs: {', '.join(DEVICES)} (default auto: CUDA when "
                             "available, else the CPU); not an agent's policy network, which stays on the CPU")


def env_kwargs_and_device(args: argparse.Namespace) -> tuple[dict[str, Any], str | None]:
    """(``--env-kwargs`` without ``device``, the device: ``--device`` or a ``device=`` among the env kwargs; None
    when neither is given). Giving both, different, is a :class:`ConfigError`."""
    kwargs = parse_env_kwargs(args.env_kwargs)
    given = kwargs.pop("device", None)
    if given is not None and args.device is not None and given != args.device:
        raise ConfigError(f"--device {args.device} and --env-kwargs device={given} disagree: give the device once")
    return kwargs, args.device if args.device is not None else given


def add_quantizer_args(parser: argparse.ArgumentParser) -> None:
    """``--quantizer`` (version, e.g. ``v1`` for the settings of earlier figures) and ``--weight-rounding``."""
    parser.add_argument("--quantizer", default=DEFAULT_QUANTIZER, choices=sorted(QUANTIZERS),
                        help=f"quantizer version (default {DEFAULT_QUANTIZER}; v1 = the settings before issue 19)")
    parser.add_argument("--weight-rounding", default="nearest", choices=WEIGHT_ROUNDING)


def quantizer_from_args(args: argparse.Namespace) -> QuantSettings:
    """The settings ``add_quantizer_args`` options describe."""
    return quantizer_settings(args.quantizer, weight_rounding=args.weight_rounding)


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
    """Run ``main``; an mpq-gym input error exits with status 2 and its message on one line, not a traceback."""
    try:
        sys.exit(main(argv))
    except MpqGymError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume where it stopped", file=sys.stderr)
        sys.exit(130)


def parse_env_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    """``k=v`` pairs; values parsed as JSON when they parse (``nan``/``inf`` included, so that they are
    refused as numbers rather than passed on as strings), else kept as strings."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"env kwarg {pair!r} is not key=value (e.g. budget=0.375)")
        if key in kwargs:
            raise ConfigError(f"env kwarg {key!r} is given twice")
        if value.strip().lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
            kwargs[key] = float(value)
            continue
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs
