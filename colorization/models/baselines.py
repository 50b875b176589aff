"""Baselines: what a colorizer must beat (seeds 000 and 003).

* ``GrayBaseline``: ab = 0, the gray photo itself.
* ``MeanAbBaseline``: the training set's mean colour everywhere (fitted in closed form).
* ``NeighbourhoodLinear`` / ``NeighbourhoodMLP``: seed 003's linear regression (closed form)
  and MLP (gradient descent, a few epochs) from the 3x3 neighbourhood of L to the pixel's ab.
* ``PCABaseline``: seed 000's PCA comparison: a linear autoencoder of joint (L, ab) patches
  fitted by PCA; a gray patch gets the ab that PCA's Gaussian model expects given its L.

Closed-form baselines have a ``fit_batch(L, ab)`` / ``finish_fit()`` pair that
``ColorizationModule`` drives over the training split before training starts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GrayBaseline(nn.Module):
    """Predicts ab = 0 everywhere: the gray photo itself."""

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return l_norm.new_zeros(l_norm.shape[0], 2, *l_norm.shape[2:])


class MeanAbBaseline(nn.Module):
    """Predicts the training set's mean (normalised) ab at every pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_ab", torch.zeros(2, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self._sum = torch.zeros(2, dtype=torch.float64)

    def fit_batch(self, l_norm: torch.Tensor, ab: torch.Tensor) -> None:
        self._sum = self._sum.to(ab.device) + ab.double().sum(dim=(0, 2, 3))
        self.count += ab.shape[0] * ab.shape[2] * ab.shape[3]

    def finish_fit(self) -> None:
        self.mean_ab.copy_(self._sum.to(self.mean_ab.device) / self.count.clamp_min(1))

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.mean_ab.to(l_norm.dtype)[None, :, None, None].expand(l_norm.shape[0], -1, *l_norm.shape[2:])


class NeighbourhoodLinear(nn.Module):
    """Seed 003's linear regression: ab of a pixel = linear function of its 3x3 L neighbourhood.

    Fitted in closed form (least squares over every training pixel); as a convolution it
    can also be fine-tuned by gradient descent like any net.
    """

    def __init__(self, ridge: float = 1e-6) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, padding_mode="replicate")
        self.ridge = ridge
        self._xtx, self._xty = torch.zeros(10, 10, dtype=torch.float64), torch.zeros(10, 2, dtype=torch.float64)

    def fit_batch(self, l_norm: torch.Tensor, ab: torch.Tensor) -> None:
        patches = F.unfold(F.pad(l_norm.double(), (1, 1, 1, 1), mode="replicate"), 3)  # (B, 9, H*W)
        x = torch.cat(
            [patches.transpose(1, 2).reshape(-1, 9), patches.new_ones(patches.shape[0] * patches.shape[2], 1)], 1
        )
        y = ab.double().flatten(2).transpose(1, 2).reshape(-1, 2)
        self._xtx = self._xtx.to(x.device) + x.T @ x
        self._xty = self._xty.to(x.device) + x.T @ y

    def finish_fit(self) -> None:
        eye = torch.eye(10, dtype=torch.float64, device=self._xtx.device)
        solution = torch.linalg.solve(self._xtx + self.ridge * eye, self._xty)  # (10, 2)
        with torch.no_grad():
            self.conv.weight.copy_(solution[:9].T.reshape(2, 1, 3, 3).to(self.conv.weight))
            self.conv.bias.copy_(solution[9].to(self.conv.bias))

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.conv(l_norm)


class NeighbourhoodMLP(nn.Sequential):
    """Seed 003's MLP: the 3x3 L neighbourhood -> ``hidden`` ReLU units (x2) -> ab (Tanh)."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__(
            nn.Conv2d(1, hidden, 3, padding=1, padding_mode="replicate"),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 2, 1),
            nn.Tanh(),
        )


class PCABaseline(nn.Module):
    """PCA of joint (L, ab) ``patch`` x ``patch`` blocks, keeping ``components`` of them.

    The kept components and the mean discarded variance define probabilistic PCA's Gaussian
    (Tipping & Bishop 1999): covariance W diag(lambda) W^T + sigma^2 I. A gray block gets its
    conditional mean ab = mean_ab + S_ab,L S_L,L^-1 (L - mean_L). Images are padded to whole
    blocks and cropped back.
    """

    def __init__(self, patch: int = 8, components: int = 16) -> None:
        super().__init__()
        self.patch, self.components = patch, components
        d = 3 * patch * patch
        self.register_buffer("mean", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("projection", torch.zeros(2 * patch * patch, patch * patch, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self._sum, self._outer = torch.zeros(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64)

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (N, C * p * p) non-overlapping blocks (padded by replication)."""
        p = self.patch
        pad = (0, -x.shape[-1] % p, 0, -x.shape[-2] % p)
        x = F.pad(x, pad, mode="replicate") if any(pad) else x
        return F.unfold(x, p, stride=p).transpose(1, 2).reshape(-1, x.shape[1] * p * p)

    def fit_batch(self, l_norm: torch.Tensor, ab: torch.Tensor) -> None:
        v = self._blocks(torch.cat([l_norm, ab], 1).double())
        self._sum = self._sum.to(v.device) + v.sum(0)
        self._outer = self._outer.to(v.device) + v.T @ v
        self.count += len(v)

    def finish_fit(self) -> None:
        n = self.count.clamp_min(2)
        mean = self._sum / n
        cov = self._outer / n - torch.outer(mean, mean)
        values, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
        k, n_l = self.components, self.patch * self.patch
        sigma2 = values[:-k].clamp_min(0).mean()
        w = vectors[:, -k:]
        model_cov = w @ torch.diag(values[-k:]) @ w.T + sigma2 * torch.eye(
            len(mean), dtype=cov.dtype, device=cov.device
        )
        self.mean.copy_(mean)
        self.projection.copy_(torch.linalg.solve(model_cov[:n_l, :n_l], model_cov[:n_l, n_l:]).T)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        p, (b, _, h, w) = self.patch, l_norm.shape
        blocks = self._blocks(l_norm.double())  # (N, p*p): the L part of each joint block
        n_l = p * p
        # joint blocks are ordered channel-major: L (p*p values), then a, then b
        ab_blocks = self.mean[n_l:] + (blocks - self.mean[:n_l]) @ self.projection.T  # (N, 2*p*p)
        hp, wp = h + (-h % p), w + (-w % p)
        per_image = ab_blocks.reshape(b, -1, 2 * n_l).transpose(1, 2)
        ab = F.fold(per_image, (hp, wp), p, stride=p)[..., :h, :w]
        return ab.clamp(-1, 1).to(l_norm.dtype)
