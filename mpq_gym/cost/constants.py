"""Every constant of the analytic cost models, in one documented place.

Energy (the seed paper's constants, Horowitz-style 45 nm figures as used by HAQ):
  MAC energy in pJ at a bit-width b: 4.6 (32), 1.1 (16), 0.2 (8), 0.05 (4), 0.01 (2); other
  bit-widths are interpolated log-linearly in (log2 bits, log energy). A MAC with different weight
  and activation widths costs the energy at their geometric mean sqrt(w * a) (multiplier area and
  energy grow with the product of the operand widths).
  DRAM access: 640 pJ per byte, charged for the layer's weights (w bits each) and its input
  activations (a bits each), read once per inference.

Latency (a generic edge accelerator, roofline per layer, layers run one after another):
  memory time  = (params * w_bits + input_elements * a_bits) / 8 / DRAM_BYTES_PER_S
  compute time = MACs * f(w, a) / MACS_PER_S_8BIT, with f(w, a) = max(w, 2) * max(a, 2) / 64:
                 bit-serial / BitFusion-style arithmetic whose throughput scales with 1 / (w * a),
                 normalised so W8A8 runs at the peak rate.
  layer time   = max(memory time, compute time); model latency = sum over layers (seconds).
"""
from __future__ import annotations

MAC_ENERGY_PJ: dict[int, float] = {2: 0.01, 4: 0.05, 8: 0.2, 16: 1.1, 32: 4.6}
DRAM_PJ_PER_BYTE: float = 640.0

DRAM_BYTES_PER_S: float = 16e9
MACS_PER_S_8BIT: float = 1e12

#: The reference configuration of relative BOPs in the AIMET mixed-precision paper.
REFERENCE_CANDIDATE: tuple[int, int] = (8, 16)
