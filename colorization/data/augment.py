"""Batched geometric augmentation on the device (Kornia), applied to float RGB in [0, 1].

Seed 004's recipe: random horizontal flip, rotation up to 20 degrees, shear up to 0.2.
"""

from __future__ import annotations

import math

import torch
from kornia.augmentation import AugmentationSequential, RandomAffine, RandomHorizontalFlip
from torch import nn


class DeviceAugmentation(nn.Module):
    """Flip / rotate / shear a (B, 3, H, W) batch, each switchable off.

    Args:
        hflip: probability of a horizontal flip (0 disables it).
        rotation: maximum rotation in degrees, sampled uniformly in [-rotation, rotation].
        shear: maximum shear *factor* (Keras ``shear_range`` semantics: 0.2 shears by up
            to atan(0.2) = 11.3 degrees), sampled per axis.
        p_affine: probability that the affine part (rotation + shear) is applied.
        padding_mode: how pixels uncovered by rotation are filled; ``reflection`` avoids
            black corners that would teach the model "black has no colour".
    """

    def __init__(
        self,
        hflip: float = 0.5,
        rotation: float = 20.0,
        shear: float = 0.2,
        p_affine: float = 1.0,
        padding_mode: str = "reflection",
    ) -> None:
        super().__init__()
        ops: list[nn.Module] = []
        if hflip > 0:
            ops.append(RandomHorizontalFlip(p=hflip))
        if (rotation > 0 or shear > 0) and p_affine > 0:
            shear_deg = math.degrees(math.atan(shear))
            ops.append(
                RandomAffine(
                    degrees=rotation,
                    shear=(-shear_deg, shear_deg, -shear_deg, shear_deg) if shear > 0 else None,
                    padding_mode=padding_mode,
                    p=p_affine,
                )
            )
        self.pipeline = AugmentationSequential(*ops) if ops else None

    @property
    def enabled(self) -> bool:
        return self.pipeline is not None

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        if self.pipeline is None:
            return rgb
        return self.pipeline(rgb).clamp_(0.0, 1.0)
