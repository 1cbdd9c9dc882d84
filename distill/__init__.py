"""distill: train small generative audio models on your own sounds."""

__version__ = "0.1.0"
