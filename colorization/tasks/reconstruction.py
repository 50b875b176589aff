"""LightningModule for seed 002's digit autoencoders: reconstruction, denoising, VAE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio

from colorization.losses import get_loss
from colorization.tasks.base import ConfiguredModule, OptimizerFactory, SchedulerFactory, evaluation_generator
from colorization.tasks.vae import kl_to_standard_normal, reparameterize


class ReconstructionModule(ConfiguredModule):
    """Trains ``net`` (:class:`~colorization.models.LinearAE` or ``LinearVAE``) to rebuild images.

    Args:
        loss: ``mse``, ``bce`` or ``l1`` per pixel (mean).
        noise_std: > 0 makes it a denoising autoencoder: Gaussian noise of this std is added
            to the input on the device (fixed per batch in validation), the clean image is
            the target. Logged: ``psnr`` of the output and ``psnr_input`` of the noisy input.
        kl_weight: weight of KL(q(z|x) || N(0, I)) for variational nets (1/64 with a
            pixel-mean loss on 8x8 digits is the textbook ELBO, scaled by 1/64).
    """

    def __init__(
        self,
        net: nn.Module,
        loss: str = "mse",
        noise_std: float = 0.0,
        kl_weight: float = 1.0 / 64,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        monitor: str = "val/loss",
        grid_images: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__(optimizer, scheduler, monitor)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net, self.criterion = net, get_loss(loss)

    def corrupt(self, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if self.hparams.noise_std <= 0:
            return x
        generator = None
        if not self.training:
            generator = evaluation_generator(self.hparams.seed, batch_idx, x.device)
        noise = torch.randn(x.shape, device=x.device, generator=generator)
        return (x + self.hparams.noise_std * noise).clamp(0, 1)

    def step(self, batch: dict[str, torch.Tensor], batch_idx: int, stage: str) -> torch.Tensor:
        clean = batch["image"]
        noisy = self.corrupt(clean, batch_idx)
        if getattr(self.net, "variational", False):
            mu, logvar = self.net.encode(noisy)
            z = reparameterize(mu, logvar, self.training)
            recon = self.net.decode(z)
            kl = kl_to_standard_normal(mu, logvar)
            loss = self.criterion(recon, clean) + self.hparams.kl_weight * kl
            self.log(f"{stage}/kl", kl, batch_size=len(clean))
        else:
            recon = self.net(noisy)
            loss = self.criterion(recon, clean)
        n = len(clean)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n)
        if stage != "train":
            self.log(f"{stage}/psnr", peak_signal_noise_ratio(recon, clean, data_range=1.0), batch_size=n)
            if self.hparams.noise_std > 0:
                self.log(f"{stage}/psnr_input", peak_signal_noise_ratio(noisy, clean, data_range=1.0), batch_size=n)
        self._last = {"input": noisy, "reconstruction": recon, "truth": clean}
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.step(batch, batch_idx, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict | None:
        self.step(batch, batch_idx, "val")
        if batch_idx != 0:
            return None
        k = self.hparams.grid_images
        images = {name: F.interpolate(x[:k], scale_factor=4, mode="nearest") for name, x in self._last.items()}
        return {"images": images}

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.step(batch, batch_idx, "test")
