"""Denoising / restoration autoencoder (seeds 000 and 002): a degraded gray photo in, the
clean photo (its L and its colour) out."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio

from colorization.color import L_CENTER, L_SCALE
from colorization.data.degrade import Degradation
from colorization.tasks.base import evaluation_generator
from colorization.tasks.colorization import ColorizationModule


def to_unit(l_norm: torch.Tensor) -> torch.Tensor:
    """Normalised L [-1, 1] -> L / 100 in [0, 1]."""
    return (l_norm * L_SCALE + L_CENTER) / 100


def from_unit(l_unit: torch.Tensor) -> torch.Tensor:
    return (l_unit * 100 - L_CENTER) / L_SCALE


class RestorationModule(ColorizationModule):
    """Degrades L on the device, trains ``net`` (``output=lab``) to give back clean L and ab.

    Validation and test degradations are fixed (seeded by ``seed`` and the batch index), so
    epochs compare like with like. Also logged: ``psnr_l`` of the restored lightness and
    ``psnr_l_input`` of the degraded input, both against the clean L (data range 100).
    """

    modules_in_args = ("degradation",)

    def __init__(self, net: nn.Module, degradation: Degradation, output: str = "lab", seed: int = 0, **kwargs):
        if output != "lab":
            raise ValueError("restoration predicts L and ab: output must be 'lab'")
        super().__init__(net, output=output, **kwargs)
        self.degradation, self.seed = degradation, seed

    def prepare_batch(self, batch: dict[str, torch.Tensor], stage: str, batch_idx: int) -> dict[str, torch.Tensor]:
        generator = None
        if stage != "train":
            generator = evaluation_generator(self.seed, batch_idx, batch["L"].device)
        degraded = self.degradation(to_unit(batch["L"]), generator=generator)
        return {**batch, "L_degraded": from_unit(degraded)}

    def network_input(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["L_degraded"]

    def model_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        loss, pred, _ = super().model_step(batch)
        clean = to_unit(batch["L"])
        extra = {
            "psnr_l": peak_signal_noise_ratio(to_unit(pred[:, :1]).clamp(0, 1), clean, data_range=1.0),
            "psnr_l_input": peak_signal_noise_ratio(to_unit(batch["L_degraded"]), clean, data_range=1.0),
        }
        return loss, pred, extra
