"""What a colorizer predicts, in one object: its channels and activation, the target it is
compared with, and how its prediction becomes the ab a user's photo gets and the RGB the
metrics score. Tasks (training) and ``colorize`` (inference) both go through it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from colorization import ab_bins
from colorization.color import lab_norm_to_rgb, rgb_to_lab_norm
from colorization.inference.options import check_decoding


@dataclass(frozen=True)
class OutputSpace:
    """``ab``: normalised Lab chroma in [-1, 1] (Tanh; seeds 003/004); ``rgb``: sRGB in [0, 1]
    (sigmoid; seeds 000/002); ``lab``: normalised L and ab (restoration: the model also
    repairs the lightness it was given); ``bins``: classification over quantised ab
    (:class:`BinsSpace`). ``stride``: the net predicts at 1/stride of the input size."""

    name: str
    channels: int
    activation: type[nn.Module]
    stride: int = 1

    def target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the prediction is compared with, from a Lab batch (``L``, ``ab``, ``rgb``)."""
        if self.name == "ab":
            return batch["ab"]
        if self.name == "rgb":
            return batch["rgb"]
        return torch.cat([batch["L"], batch["ab"]], dim=1)

    def to_rgb(self, l_norm: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """The photo a user sees: the prediction (with the true L for ``ab``) as sRGB in [0, 1]."""
        if self.name in ("ab", "bins"):
            return lab_norm_to_rgb(l_norm, self.to_ab(pred, l_norm.shape[-2:]))
        if self.name == "rgb":
            return pred.clamp(0, 1)
        return lab_norm_to_rgb(pred[:, :1], pred[:, 1:])

    def to_ab(self, pred: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """The predicted chroma, normalised ab (B, 2, H, W): what colours a full-size photo.
        ``size``: the input's (H, W), for outputs predicted at a reduced resolution."""
        if self.name == "ab":
            return pred
        if self.name == "rgb":
            return rgb_to_lab_norm(pred.clamp(0, 1))[1]
        return pred[:, 1:]


#: Zhang et al.'s decoding temperature
TEMPERATURE = 0.38


@dataclass(frozen=True)
class BinsSpace(OutputSpace):
    """Classification over quantised ab (:mod:`colorization.ab_bins`), predicted at 1/4 of the
    input size (as Zhang et al.; memory stays bounded) and upsampled bilinearly.

    The net emits ``Q + 2`` channels: ``Q`` logits over the bins and a regression ab (Tanh)
    trained beside them. Decoding: ``(1 - mix) * annealed_mean(logits, temperature) + mix *
    regression``: ``mix = 0`` is pure Zhang, ``temperature`` and ``mix`` trade vivid colours
    against safe ones (experiments/benchmark plots the trade-off) and can be changed at
    inference (``colorize --temperature T --mix W``) without retraining.
    """

    temperature: float = TEMPERATURE
    mix: float = 0.0

    @property
    def bins(self) -> int:
        return self.channels - 2

    def target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["ab"]

    def logits(self, pred: torch.Tensor) -> torch.Tensor:
        return pred[:, : self.bins]

    def regression(self, pred: torch.Tensor) -> torch.Tensor:
        """The regression ab at the prediction's resolution, in [-1, 1]."""
        return torch.tanh(pred[:, self.bins :])

    def decode(self, pred: torch.Tensor) -> torch.Tensor:
        """The colour at the prediction's own (1/4) resolution, normalised ab."""
        ab = ab_bins.annealed_mean(self.logits(pred), ab_bins.bin_centres(), self.temperature)
        if self.mix > 0:
            ab = (1 - self.mix) * ab + self.mix * self.regression(pred)
        return ab

    def to_ab(self, pred: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        return upsample(self.decode(pred), self.stride, size)


def upsample(x: torch.Tensor, stride: int, size: tuple[int, int] | None) -> torch.Tensor:
    """A prediction at 1/``stride`` of the input back to the input's ``size`` (bilinear, the
    cells aligned with the input's top-left corner)."""
    if stride == 1:
        return x
    x = F.interpolate(x, scale_factor=stride, mode="bilinear", align_corners=False)
    return x if size is None else x[..., : size[0], : size[1]]


OUTPUTS = {
    "ab": OutputSpace("ab", 2, nn.Tanh),
    "rgb": OutputSpace("rgb", 3, nn.Sigmoid),
    "lab": OutputSpace("lab", 3, nn.Tanh),
    "bins": BinsSpace("bins", ab_bins.NUM_BINS + 2, nn.Identity, stride=4),
}


def output_space(name: str, temperature: float | None = None, mix: float | None = None) -> OutputSpace:
    """The output space called ``name``; a clear error for any other. ``temperature`` and
    ``mix`` set the decoding of ``bins`` (ignored by the others)."""
    if name not in OUTPUTS:
        raise ValueError(f"unknown output {name!r}; choose from {sorted(OUTPUTS)}")
    space = OUTPUTS[name]
    if isinstance(space, BinsSpace) and (temperature is not None or mix is not None):
        temperature = space.temperature if temperature is None else float(temperature)
        mix = space.mix if mix is None else float(mix)
        check_decoding(temperature, mix)
        space = BinsSpace(space.name, space.channels, space.activation, space.stride, temperature, mix)
    return space
