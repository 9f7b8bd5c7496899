"""``python -m mpq_gym.cost`` = ``mpq-gym cost`` (kept for scripts written before the one command)."""
from mpq_gym.cli.common import run_cli
from mpq_gym.cli.cost import main

run_cli(main)
