"""Fusion colorizer of seed 004: a skip-connection encoder-decoder whose bottleneck is fused
with the global features of a frozen pretrained classifier.

The gray input is replicated to 3 channels (the gray photo, ab = 0), resized for the
backbone, and its 1000-d ImageNet logits are replicated over the bottleneck grid,
concatenated and mixed by a 1x1 convolution. Seed 004: Inception-v3, 256 px input, a 32x32
bottleneck (``depth=3``); here EfficientNet-Lite0 by default (offline weights).

    python train.py model=fusion                                  # EfficientNet-Lite0
    python train.py model=fusion model.net.backbone=inception_v3  # needs torchvision weights
"""

from __future__ import annotations

import torch
from torch import nn

from colorization.color import gray_rgb
from colorization.models.backbones import FrozenClassifier
from colorization.models.skip_cae import SkipCAE


class FusionColorizer(nn.Module):
    """Gray L ``(B, 1, H, W)`` in [-1, 1] -> colour, with global context from ``backbone``."""

    supports_bins = True

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        width: int = 32,
        depth: int = 4,
        max_width: int = 512,
        output: str = "ab",
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        # pretrained=False: the backbone's weights come from a checkpoint (never downloaded)
        self.backbone = FrozenClassifier(backbone, pretrained)
        self.colorizer = SkipCAE(1, width, depth, max_width, output, global_dim=self.backbone.out_dim)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.colorizer(l_norm, self.backbone(gray_rgb(l_norm)))
