"""Building blocks shared by the convolutional models (written once, used by all)."""

from __future__ import annotations

import torch
from torch import nn

from colorization.outputs import output_space

#: seed 004: LeakyReLU with negative slope 0.1 after BatchNorm
LEAKY_SLOPE = 0.1


def colour_head(in_channels: int, output: str, kernel_size: int = 3) -> nn.Sequential:
    """Last layer of a colorizer: a convolution to the output's channels and its activation.

    Zero-initialised, so an untrained model predicts "no colour" (ab = 0, or mid-gray RGB)
    and training moves away from the gray baseline only where the data says so.
    """
    space = output_space(output)
    conv = nn.Conv2d(in_channels, space.channels, kernel_size, padding=kernel_size // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, space.activation())


class GlobalFusion(nn.Module):
    """Seed 004's fusion layer: a global vector (B, D) is replicated over the bottleneck grid,
    concatenated to the features (B, C, h, w) and mixed back to C channels by a 1x1 conv."""

    def __init__(self, channels: int, global_dim: int) -> None:
        super().__init__()
        self.mix = nn.Sequential(
            nn.Conv2d(channels + global_dim, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        )

    def forward(self, features: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        grid = vector[:, :, None, None].expand(-1, -1, *features.shape[-2:])
        return self.mix(torch.cat([features, grid.to(features.dtype)], dim=1))


class ConvBNAct(nn.Sequential):
    """Conv2d -> BatchNorm -> LeakyReLU(0.1); ``stride=2`` halves the size (rounding up)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        )


class UpConvBNAct(nn.Module):
    """ConvTranspose2d(3, stride 2) -> BatchNorm -> LeakyReLU(0.1), to an exact output size.

    A stride-2, padding-1 convolution maps S to ceil(S / 2); this layer maps it back to S
    for even and odd S alike (``output_size`` picks the output padding), so any input
    size works, not only powers of two.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)
        self.post = nn.Sequential(nn.BatchNorm2d(out_channels), nn.LeakyReLU(LEAKY_SLOPE, inplace=True))

    def forward(self, x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
        return self.post(self.up(x, output_size=list(size)))
