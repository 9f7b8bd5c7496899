"""Every command-line tool, one module each (``mpq-gym --help`` lists them; see :mod:`mpq_gym.cli.main`)."""
