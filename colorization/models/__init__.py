"""Plain ``nn.Module`` networks, one file per family; LightningModules live in ``tasks``."""

from colorization.models.baselines import (
    GrayBaseline,
    MeanAbBaseline,
    NeighbourhoodLinear,
    NeighbourhoodMLP,
    PCABaseline,
)
from colorization.models.cae import StackedCAE
from colorization.models.fusion import FusionColorizer
from colorization.models.linear_ae import LinearAE, LinearVAE
from colorization.models.skip_cae import SkipCAE
from colorization.models.unet import EffNetUNet
from colorization.models.vae import ConditionalVAE

__all__ = [
    "ConditionalVAE",
    "EffNetUNet",
    "FusionColorizer",
    "GrayBaseline",
    "LinearAE",
    "LinearVAE",
    "MeanAbBaseline",
    "NeighbourhoodLinear",
    "NeighbourhoodMLP",
    "PCABaseline",
    "SkipCAE",
    "StackedCAE",
]
