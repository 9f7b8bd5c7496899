"""mpq-gym: mixed-precision quantization as a standard problem (``import mpq_gym`` registers the envs)."""
from mpq_gym.envs.registration import register_envs

__version__ = "0.1.0"

register_envs()
