"""Random image degradations applied to a batch on its device (restoration, seeds 000/002).

Gaussian noise, Gaussian blur and JPEG compression (Kornia's differentiable JPEG codec),
each applied to a random subset of the batch with its own probability and a random
strength. Randomness comes from torch's generator on the batch's device, so a seeded run
degrades the same way every time; pass ``generator`` for fixed validation degradations.
"""

from __future__ import annotations

import math

import torch
from kornia.enhance import jpeg_codec_differentiable
from kornia.filters import gaussian_blur2d
from torch import nn


class Degradation(nn.Module):
    """Degrade ``(B, C, H, W)`` images in [0, 1] (C = 1 or 3).

    Args:
        noise_std: maximum standard deviation of additive Gaussian noise (uniform in [0, max]).
        noise_p: probability that an image gets noise.
        blur_sigma: maximum Gaussian blur sigma in px (uniform in [0.3, max]).
        blur_p: probability that an image is blurred.
        jpeg_quality: (lowest, highest) JPEG quality, uniform in between.
        jpeg_p: probability that an image is JPEG-compressed.
    """

    def __init__(
        self,
        noise_std: float = 0.1,
        noise_p: float = 0.8,
        blur_sigma: float = 1.5,
        blur_p: float = 0.3,
        jpeg_quality: tuple[float, float] = (20.0, 60.0),
        jpeg_p: float = 0.3,
    ) -> None:
        super().__init__()
        self.noise_std, self.noise_p = noise_std, noise_p
        self.blur_sigma, self.blur_p = blur_sigma, blur_p
        self.jpeg_quality, self.jpeg_p = tuple(jpeg_quality), jpeg_p

    def _chosen(self, n: int, p: float, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return (torch.rand(n, device=x.device, generator=generator) < p)[:, None, None, None]

    def _uniform(self, n, low, high, x, generator) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, device=x.device, generator=generator)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n = len(x)
        out = x
        if self.blur_p > 0 and self.blur_sigma > 0:
            sigma = self._uniform(n, min(0.3, self.blur_sigma), self.blur_sigma, x, generator)
            size = 2 * math.ceil(3 * self.blur_sigma) + 1
            blurred = gaussian_blur2d(out, (size, size), sigma[:, None].expand(n, 2), border_type="reflect")
            out = torch.where(self._chosen(n, self.blur_p, x, generator), blurred, out)
        if self.jpeg_p > 0:
            quality = self._uniform(n, *self.jpeg_quality, x, generator)
            rgb = out.expand(-1, 3, -1, -1) if out.shape[1] == 1 else out
            compressed = jpeg_codec_differentiable(rgb.clamp(0, 1), quality)
            compressed = compressed.mean(1, keepdim=True) if out.shape[1] == 1 else compressed
            out = torch.where(self._chosen(n, self.jpeg_p, x, generator), compressed, out)
        if self.noise_p > 0 and self.noise_std > 0:
            std = self._uniform(n, 0.0, self.noise_std, x, generator)[:, None, None, None]
            noise = torch.randn(x.shape, device=x.device, generator=generator) * std
            out = torch.where(self._chosen(n, self.noise_p, x, generator), out + noise, out)
        return out.clamp(0, 1)
