"""``mpq-gym tune``: search an agent's hyperparameters with Optuna, write the winning preset.

Example::

    mpq-gym tune --algo ppo --env MixedPrecision-EfficientNetLite0-v0 --trials 30 --episodes 3000 \\
        --env-kwargs candidates=hardware sensitivity_images=64 budget=0.375

Trials train in surrogate mode on one shared problem and are scored by the normalized score (see
:mod:`mpq_gym.agents.tuning`); the study is kept in ``--storage`` (SQLite; a rerun resumes it) and the
best preset is written to ``--out`` (default ``runs/tune/<algo>-<env>.yml``), ready for
``mpq-gym train --hyperparams``, and every trial to ``<out>.trials.csv`` beside it. ``--hyperparams FILE``
sets what the trials start from (the algorithm's preset with the env's section, overridden by FILE, e.g.
``env_kwargs`` for the dense reward). Needs Optuna (``pip install optuna``, in the ``dev`` extra).
"""
from __future__ import annotations

from pathlib import Path

from mpq_gym.agents.training import ALGOS, load_hyperparams
from mpq_gym.agents.tuning import tune, write_preset, write_trials
from mpq_gym.cli.common import (add_device_arg, env_kwargs_and_device, make_parser, positive_float, positive_int,
                                print_json, run_cli)
from mpq_gym.devices import with_device
from mpq_gym.envs.env import check_env_kwargs, problem_from_env
from mpq_gym.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("tune", __doc__, "--algo ppo --env MixedPrecision-DigitsCNN-v0 --trials 10 --episodes 300")
    parser.add_argument("--algo", choices=ALGOS, required=True)
    parser.add_argument("--env", required=True, help="env id, e.g. MixedPrecision-EfficientNetLite0-v0")
    parser.add_argument("--trials", type=positive_int, default=20)
    parser.add_argument("--episodes", type=positive_int, default=2000, help="training episodes per trial")
    parser.add_argument("--minutes", type=positive_float, default=None, help="also stop a trial after this long")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="K=V", help="e.g. budget=0.375")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hyperparams", default=None, metavar="YAML",
                        help="preset the trials start from (overrides the algorithm's; e.g. its env_kwargs)")
    parser.add_argument("--storage", default=None, help="study file (default runs/tune/<algo>-<env>.db)")
    parser.add_argument("--out", default=None, help="preset file (default runs/tune/<algo>-<env>.yml)")
    add_device_arg(parser)
    args = parser.parse_args(argv)
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("mpq-gym tune needs Optuna: pip install optuna") from None
    base = load_hyperparams(args.algo, args.env, args.hyperparams)
    kwargs, device = env_kwargs_and_device(args)
    spec = check_env_kwargs(args.env, kwargs)
    options = with_device({**base.get("env_kwargs", {}), **kwargs}, device)
    problem = problem_from_env(args.env, options, progress=True)
    stem = f"{args.algo}-{args.env}"
    storage = Path(args.storage or f"runs/tune/{stem}.db")
    study = tune(args.algo, problem, spec.budget_spec, args.trials, storage, stem, args.episodes, args.minutes,
                 args.seed, base)
    command = "mpq-gym tune " + " ".join(argv if argv is not None else [])
    out = Path(args.out or f"runs/tune/{stem}.yml")
    preset = write_preset(study, args.algo, args.env, out, command, base)
    trials = write_trials(study, out.with_suffix(".trials.csv"))
    best = study.best_trial
    print_json({"preset": str(out), "trials_csv": str(trials), "storage": str(storage), "trials": len(study.trials),
                "best_trial": best.number, "objective": best.value, "normalized": best.user_attrs.get("normalized"),
                "hyperparams": preset})
    return 0


if __name__ == "__main__":
    run_cli(main)
