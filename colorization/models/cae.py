"""Stacked convolutional autoencoder colorizer of seed 001 (models Alpha and Beta).

Blocks of 3x3 convolutions with ReLU; the first block downsamples with stride-2
convolutions, each later block starts with an UpSampling layer (nearest neighbour) that
undoes one of them; dropout after each block; no skip connections. The seed's layout is
``3 conv, upsample, 6 conv, upsample, 3 conv``; Alpha has a 5x5 first filter, Beta 3x3.

    python train.py model=cae model.net.first_kernel=5
    python train.py experiment=alpha      # or experiment=beta
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from colorization.models.blocks import colour_head


def conv_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2), nn.ReLU(inplace=True)
    )


class StackedCAE(nn.Module):
    """Gray ``(B, in_channels, H, W)`` -> colour, any H and W.

    Args:
        blocks: output channels of each convolution, block by block; one UpSampling layer
            precedes every block but the first, so the first block holds that many stride-2
            convolutions (right after its first convolution).
        first_kernel: kernel size of the very first convolution (Alpha 5, Beta 3).
        dropout: dropout probability after each block (seed 001: "dropouts to introduce noise").
        output: ``ab`` or ``rgb`` (see :data:`colorization.outputs.OUTPUTS`).
    """

    def __init__(
        self,
        in_channels: int = 1,
        blocks: tuple[tuple[int, ...], ...] = ((32, 64, 128), (128, 128, 128, 64, 64, 64), (32, 32, 32)),
        first_kernel: int = 3,
        dropout: float = 0.1,
        output: str = "ab",
    ) -> None:
        super().__init__()
        n_up = len(blocks) - 1
        if len(blocks[0]) < n_up + 1:
            raise ValueError(f"the first block needs >= {n_up + 1} convolutions for {n_up} upsamplings")
        self.blocks = nn.ModuleList()
        channels = in_channels
        for b, widths in enumerate(blocks):
            layers = []
            for i, width in enumerate(widths):
                kernel = first_kernel if (b, i) == (0, 0) else 3
                stride = 2 if b == 0 and 1 <= i <= n_up else 1
                layers.append(conv_relu(channels, width, kernel, stride))
                channels = width
            self.blocks.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout(dropout)
        self.head = colour_head(channels, output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = []
        h = x
        for layer in self.blocks[0]:
            if layer[0].stride[0] == 2:
                sizes.append(h.shape[-2:])
            h = layer(h)
        h = self.dropout(h)
        for block in self.blocks[1:]:
            h = F.interpolate(h, size=sizes.pop(), mode="nearest")  # UpSampling to the exact size
            h = self.dropout(block(h))
        return self.head(h)
