"""Fake-quantization core: layer discovery, BN folding, quantizers, QuantizedModel."""
