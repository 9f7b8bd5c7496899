"""mpq-gym: mixed-precision quantization as a standard problem."""
__version__ = "0.1.0"
