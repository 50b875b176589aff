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
    predicted = colorfulness_batch(pred_rgb, dtype=torch.float32, eps=1e-6, spread=spread)
    with torch.no_grad():
        target = colorfulness_batch(true_rgb, spread=spread).float()
    return F.relu(target - predicted).mean() / 100
