"""Garfield: Byzantine-resilient distributed training for PyTorch and TensorFlow."""

__version__ = "0.1.0"
