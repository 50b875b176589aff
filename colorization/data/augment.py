"""Batched geometric augmentation on the device, applied to float images in [0, 1].

Seed 004's recipe: random horizontal flip, rotation up to 20 degrees, shear up to 0.2.
Each photo of the batch gets its own flip, rotation and shear; all of them are composed
into one affine map per photo and applied by a single ``grid_sample`` call, so the cost is
two kernels per batch whatever the batch size. (Kornia's ``RandomAffine`` does the same
maths with more per-call bookkeeping: on an H100 it took half of a 150 px skip-CAE
training step; see experiments/perf.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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

    Random numbers come from ``generator`` when given (the DataModule seeds one per step, so
    a resumed run augments as the uninterrupted one), else from the device's global one.
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

    def matrices(
        self, n: int, height: int, width: int, device: torch.device, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(n, 2, 3) ``affine_grid`` matrices: output pixel -> input pixel, normalised coordinates."""
        angle = (torch.rand(n, device=device, generator=generator) * 2 - 1) * math.radians(self.rotation)
        shear = (torch.rand(n, 2, device=device, generator=generator) * 2 - 1) * self.shear
        cos, sin = angle.cos(), angle.sin()
        rotate = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        one = torch.ones(n, device=device)
        shear_m = torch.stack([torch.stack([one, shear[:, 0]], -1), torch.stack([shear[:, 1], one], -1)], -2)
        linear = rotate @ shear_m  # in pixel units about the centre
        applied = torch.rand(n, device=device, generator=generator) < self.p_affine
        linear = torch.where(applied[:, None, None], linear, torch.eye(2, device=device).expand(n, 2, 2))
        # normalised coordinates scale x by 2 / width and y by 2 / height: conjugate by that
        # scale (Python floats: a tensor built here would be a host-to-device copy that waits
        # for the GPU, every batch)
        linear = torch.stack([linear[:, 0, 0], linear[:, 0, 1] * (height / width),
                              linear[:, 1, 0] * (width / height), linear[:, 1, 1]], -1).view(n, 2, 2)  # fmt: skip
        return torch.cat([linear, torch.zeros(n, 2, 1, device=device)], dim=2)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.enabled:
            return images
        n, _, height, width = images.shape
        if self.hflip > 0:
            flip = (torch.rand(n, device=images.device, generator=generator) < self.hflip)[:, None, None, None]
            images = torch.where(flip, images.flip(-1), images)
        if self.affine:
            theta = self.matrices(n, height, width, images.device, generator).to(images.dtype)
            grid = F.affine_grid(theta, list(images.shape), align_corners=False)
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False)
        return images.clamp_(0.0, 1.0)
