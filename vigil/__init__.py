"""Vigil: real-time fraud detection and prevention. The pure core shared by serving and training."""

__version__ = "0.1.0"
