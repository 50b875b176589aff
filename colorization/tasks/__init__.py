"""LightningModules: they own losses, metrics, logging and optimizers."""

from colorization.tasks.colorization import ColorizationModule
from colorization.tasks.reconstruction import ReconstructionModule
from colorization.tasks.restoration import RestorationModule
from colorization.tasks.vae import VAEColorizationModule

__all__ = ["ColorizationModule", "ReconstructionModule", "RestorationModule", "VAEColorizationModule"]
