"""Search baselines (uniform, random, greedy SQNR, evolutionary, ILP): coming with the environment issue."""
