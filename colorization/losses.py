"""Reconstruction losses by name (config key ``model.loss``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,  # MAE, seed 000
    "mse": F.mse_loss,  # seeds 002 and 004
    "huber": F.smooth_l1_loss,  # L1 far from the target, L2 near it (beta = 1)
}


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss function called ``name`` (``l1``, ``mse`` or ``huber``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}")
    return LOSSES[name]
