"""LightningModule for colorization as regression: gray L in, colour (ab or RGB) out."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from colorization.color import AB_SCALE, gray_rgb, rgb_to_lab_norm
from colorization.losses import get_loss
from colorization.metrics import AbAuC, AbR2, Colorfulness, ColorfulnessGap, DeltaE2000
from colorization.outputs import output_space
from colorization.tasks.base import ConfiguredModule, OptimizerFactory, SchedulerFactory


def rgb_metrics(prefix: str) -> MetricCollection:
    """Metrics on the RGB photo rebuilt from the true L and the predicted colour."""
    return MetricCollection(
        {
            "psnr": PeakSignalNoiseRatio(data_range=1.0),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
            "delta_e": DeltaE2000(),
            "colorfulness": Colorfulness("preds"),
            "colorfulness_true": Colorfulness("target"),
            "colorfulness_gap": ColorfulnessGap(),
            "ab_auc": AbAuC(),
            "ab_r2": AbR2(),
        },
        prefix=prefix,
    )


class ColorizationModule(ConfiguredModule):
    """Trains ``net`` to predict the colour of a gray photo from its normalised L.

    Args:
        net: ``(B, 1, H, W)`` L in [-1, 1] -> ``(B, 2, H, W)`` ab in [-1, 1] (``output=ab``)
            or ``(B, 3, H, W)`` sRGB in [0, 1] (``output=rgb``).
        output: ``ab`` (Lab chroma, the default) or ``rgb``; must match the net's.
        loss: ``l1``, ``mse`` or ``huber``, on the output (normalised ab, or RGB: seed
            000's MAE on colour is ``output=rgb loss=l1``).
        optimizer, scheduler, monitor: see :class:`ConfiguredModule`.
        grid_images: how many validation photos the image grid shows.
        channels_last: run the net in channels-last memory layout (faster convolutions on
            tensor-core GPUs with mixed precision; see experiments/perf).
        compile: ``torch.compile`` the net when a Trainer starts (pays off on long GPU runs;
            the first steps are slow while it compiles). Checkpoints are unaffected.

    Logged: ``train/loss``; ``val/`` and ``test/``: ``loss``; always on the RGB photo rebuilt
    from the prediction: ``psnr`` and ``ssim`` (data range 1; PSNR over all pixels of the
    split), ``delta_e`` (CIEDE2000), ``colorfulness``, ``colorfulness_true`` and
    ``colorfulness_gap``, ``ab_auc`` (Zhang et al.), ``ab_r2`` (see
    :mod:`colorization.metrics`); ``ab_l1`` (mean absolute ab error in Lab units, 0..~220).
    """

    #: constructor arguments of subclasses that are modules (kept out of the hyperparameters)
    modules_in_args: tuple[str, ...] = ()

    def __init__(
        self,
        net: nn.Module,
        output: str = "ab",
        loss: str = "l1",
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        monitor: str = "val/loss",
        grid_images: int = 8,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__(optimizer, scheduler, monitor)
        # modules and callables stay out of hparams: checkpoints must load with weights_only=True
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", *self.modules_in_args], logger=False)
        self.space = output_space(output)
        self.output = self.space.name
        self.net = net
        self.criterion = get_loss(loss)
        self.metrics = nn.ModuleDict({stage: rgb_metrics(f"{stage}/") for stage in ("val", "test")})
        self.ab_l1 = nn.ModuleDict({stage: MeanAbsoluteError() for stage in ("val", "test")})
        #: val/loss after each training epoch, for "did it learn?" summaries
        self.val_loss_history: list[float] = []

    def configure_model(self) -> None:
        """Speed switches, applied when a Trainer starts (not when a checkpoint is loaded)."""
        if self.hparams.get("channels_last"):
            self.net.to(memory_format=torch.channels_last)
        if self.hparams.get("compile") and not getattr(self, "_compiled", False):
            self.net.compile()  # in place: parameter names (and checkpoints) stay the same
            self._compiled = True

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        if self.hparams.get("channels_last"):  # in and out in the usual layout: metrics expect it
            return self.net(l_norm.contiguous(memory_format=torch.channels_last)).contiguous()
        return self.net(l_norm)

    def target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the net's output is compared with (:meth:`OutputSpace.target`)."""
        return self.space.target(batch)

    def to_rgb(self, l_norm: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """The photo a user sees (:meth:`OutputSpace.to_rgb`)."""
        return self.space.to_rgb(l_norm, pred)

    def prepare_batch(self, batch: dict[str, torch.Tensor], stage: str, batch_idx: int) -> dict[str, torch.Tensor]:
        """Model-specific input changes on the device (degradations, masks); none here."""
        return batch

    def network_input(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the net sees: the gray photo's normalised L."""
        return batch["L"]

    def model_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """-> (loss, prediction in the output space, extra values to log). Subclasses change this."""
        pred = self(self.network_input(batch))
        return self.criterion(pred, self.target(batch)), pred, {}

    def inference_spec(self) -> dict[str, object]:
        """What ``colorize`` needs to run the net alone, written into every checkpoint
        (``checkpoint["inference"]``): the output space, and whether the net samples (a VAE).
        A new task or output head says it here; no inference file changes."""
        return {"output": self.output, "samples": False}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["inference"] = self.inference_spec()

    def on_fit_start(self) -> None:
        if hasattr(self.net, "fit_batch"):
            self.fit_closed_form(self.trainer.datamodule)

    @torch.no_grad()
    def fit_closed_form(self, datamodule) -> None:
        """Closed-form baselines (a ``fit_batch`` / ``finish_fit`` net) see the training split once."""
        for batch in datamodule.device_batches("train", self.device):
            self.net.fit_batch(batch["L"], batch["ab"])
        self.net.finish_fit()

    def on_train_epoch_end(self) -> None:
        if not any(p.requires_grad for p in self.parameters()):
            self.trainer.should_stop = True  # a fixed or closed-form baseline: more epochs change nothing

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        batch = self.prepare_batch(batch, "train", batch_idx)
        loss, _, extra = self.model_step(batch)
        n = len(batch["L"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=n)
        for key, value in extra.items():
            self.log(f"train/{key}", value, on_step=False, on_epoch=True, batch_size=n)
        return loss if loss.requires_grad else None  # nothing to train: fitted or fixed baselines

    def _evaluate(self, batch: dict[str, torch.Tensor], batch_idx: int, stage: str) -> dict | None:
        batch = self.prepare_batch(batch, stage, batch_idx)
        l_norm = batch["L"]
        loss, pred, extra = self.model_step(batch)
        n = len(l_norm)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n)
        for key, value in extra.items():
            self.log(f"{stage}/{key}", value, batch_size=n)
        rgb_pred = self.to_rgb(l_norm, pred)
        self.metrics[stage].update(rgb_pred, batch["rgb"])
        self.log_dict(self.metrics[stage], batch_size=n)
        ab_pred = pred if self.output == "ab" else rgb_to_lab_norm(rgb_pred)[1]  # the ab of what is shown
        self.ab_l1[stage].update(ab_pred * AB_SCALE, batch["ab"] * AB_SCALE)
        self.log(f"{stage}/ab_l1", self.ab_l1[stage], batch_size=n)
        if batch_idx != 0:
            return None
        k = self.hparams.grid_images
        gray = gray_rgb(self.network_input(batch)[:k, :1])
        return {"images": {"gray": gray, "pred": rgb_pred[:k], "truth": batch["rgb"][:k]}}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict | None:
        return self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict | None:
        return self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        fitting = self.trainer.state.fn == "fit" and not self.trainer.sanity_checking
        if fitting and "val/loss" in self.trainer.callback_metrics:
            self.val_loss_history.append(float(self.trainer.callback_metrics["val/loss"]))
