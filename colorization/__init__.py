"""colorization: train, compare and use autoencoder colorizers (PyTorch Lightning + Hydra)."""

__version__ = "0.1.0"
