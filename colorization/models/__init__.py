"""Plain ``nn.Module`` networks, one file per family; LightningModules live in ``tasks``."""

from colorization.models.baselines import GrayBaseline
from colorization.models.skip_cae import SkipCAE

__all__ = ["GrayBaseline", "SkipCAE"]
