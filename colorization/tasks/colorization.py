"""LightningModule for colorization as regression: gray L in, normalised ab out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from colorization.color import AB_SCALE, gray_rgb, lab_norm_to_rgb
from colorization.losses import get_loss

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def rgb_metrics(prefix: str) -> MetricCollection:
    """Metrics on the RGB photo rebuilt from the true L and the predicted colour."""
    return MetricCollection(
        {
            "psnr": PeakSignalNoiseRatio(data_range=1.0),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
        },
        prefix=prefix,
    )


class ColorizationModule(L.LightningModule):
    """Trains ``net`` to predict normalised ab from normalised L.

    Args:
        net: ``(B, 1, H, W)`` L in [-1, 1] -> ``(B, 2, H, W)`` ab in [-1, 1].
        loss: ``l1``, ``mse`` or ``huber``, on normalised ab.
        optimizer: partial optimizer (``optim=`` group); gets ``params``.
        scheduler: partial LR scheduler (``scheduler=`` group) or ``None``; gets
            ``optimizer``; stepped each epoch, ``ReduceLROnPlateau`` on ``monitor``.
        monitor: metric the scheduler watches.
        grid_images: how many validation photos the image grid shows.

    Logged: ``train/loss``; ``val/`` and ``test/`` ``loss``, ``psnr`` and ``ssim`` (on RGB,
    data range 1; PSNR over all pixels of the split) and ``ab_l1`` (mean absolute ab error
    in Lab units, 0..~220).
    """

    def __init__(
        self,
        net: nn.Module,
        loss: str = "l1",
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        monitor: str = "val/loss",
        grid_images: int = 8,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.criterion = get_loss(loss)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.metrics = nn.ModuleDict({stage: rgb_metrics(f"{stage}/") for stage in ("val", "test")})
        self.ab_l1 = nn.ModuleDict({stage: MeanAbsoluteError() for stage in ("val", "test")})
        #: val/loss after each training epoch, for "did it learn?" summaries
        self.val_loss_history: list[float] = []
        #: resolved run config stored in checkpoints so they rebuild their own model
        self.run_config: dict | None = None

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.net(l_norm)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.criterion(self(batch["L"]), batch["ab"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch["L"]))
        return loss

    def _evaluate(self, batch: dict[str, torch.Tensor], batch_idx: int, stage: str) -> dict | None:
        l_norm, ab_true = batch["L"], batch["ab"]
        ab_pred = self(l_norm)
        n = len(l_norm)
        self.log(f"{stage}/loss", self.criterion(ab_pred, ab_true), prog_bar=True, batch_size=n)
        rgb_pred = lab_norm_to_rgb(l_norm, ab_pred)
        self.metrics[stage].update(rgb_pred, batch["rgb"])
        self.log_dict(self.metrics[stage], batch_size=n)
        self.ab_l1[stage].update(ab_pred * AB_SCALE, ab_true * AB_SCALE)
        self.log(f"{stage}/ab_l1", self.ab_l1[stage], batch_size=n)
        if batch_idx != 0:
            return None
        k = self.hparams.grid_images
        return {"images": {"gray": gray_rgb(l_norm[:k]), "pred": rgb_pred[:k], "truth": batch["rgb"][:k]}}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict | None:
        return self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict | None:
        return self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        fitting = self.trainer.state.fn == "fit" and not self.trainer.sanity_checking
        if fitting and "val/loss" in self.trainer.callback_metrics:
            self.val_loss_history.append(float(self.trainer.callback_metrics["val/loss"]))

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError("no optimizer: build the module with optimizer=... (config group optim=)")
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.hparams.monitor, "interval": "epoch"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["colorization_config"] = self.run_config
