"""``python -m mpq_gym COMMAND ...``: the same as the ``mpq-gym`` command."""
from mpq_gym.cli.main import run

run()
