"""RL agents (REINFORCE-LSTM, DDPG, PPO) for the mpq-gym environments: coming with the environment issue."""
