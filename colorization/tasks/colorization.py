"""LightningModule for colorization as regression: gray L in, colour (ab or RGB) out."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from colorization import ab_bins
from colorization.color import AB_SCALE, gray_rgb, rgb_to_lab_norm
from colorization.hints import sample_hints
from colorization.losses import SPREADS, colorfulness_shortfall, get_loss
from colorization.metrics import AbAuC, AbR2, Colorfulness, ColorfulnessGap, DeltaE2000
from colorization.outputs import TEMPERATURE, BinsSpace, output_space, upsample
from colorization.tasks.base import ConfiguredModule, OptimizerFactory, SchedulerFactory

log = logging.getLogger(__name__)

#: validation / test hints of batch i are drawn with seed HINT_SEED + i
HINT_SEED = 20170


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
        output: ``ab`` (Lab chroma, the default), ``rgb``, or ``bins`` (classification over
            quantised ab, Zhang et al. 2016: :mod:`colorization.ab_bins`; nets with
            ``supports_bins``: skip_cae, fusion, unet); must match the net's.
        loss: ``l1``, ``mse`` or ``huber``, on the output (normalised ab, or RGB: seed
            000's MAE on colour is ``output=rgb loss=l1``); with ``bins``, on the regression
            ab the net predicts beside the bins.
        temperature, mix: decoding of ``bins`` (:class:`~colorization.outputs.BinsSpace`):
            annealed-mean temperature, and the share of the regression ab in the colour.
        rebalance_lambda: ``bins`` class rebalancing (Zhang's lambda: 1 = none, 0.5 = Zhang's),
            from the training split's bin distribution, measured at fit start on
            ``rebalance_batches`` batches and stored in the checkpoint (buffer ``bin_weights``).
        regression_weight: weight of the regression loss beside the bins' cross-entropy.
        colorfulness_weight: weight of the colourfulness objective
            (:func:`~colorization.losses.colorfulness_shortfall`: how far each prediction's
            colourfulness falls short of its truth's); 0 disables it. ``colorfulness_spread``: ``std``
            (Hasler's metric as it is, which rewards thin streaks of extreme colour) or ``mad``
            (mean absolute deviation: no streaks; :func:`~colorization.losses.colorfulness_shortfall`).
        hints: user colour hints (Zhang et al. 2017, :mod:`colorization.hints`): the net also
            sees hint ab + mask channels, drawn from the true ab in training (random) and in
            validation / test (seeded by the batch index: the same every epoch); nets with
            ``hints`` (skip_cae, unet), whose ``net.hints`` must be true as well.
        freeze_epochs, encoder_lr_scale: for nets with a pretrained encoder
            (``freeze_encoder``): the encoder is frozen (no gradient, BatchNorm in eval mode) for
            the first ``freeze_epochs`` epochs, then trained at ``encoder_lr_scale`` times the
            learning rate of the rest.
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
        temperature: float = TEMPERATURE,
        mix: float = 0.0,
        rebalance_lambda: float = 0.5,
        rebalance_batches: int = 64,
        regression_weight: float = 1.0,
        colorfulness_weight: float = 0.0,
        colorfulness_spread: str = "std",
        freeze_epochs: int = 0,
        encoder_lr_scale: float = 1.0,
        hints: bool = False,
    ) -> None:
        super().__init__(optimizer, scheduler, monitor)
        # modules and callables stay out of hparams: checkpoints must load with weights_only=True
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", *self.modules_in_args], logger=False)
        self.space = output_space(output, temperature, mix)
        self.output = self.space.name
        if self.space.stride > 1 and not getattr(net, "supports_bins", False):
            raise ValueError(
                f"model.output={output}: {type(net).__name__} cannot predict bins; "
                "use model=skip_cae, model=fusion or model=unet, or model.output=ab"
            )
        weights = min(colorfulness_weight, regression_weight)
        if not 0.0 <= rebalance_lambda <= 1.0 or rebalance_batches < 1 or weights < 0:
            raise ValueError("model.rebalance_lambda must be in [0, 1], rebalance_batches >= 1, weights >= 0")
        if colorfulness_spread not in SPREADS:
            raise ValueError(f"model.colorfulness_spread={colorfulness_spread}: choose from {', '.join(SPREADS)}")
        if freeze_epochs < 0 or encoder_lr_scale < 0:
            raise ValueError("model.freeze_epochs and model.encoder_lr_scale must be >= 0")
        if bool(hints) != bool(getattr(net, "hints", False)):
            raise ValueError(
                f"model.hints={str(bool(hints)).lower()}: {type(net).__name__} "
                + ("takes no hint channels; use model=skip_cae or model=unet" if hints else "was built with hints")
            )
        self.net = net
        self.criterion = get_loss(loss)
        if isinstance(self.space, BinsSpace):  # class weights of the training split, in the checkpoint
            self.register_buffer("bin_weights", torch.ones(self.space.bins))
            self.register_buffer("bin_prior", torch.full((self.space.bins,), 1.0 / self.space.bins))
            self.register_buffer("bin_prior_ready", torch.tensor(False))
        self.metrics = nn.ModuleDict({stage: rgb_metrics(f"{stage}/") for stage in ("val", "test")})
        self.ab_l1 = nn.ModuleDict({stage: MeanAbsoluteError() for stage in ("val", "test")})
        #: val/loss of each training epoch (item i: epoch i; NaN: not validated, or before a resume
        #: from a checkpoint that did not store it), for "did it learn?" summaries; in checkpoints
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
        """Model-specific input changes on the device (degradations, masks): here the colour
        hints of a ``hints`` model (random in training, seeded by ``batch_idx`` otherwise)."""
        if self.hparams.get("hints") and "hints" not in batch:
            generator = None if stage == "train" else torch.Generator().manual_seed(HINT_SEED + batch_idx)
            batch = {**batch, "hints": sample_hints(batch["ab"], generator)}
        return batch

    def network_input(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the net sees: the gray photo's normalised L (and the hint channels)."""
        if self.hparams.get("hints"):
            return torch.cat([batch["L"], batch["hints"]], dim=1)
        return batch["L"]

    def model_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """-> (loss, prediction in the output space, extra values to log). Subclasses change this."""
        pred = self(self.network_input(batch))
        extra: dict[str, torch.Tensor] = {}
        if isinstance(self.space, BinsSpace):
            loss = self.bins_loss(pred, batch, extra)
        else:
            loss = self.criterion(pred, self.target(batch))
        if self.hparams.get("colorfulness_weight"):
            spread = self.hparams.get("colorfulness_spread", "std")  # "std" before the option existed
            shortfall = colorfulness_shortfall(self.to_rgb(batch["L"], pred), batch["rgb"], spread)
            extra["colorfulness_shortfall"] = shortfall.detach()
            loss = loss + self.hparams.colorfulness_weight * shortfall
        return loss, pred, extra

    def bins_loss(self, pred: torch.Tensor, batch: dict[str, torch.Tensor], extra: dict) -> torch.Tensor:
        """Rebalanced cross-entropy on soft-encoded bins at the prediction's resolution, plus the
        regression loss on the regression ab (upsampled to full size)."""
        space = self.space
        ab_small = F.avg_pool2d(batch["ab"], space.stride, ceil_mode=True)
        targets = ab_bins.soft_encode(ab_small, ab_bins.bin_centres().to(pred.device))
        ce = ab_bins.rebalanced_cross_entropy(space.logits(pred), targets, self.bin_weights)
        regression = upsample(space.regression(pred), space.stride, batch["ab"].shape[-2:])
        reg = self.criterion(regression, batch["ab"])
        extra.update(cross_entropy=ce.detach(), regression=reg.detach())
        return ce + self.hparams.get("regression_weight", 1.0) * reg

    @torch.no_grad()
    def measure_bin_prior(self, datamodule) -> None:
        """The training split's ab-bin distribution (soft-encoded, at the prediction's
        resolution) over ``rebalance_batches`` batches of training crops drawn at random
        (seeded) -> smoothed
        prior and rebalancing weights, kept in buffers (so in checkpoints; a resumed run
        keeps them)."""
        centres = ab_bins.bin_centres().to(self.device)
        counts = torch.zeros(self.space.bins, dtype=torch.float64)  # on the CPU: MPS has no float64
        crops = self.hparams.get("rebalance_batches", 64) * datamodule.batch_size
        for raw in datamodule.sample_loader("train", crops):
            batch = datamodule.device_batch(raw, self.device)
            ab_small = F.avg_pool2d(batch["ab"], self.space.stride, ceil_mode=True)
            counts += ab_bins.soft_encode(ab_small, centres).sum(dim=(0, 2, 3)).cpu().double()
        prior = ab_bins.smoothed_prior(counts, centres.cpu())
        self.bin_prior.copy_(prior.to(self.bin_prior.device))
        weights = ab_bins.rebalance_weights(prior, self.hparams.get("rebalance_lambda", 0.5))
        self.bin_weights.copy_(weights.to(self.bin_weights.device))
        self.bin_prior_ready.fill_(True)
        w = self.bin_weights
        log.info("bins: prior from %d pixels; weights %.2f .. %.2f", int(counts.sum()), w.min(), w.max())

    def set_decoding(self, temperature: float | None = None, mix: float | None = None) -> None:
        """Decode ``bins`` at another temperature / mix (``None``: keep); later checkpoints store it."""
        temperature = self.space.temperature if temperature is None else float(temperature)
        mix = self.space.mix if mix is None else float(mix)
        self.space = output_space(self.output, temperature, mix)
        self.hparams.temperature, self.hparams.mix = temperature, mix

    def inference_spec(self) -> dict[str, object]:
        """What ``colorize`` needs to run the net alone, written into every checkpoint
        (``checkpoint["inference"]``): the output space, whether the net samples (a VAE), and
        the decoding of ``bins``. A new task or output head says it here; no inference file changes."""
        spec: dict[str, object] = {"output": self.output, "samples": False}
        if self.hparams.get("hints"):
            spec["hints"] = True
        if isinstance(self.space, BinsSpace):
            spec.update(temperature=float(self.space.temperature), mix=float(self.space.mix))
        return spec

    def configure_optimizers(self):
        """As :class:`ConfiguredModule`, with a pretrained encoder (``encoder_parameters``) in
        its own parameter group at ``encoder_lr_scale`` times the learning rate."""
        encoder = getattr(self.net, "encoder_parameters", None)
        if encoder is None or self.optimizer_factory is None:
            return super().configure_optimizers()
        encoder_params = encoder()
        ids = {id(p) for p in encoder_params}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        optimizer = self.optimizer_factory(params=[{"params": rest}, {"params": encoder_params}])
        optimizer.param_groups[1]["lr"] = optimizer.param_groups[0]["lr"] * self.hparams.get("encoder_lr_scale", 1.0)
        return self.with_scheduler(optimizer)

    def freeze_for_epoch(self) -> None:
        """A pretrained encoder is frozen during the first ``freeze_epochs`` epochs."""
        if hasattr(self.net, "freeze_encoder"):
            self.net.freeze_encoder(self.current_epoch < self.hparams.get("freeze_epochs", 0))

    def on_train_epoch_start(self) -> None:
        self.freeze_for_epoch()

    def on_train_start(self) -> None:
        self.freeze_for_epoch()  # Lightning skips on_train_epoch_start when it resumes mid-epoch

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["inference"] = self.inference_spec()
        checkpoint["val_loss_history"] = list(self.val_loss_history)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "fit":  # a resume (testing the best one keeps this run's)
            self.val_loss_history = [float(v) for v in checkpoint.get("val_loss_history", [])]

    def on_fit_start(self) -> None:
        if hasattr(self.net, "fit_batch"):
            self.fit_closed_form(self.trainer.datamodule)
        if isinstance(self.space, BinsSpace) and not bool(self.bin_prior_ready):
            self.measure_bin_prior(self.trainer.datamodule)

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
        if self.output in ("ab", "bins"):
            ab_pred = self.space.to_ab(pred, l_norm.shape[-2:]).contiguous()
        else:  # the ab of what is shown (rgb; lab: with its repaired L)
            ab_pred = rgb_to_lab_norm(rgb_pred)[1]
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
            epoch, history = self.current_epoch, self.val_loss_history
            self.val_loss_history = history[:epoch] + [math.nan] * (epoch - len(history))
            self.val_loss_history.append(float(self.trainer.callback_metrics["val/loss"]))
