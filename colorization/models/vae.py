"""Conditional VAE colorizer: several plausible colorizations of one gray photo.

Encoder q(z | colour, L): strided convolutions over the photo's L and its true colour,
pooled to the mean and log-variance of a ``latent_dim`` Gaussian. Decoder p(colour | z, L):
the skip-connection CAE on L with z fused at its bottleneck (:class:`GlobalFusion`). At
inference no colour is known: z comes from the prior N(0, I), one sample per colorization
(z = 0 gives the prior's mean colorization).

    python train.py model=vae model.kl_weight=1e-2 model.net.latent_dim=32
"""

from __future__ import annotations

import torch
from torch import nn

from colorization.models.blocks import ConvBNAct
from colorization.models.skip_cae import SkipCAE
from colorization.outputs import output_space


class ConditionalVAE(nn.Module):
    def __init__(
        self,
        latent_dim: int = 16,
        width: int = 32,
        depth: int = 4,
        max_width: int = 512,
        encoder_width: int = 16,
        output: str = "ab",
    ) -> None:
        super().__init__()
        channels = output_space(output).channels
        w = encoder_width
        self.latent_dim = latent_dim
        self.posterior = nn.Sequential(
            ConvBNAct(1 + channels, w, stride=2),
            ConvBNAct(w, 2 * w, stride=2),
            ConvBNAct(2 * w, 4 * w, stride=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * w, 2 * latent_dim),
        )
        self.decoder = SkipCAE(1, width, depth, max_width, output, global_dim=latent_dim)

    def encode(self, l_norm: torch.Tensor, colour: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (mu, logvar), each (B, latent_dim)."""
        mu, logvar = self.posterior(torch.cat([l_norm, colour], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, l_norm: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(l_norm, z)

    def sample_z(self, n: int, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=like.device, dtype=like.dtype, generator=generator)

    def forward(self, l_norm: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Colorize with latent ``z`` (default: 0, the prior's mean)."""
        if z is None:
            z = l_norm.new_zeros(l_norm.shape[0], self.latent_dim)  # shape[0]: export keeps the batch dynamic
        return self.decode(l_norm, z)
