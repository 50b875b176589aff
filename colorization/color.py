"""Lab colour space: the one place that defines how colour is normalised.

CIE Lab (D65) splits a photo into lightness L in [0, 100] and chroma ab in about
[-110, 110] (sRGB colours reach about -86..98 in a and -108..95 in b). The network sees
and predicts normalised values, as in Zhang et al. (richzhang/colorization):

* ``L_norm = (L - 50) / 50``  -> [-1, 1]  (network input)
* ``ab_norm = ab / 110``      -> about [-1, 1] (Tanh output range)

Tensors are ``(B, C, H, W)`` float; RGB is sRGB in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from kornia.color import lab_to_rgb, rgb_to_lab

L_CENTER = 50.0
L_SCALE = 50.0
AB_SCALE = 110.0


def normalize_l(lightness: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> [-1, 1]."""
    return (lightness - L_CENTER) / L_SCALE


def denormalize_l(l_norm: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> L in [0, 100]."""
    return l_norm * L_SCALE + L_CENTER


def rgb_to_lab_norm(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB in [0, 1], shape (B, 3, H, W) -> (L_norm (B, 1, H, W), ab_norm (B, 2, H, W))."""
    lab = rgb_to_lab(rgb.clamp(0.0, 1.0))
    return normalize_l(lab[:, :1]), lab[:, 1:] / AB_SCALE


def lab_norm_to_rgb(l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
    """Normalised L (B, 1, H, W) and ab (B, 2, H, W) -> sRGB in [0, 1], shape (B, 3, H, W).

    Lab colours outside the sRGB gamut are clipped to [0, 1].
    """
    lab = torch.cat([denormalize_l(l_norm), ab_norm * AB_SCALE], dim=1)
    return lab_to_rgb(lab, clip=True)


def gray_rgb(l_norm: torch.Tensor) -> torch.Tensor:
    """The gray photo a user sees: the true L with ab = 0, as sRGB in [0, 1]."""
    return lab_norm_to_rgb(l_norm, torch.zeros_like(l_norm).expand(-1, 2, -1, -1))


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness M3 of an (H, W, 3) RGB image on 0..255.

    ``rg = R - G``, ``yb = (R + G) / 2 - B`` (signed opponent channels);
    ``M3 = sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2)``.
    A gray image scores 0; the authors call < 15 "not colourful", > 45 "quite colourful".
    """
    x = np.asarray(rgb, dtype=np.float64)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    sigma = np.sqrt(rg.std() ** 2 + yb.std() ** 2)
    mu = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    return float(sigma + 0.3 * mu)
