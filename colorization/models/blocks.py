"""Building blocks shared by the convolutional models (written once, used by all)."""

from __future__ import annotations

import torch
from torch import nn

#: final activations by output space: Tanh for normalised ab in [-1, 1], sigmoid for RGB
OUTPUT_ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "none": nn.Identity}

#: seed 004: LeakyReLU with negative slope 0.1 after BatchNorm
LEAKY_SLOPE = 0.1


def output_activation(name: str) -> nn.Module:
    if name not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"unknown output activation {name!r}; choose from {sorted(OUTPUT_ACTIVATIONS)}")
    return OUTPUT_ACTIVATIONS[name]()


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
