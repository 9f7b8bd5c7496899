"""``python -m mpq_gym.evaluate`` = ``mpq-gym evaluate`` (kept for scripts written before the one command)."""
from mpq_gym.cli.common import run_cli
from mpq_gym.cli.evaluate import main

run_cli(main)
