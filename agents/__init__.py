"""RL agents for the mpq-gym environments (installed as ``mpq_gym.agents``): REINFORCE-LSTM, HAQ's DDPG,
PPO and MaskablePPO; presets in ``hyperparams/``, run folders and resume in :mod:`mpq_gym.agents.training`,
agents as benchmark policies in :mod:`mpq_gym.agents.agent_search`."""
