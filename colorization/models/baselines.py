"""Baselines that learn nothing, so a model can be compared with "leave it gray"."""

from __future__ import annotations

import torch
from torch import nn


class GrayBaseline(nn.Module):
    """Predicts ab = 0 everywhere: the gray photo itself."""

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return l_norm.new_zeros(l_norm.shape[0], 2, *l_norm.shape[2:])
