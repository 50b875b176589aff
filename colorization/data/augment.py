"""Batched geometric augmentation on the device.

Seed 004's recipe: random horizontal flip, rotation up to 20 degrees, shear up to 0.2.
Each photo gets its own flip, rotation and shear, composed into one 2 x 3 affine matrix.
The DataModule's workers draw those matrices with the crops (seeded by the sampler's
``(item, epoch)``, so a resumed run augments exactly as the uninterrupted one) and ship them
with the uint8 batch; on the device one ``affine_grid`` + ``grid_sample`` applies the whole
batch. No random numbers and no per-photo work on the device: a handful of kernels per
batch, whatever the batch size. (Kornia's ``RandomAffine`` does the same maths with many
small kernels and milliseconds of Python per call: on an H100 it took half of a 150 px
skip-CAE training step; see experiments/perf.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DRAWS = 5  # uniforms per photo: flip, affine applied, angle, shear x, shear y


class DeviceAugmentation(nn.Module):
    """Flip / rotate / shear a (B, C, H, W) batch, each switchable off.

    Args:
        hflip: probability of a horizontal flip (0 disables it).
        rotation: maximum rotation in degrees, sampled uniformly in [-rotation, rotation].
        shear: maximum shear *factor* per axis (Keras ``shear_range`` semantics: 0.2 shears
            by up to atan(0.2) = 11.3 degrees), sampled uniformly in [-shear, shear].
        p_affine: probability that the affine part (rotation + shear) is applied to a photo.
        padding_mode: how pixels uncovered by rotation are filled (``grid_sample``'s modes);
            ``reflection`` avoids black corners that would teach "black has no colour".
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
        if padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(f"padding_mode must be zeros, border or reflection, got {padding_mode!r}")
        self.hflip, self.rotation, self.shear = hflip, rotation, shear
        self.p_affine, self.padding_mode = p_affine, padding_mode

    @property
    def affine(self) -> bool:
        return (self.rotation > 0 or self.shear > 0) and self.p_affine > 0

    @property
    def enabled(self) -> bool:
        return self.hflip > 0 or self.affine

    def matrix(self, uniforms: Sequence[float], height: int, width: int) -> torch.Tensor:
        """The (2, 3) ``affine_grid`` matrix (output pixel -> input pixel, normalised
        coordinates) of one photo, from ``DRAWS`` uniforms in [0, 1); plain Python maths,
        cheap enough for a data worker."""
        flip, applied, angle, shear_x, shear_y = uniforms
        a, b, c, d = 1.0, 0.0, 0.0, 1.0  # the linear part, in pixel units about the centre
        if self.affine and applied < self.p_affine:
            angle = (2 * angle - 1) * math.radians(self.rotation)
            shear_x, shear_y = (2 * shear_x - 1) * self.shear, (2 * shear_y - 1) * self.shear
            cos, sin = math.cos(angle), math.sin(angle)
            # rotation @ [[1, shear_x], [shear_y, 1]]
            a, b, c, d = cos - sin * shear_y, cos * shear_x - sin, sin + cos * shear_y, sin * shear_x + cos
        if flip < self.hflip:  # sample the input at -x
            a, b = -a, -b
        # normalised coordinates scale x by 2 / width and y by 2 / height: conjugate by that
        return torch.tensor([[a, b * height / width, 0.0], [c * width / height, d, 0.0]])

    def sample(self, n: int, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 2, 3) matrices for a batch, on the CPU (from ``generator`` if given)."""
        draws = torch.rand(n, DRAWS, generator=generator, dtype=torch.float64).tolist()
        return torch.stack([self.matrix(u, height, width) for u in draws])

    def forward(self, images: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """Augment ``images`` (B, C, H, W): float, or uint8 (returned as float on 0..255).

        ``theta``: (B, 2, 3) matrices from :meth:`matrix` (on the images' device); ``None``
        draws them here, on the CPU from the global generator, then copies them over.
        """
        if not self.enabled:
            return images
        n, _, height, width = images.shape
        if theta is None:
            theta = self.sample(n, height, width).to(images.device)
        images = images.float() if not images.is_floating_point() else images
        if not self.affine:  # flips only: exact, no resampling
            return torch.where(theta[:, :1, :1, None] < 0, images.flip(-1), images)
        grid = F.affine_grid(theta.to(images.dtype), [n, 1, height, width], align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False)
