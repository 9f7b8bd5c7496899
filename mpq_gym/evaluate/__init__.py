"""Evaluators: exact (the quantized network on a split, memoised in a result store), phase-1 sensitivity
(label-free SQNR table), and the surrogate calibrated on both."""
