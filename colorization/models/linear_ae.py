"""Fully connected autoencoders of seed 002 (digits): plain / denoising, and variational.

python train.py model=linear_ae            # on the bundled 8x8 digits
python train.py experiment=digits_vae      # or experiment=digits_dae
"""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers[:-1])  # no activation after the last layer


class LinearAE(nn.Module):
    """Image ``(B, *input_shape)`` in [0, 1] -> code ``(B, latent_dim)`` -> image (sigmoid)."""

    variational = False

    def __init__(self, input_shape: tuple[int, ...] = (1, 8, 8), hidden: tuple[int, ...] = (32,), latent_dim: int = 8):
        super().__init__()
        self.input_shape, self.latent_dim = tuple(input_shape), latent_dim
        n = math.prod(self.input_shape)
        self.encoder = mlp([n, *hidden, self._code_size()])
        self.decoder = nn.Sequential(mlp([latent_dim, *reversed(hidden), n]), nn.Sigmoid())

    def _code_size(self) -> int:
        return self.latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(z.shape[0], *self.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class LinearVAE(LinearAE):
    """Variational version: the encoder gives the mean and log-variance of q(z | x)."""

    variational = True

    def _code_size(self) -> int:
        return 2 * self.latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = super().encode(x).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])
