"""``python -m mpq_gym.bench`` = ``mpq-gym bench`` (kept for scripts written before the one command)."""
from mpq_gym.cli.common import run_cli
from mpq_gym.cli.bench import main

run_cli(main)
