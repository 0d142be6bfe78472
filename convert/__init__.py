"""Workstation side: model zoo, weights, training, export, quantization and verification."""
