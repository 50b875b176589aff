"""What a colorizer predicts, in one object: its channels and activation, the target it is
compared with, and how its prediction becomes the ab a user's photo gets and the RGB the
metrics score. Tasks (training) and ``colorize`` (inference) both go through it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from colorization.color import lab_norm_to_rgb, rgb_to_lab_norm


@dataclass(frozen=True)
class OutputSpace:
    """``ab``: normalised Lab chroma in [-1, 1] (Tanh; seeds 003/004); ``rgb``: sRGB in [0, 1]
    (sigmoid; seeds 000/002); ``lab``: normalised L and ab (restoration: the model also
    repairs the lightness it was given)."""

    name: str
    channels: int
    activation: type[nn.Module]

    def target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the prediction is compared with, from a Lab batch (``L``, ``ab``, ``rgb``)."""
        if self.name == "ab":
            return batch["ab"]
        if self.name == "rgb":
            return batch["rgb"]
        return torch.cat([batch["L"], batch["ab"]], dim=1)

    def to_rgb(self, l_norm: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """The photo a user sees: the prediction (with the true L for ``ab``) as sRGB in [0, 1]."""
        if self.name == "ab":
            return lab_norm_to_rgb(l_norm, pred)
        if self.name == "rgb":
            return pred.clamp(0, 1)
        return lab_norm_to_rgb(pred[:, :1], pred[:, 1:])

    def to_ab(self, pred: torch.Tensor) -> torch.Tensor:
        """The predicted chroma, normalised ab (B, 2, H, W): what colours a full-size photo."""
        if self.name == "ab":
            return pred
        if self.name == "rgb":
            return rgb_to_lab_norm(pred.clamp(0, 1))[1]
        return pred[:, 1:]


OUTPUTS = {
    "ab": OutputSpace("ab", 2, nn.Tanh),
    "rgb": OutputSpace("rgb", 3, nn.Sigmoid),
    "lab": OutputSpace("lab", 3, nn.Tanh),
}


def output_space(name: str) -> OutputSpace:
    """The output space called ``name``; a clear error for any other."""
    if name not in OUTPUTS:
        raise ValueError(f"unknown output {name!r}; choose from {sorted(OUTPUTS)}")
    return OUTPUTS[name]
