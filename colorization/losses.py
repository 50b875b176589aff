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


def colorfulness_shortfall(pred_rgb: torch.Tensor, true_rgb: torch.Tensor) -> torch.Tensor:
    """The colourfulness objective: by how much each prediction's Hasler-Suesstrunk
    colourfulness falls short of its truth's, averaged over the batch, on the 0..1 scale
    (metric / 100).

    Regression of ab is rewarded for averaging colours towards gray; this term pushes each
    photo's colourfulness up to its truth's (DDColor adds a colourfulness term for the same
    reason; theirs rewards colourfulness without bound, this one stops at the truth's, so it
    cannot buy vividness with invented colours). Differentiable in the predicted RGB.
    """
    predicted = colorfulness_batch(pred_rgb, dtype=torch.float32, eps=1e-6)
    with torch.no_grad():
        target = colorfulness_batch(true_rgb).float()
    return F.relu(target - predicted).mean() / 100
