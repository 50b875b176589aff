"""LightningModule for the conditional VAE colorizer: ELBO with an (optionally annealed) KL weight."""

from __future__ import annotations

import torch

from colorization.color import gray_rgb
from colorization.tasks.colorization import ColorizationModule


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dimensions, mean over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, sample: bool) -> torch.Tensor:
    """z = mu + sigma * eps (eps ~ N(0, I)) when ``sample`` (training), else the mean mu."""
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu


class VAEColorizationModule(ColorizationModule):
    """Trains a :class:`~colorization.models.ConditionalVAE`.

    Loss: reconstruction (``loss`` on the output, pixel mean) + ``kl_weight(step) * KL``, with
    ``kl_weight`` rising linearly from 0 over ``kl_anneal_steps`` (0: constant). Validation
    metrics use the prior's mean colorization (z = 0): the truth is not known at inference.
    Logged besides the loss: ``recon``, ``kl``, ``kl_weight``. The image grid shows
    ``samples`` colorizations from prior draws next to the mean one.
    """

    def __init__(self, *args, kl_weight: float = 1e-3, kl_anneal_steps: int = 0, samples: int = 3, **kwargs):
        super().__init__(*args, **kwargs)
        if self.hparams.get("colorfulness_weight"):
            raise ValueError("model.colorfulness_weight: the VAE's ELBO has no colourfulness term; set it to 0")
        self.kl_weight, self.kl_anneal_steps, self.samples = kl_weight, kl_anneal_steps, samples

    def inference_spec(self) -> dict[str, object]:
        return {**super().inference_spec(), "samples": True}

    def current_kl_weight(self) -> float:
        if self.kl_anneal_steps <= 0:
            return self.kl_weight
        return self.kl_weight * min(1.0, self.global_step / self.kl_anneal_steps)

    def model_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        l_norm, target = batch["L"], self.target(batch)
        mu, logvar = self.net.encode(l_norm, target)
        z = reparameterize(mu, logvar, self.training)
        posterior_pred = self.net.decode(l_norm, z)
        recon = self.criterion(posterior_pred, target)
        kl = kl_to_standard_normal(mu, logvar)
        weight = self.current_kl_weight()
        pred = posterior_pred if self.training else self.net(l_norm)
        extra = {"recon": recon, "kl": kl, "kl_weight": torch.tensor(weight)}
        return recon + weight * kl, pred, extra

    def sample(self, l_norm: torch.Tensor, n: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """``n`` colorizations of each photo, one prior draw of z each."""
        return [self.net.decode(l_norm, self.net.sample_z(len(l_norm), l_norm, generator)) for _ in range(n)]

    def _evaluate(self, batch: dict[str, torch.Tensor], batch_idx: int, stage: str) -> dict | None:
        result = super()._evaluate(batch, batch_idx, stage)
        if result is None:
            return None
        l_norm = batch["L"][: self.hparams.grid_images]
        generator = torch.Generator(device=l_norm.device).manual_seed(0)
        samples = self.sample(l_norm, self.samples, generator)
        images = {"gray": gray_rgb(l_norm), "mean (z = 0)": result["images"]["pred"]}
        images.update({f"sample {i + 1}": self.to_rgb(l_norm, s) for i, s in enumerate(samples)})
        images["truth"] = result["images"]["truth"]
        return {"images": images}
