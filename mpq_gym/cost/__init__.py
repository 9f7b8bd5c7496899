"""Hardware cost models: size, BOPs, analytic latency and energy, and HAQ-style lookup tables."""
from mpq_gym.cost.cost_model import COST_METRICS, CostModel
from mpq_gym.cost.lut import LookupTableCost, measure_cpu_latency_lut

__all__ = ["CostModel", "COST_METRICS", "LookupTableCost", "measure_cpu_latency_lut"]
