"""Reconstruction losses by name (config key ``model.loss``), for every task."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from colorization.color import colorfulness_batch

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,  # MAE, seed 000
    "mse": F.mse_loss,  # seeds 002 and 004
    "huber": F.smooth_l1_loss,  # L1 far from the target, L2 near it (beta = 1)
    "bce": F.binary_cross_entropy,  # targets in [0, 1] only: the digit autoencoders (seed 002)
}


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss function called ``name`` (``l1``, ``mse``, ``huber`` or ``bce``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}")
    return LOSSES[name]


#: the colourfulness objective's spread term (``model.colorfulness_spread``)
SPREADS = ("mad", "std")


def objective_colorfulness(
    rgb: torch.Tensor, spread: str = "std", dtype: torch.dtype = torch.float32, eps: float = 1e-6
) -> torch.Tensor:
    """Hasler-Suesstrunk colourfulness of (B, 3, H, W) sRGB in [0, 1] on 0..255 -> (B,), with the
    spread of the opponent channels measured as ``std`` (the metric's own) or ``mad`` (mean
    absolute deviation from the mean)."""
    if spread == "std":
        return colorfulness_batch(rgb, dtype=dtype, eps=eps)
    x = rgb.to(dtype).flatten(2) * 255
    rg = x[:, 0] - x[:, 1]
    yb = 0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]
    mean_rg, mean_yb = rg.mean(1, keepdim=True), yb.mean(1, keepdim=True)
    mad_rg = (rg - mean_rg).abs().mean(1)
    mad_yb = (yb - mean_yb).abs().mean(1)
    return torch.sqrt(mad_rg**2 + mad_yb**2 + eps) + 0.3 * torch.sqrt(mean_rg[:, 0] ** 2 + mean_yb[:, 0] ** 2 + eps)


def colorfulness_shortfall(pred_rgb: torch.Tensor, true_rgb: torch.Tensor, spread: str = "std") -> torch.Tensor:
    """The colourfulness objective: by how much each prediction's colourfulness falls short of
    its truth's, averaged over the batch, on the 0..1 scale (metric / 100).

    Regression of ab is rewarded for averaging colours towards gray; this term pushes each
    photo's colourfulness up to its truth's (DDColor adds a colourfulness term for the same
    reason; theirs rewards colourfulness without bound, this one stops at the truth's, so it
    cannot buy vividness with invented colours). Differentiable in the predicted RGB.

    ``spread``: ``std`` (the default) is Hasler and Suesstrunk's metric as it is: its spread
    term grows with the square of each pixel's departure from the mean colour while the L1 loss
    beside it grows linearly, and its gradient pushes each pixel in proportion to how far it
    already departs, so the cheapest way to the truth's colourfulness is a few extreme pixels
    (thin cyan streaks along edges in the cross-domain benchmark). ``mad`` measures the spread
    as the mean absolute deviation: linear in every pixel, it pushes all pixels alike, and a
    streak earns at most about twice what the same amount of colour spread over a region does
    (``std``: without bound). Measured at one budget (experiments/benchmark/README.md): ``mad``
    has no streaks and better PSNR and SSIM, but broad wrong casts cost it dE2000 and FID.
    """
    if spread not in SPREADS:
        raise ValueError(f"colourfulness spread {spread!r}: choose from {', '.join(SPREADS)}")
    predicted = objective_colorfulness(pred_rgb, spread)
    with torch.no_grad():
        target = objective_colorfulness(true_rgb, spread, dtype=torch.float64, eps=0.0).float()
    return F.relu(target - predicted).mean() / 100
