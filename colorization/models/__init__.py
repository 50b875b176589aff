"""Plain ``nn.Module`` networks, one file per family; LightningModules live in ``tasks``."""

from colorization.models.baselines import GrayBaseline
from colorization.models.cae import StackedCAE
from colorization.models.fusion import FusionColorizer
from colorization.models.skip_cae import SkipCAE

__all__ = ["FusionColorizer", "GrayBaseline", "SkipCAE", "StackedCAE"]
