"""``mpq-gym train``: train an agent on a mixed-precision env id.

Example::

    mpq-gym train --algo ppo --env MixedPrecision-EfficientNetLite0-v0 --episodes 300 --seed 0 \\
        --env-kwargs budget=0.375 candidates=hardware sensitivity_images=64
    mpq-gym train --algo maskable_ppo --env MixedPrecision-EfficientNetLite0-v0 --minutes 10

The summary printed at the end gives the best configuration within budget, its quality (the reward's:
surrogate or exact) and its normalized score (1 = the surrogate optimum, 0 = random; see mpq_gym.scores).

Writes runs/<env>/<algo>_<seed>_<timestamp>/ (see :mod:`agents.training`); ``--resume RUN_DIR``
continues an interrupted run from its last checkpoint (``--episodes`` may raise its total). A PPO/DDPG
run folder not created on this machine is resumed only with ``--trust`` (SB3 files are pickles).

``--device`` is where the quantized network runs (not recorded: a run resumes on any device); the agent's
policy network stays on the CPU (set SB3's ``device`` in ``--hyperparams`` to move it).
"""
from __future__ import annotations


from mpq_gym.agents.training import ALGOS, train_run
from mpq_gym.cli.common import (add_device_arg, env_kwargs_and_device, make_parser, positive_float, positive_int,
                                print_json, run_cli)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("train", __doc__,
                         "--algo ppo --env MixedPrecision-DigitsCNN-v0 --episodes 50 --env-kwargs budget=0.375")
    parser.add_argument("--algo", choices=ALGOS)
    parser.add_argument("--env", help="env id, e.g. MixedPrecision-DigitsCNN-v0 (DDPG: MixedPrecisionContinuous-*)")
    parser.add_argument("--episodes", type=positive_int, default=None,
                        help="episodes in all (default 300, or unbounded with --minutes)")
    parser.add_argument("--minutes", type=positive_float, default=None,
                        help="stop after this much training time (whichever of --episodes / --minutes comes first)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hyperparams", default=None, help="YAML file overriding the preset")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="K=V", help="e.g. budget=0.375 candidates=expanded")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue this run from its checkpoint")
    parser.add_argument("--checkpoint-every", type=int, default=25, help="episodes between checkpoints")
    parser.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                        help="also log to MLflow: local SQLite store runs/mlflow.db, or the given store / server URI")
    parser.add_argument("--trust", action="store_true",
                        help="resume a PPO/DDPG run folder made elsewhere (its files are pickles: they can run code)")
    add_device_arg(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.resume is None and (args.algo is None or args.env is None):
        parser.error("--algo and --env are required (or --resume RUN_DIR)")
    episodes = args.episodes or (None if args.resume or args.minutes else 300)
    kwargs, device = env_kwargs_and_device(args)
    result = train_run(args.algo, args.env, episodes, args.seed, kwargs, args.hyperparams, args.runs_dir, args.resume,
                       args.checkpoint_every, not args.quiet, args.mlflow, trust=args.trust, minutes=args.minutes,
                       device=device)
    print_json({"run_dir": str(result.run_dir), "episodes": result.episodes, "wall_s": round(result.wall_s, 1),
                "best": result.best})
    return 0


if __name__ == "__main__":
    run_cli(main)
