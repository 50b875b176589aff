"""LightningModules: they own losses, metrics, logging and optimizers."""

from colorization.tasks.colorization import ColorizationModule

__all__ = ["ColorizationModule"]
