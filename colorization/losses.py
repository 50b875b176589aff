"""Reconstruction losses by name (config key ``model.loss``), for every task."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

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
