"""Callbacks shared by every model."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torchvision.utils import make_grid

from colorization.io import save_image_atomic


class ImageGridLogger(L.Callback):
    """Each validation epoch, a grid with one row per photo: ``gray | predicted | truth``.

    Takes the ``images`` dict that the module's ``validation_step`` returns for the first
    batch (column name -> (N, 3, H, W) RGB in [0, 1], in column order; e.g. the VAE adds
    samples), writes it as ``<dirpath>/val_epoch<NNN>.png`` and sends it to TensorBoard and
    W&B when they log.
    """

    def __init__(self, dirpath: str | Path | None = None):
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self._images: dict[str, torch.Tensor] | None = None
        self.saved: list[Path] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and not trainer.sanity_checking and isinstance(outputs, dict) and "images" in outputs:
            self._images = {k: v.detach() for k, v in outputs["images"].items()}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._images is None or trainer.sanity_checking:
            return
        columns = list(self._images)
        rows = torch.stack([self._images[c] for c in columns], dim=1).flatten(0, 1)
        grid = make_grid(rows.float().cpu(), nrow=len(columns), padding=2, pad_value=1.0)
        self._images = None
        if not trainer.is_global_zero:
            return
        epoch, step = trainer.current_epoch, trainer.global_step
        dirpath = self.dirpath or Path(trainer.default_root_dir) / "images"
        self.saved.append(save_image_atomic(grid, dirpath / f"val_epoch{epoch:03d}.png"))
        caption = " | ".join(columns)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(f"val/grid ({caption})", grid, global_step=step)
            elif isinstance(logger, WandbLogger):
                logger.log_image(key="val/grid", images=[grid], caption=[caption], step=step)


class LatentFigures(L.Callback):
    """At the end of training, figures of an autoencoder's latent space (seed 002).

    Writes to ``dirpath`` (default ``<run dir>/images``): ``reconstructions.png`` (rows:
    input, reconstruction, truth for validation images), ``interpolation.png`` (decodings
    along the straight line between the codes of two validation images) and, for
    variational nets, ``prior_samples.png`` (decodings of z ~ N(0, I)).
    """

    def __init__(self, dirpath: str | Path | None = None, n_images: int = 16, steps: int = 10, seed: int = 0):
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.n_images, self.steps, self.seed = n_images, steps, seed
        self.saved: dict[str, Path] = {}

    @staticmethod
    def _code(net, x: torch.Tensor) -> torch.Tensor:
        code = net.encode(x)
        return code[0] if isinstance(code, tuple) else code  # a VAE's code is its mean

    @torch.no_grad()
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        net, dirpath = pl_module.net, self.dirpath or Path(trainer.default_root_dir) / "images"
        was_training = net.training
        net.eval()
        images = torch.stack([trainer.datamodule.datasets["val"][i][0] for i in range(self.n_images)])
        images = images.to(pl_module.device)
        recon = net(images)
        rows = torch.cat([images, recon]).cpu()
        self._save(rows, self.n_images, dirpath / "reconstructions.png")
        a, b = self._code(net, images[:1]), self._code(net, images[1:2])
        weights = torch.linspace(0, 1, self.steps, device=a.device)[:, None]
        self._save(net.decode(a + weights * (b - a)).cpu(), self.steps, dirpath / "interpolation.png")
        if getattr(net, "variational", False):
            generator = torch.Generator(device=a.device).manual_seed(self.seed)
            z = torch.randn(64, net.latent_dim, device=a.device, generator=generator)
            self._save(net.decode(z).cpu(), 8, dirpath / "prior_samples.png")
        net.train(was_training)

    def _save(self, images: torch.Tensor, nrow: int, path: Path) -> None:
        images = torch.nn.functional.interpolate(images.float(), scale_factor=4, mode="nearest")
        self.saved[path.stem] = save_image_atomic(make_grid(images, nrow=nrow, pad_value=1.0), path)


class LastCheckpoint(Checkpoint):
    """``<dirpath>/last.ckpt``: the run's latest state, to resume from (``ckpt_path=last``).

    Written at the end of every training epoch (after its validation), every
    ``every_n_train_steps`` optimizer steps (mid-epoch too: a killed run loses at most that
    many steps) and when training stops, under a temporary name renamed into place, so a
    kill while writing leaves the previous one intact. (Lightning's
    ``ModelCheckpoint(save_last=True)`` refreshes last.ckpt only when it saves a new best.)
    As a :class:`Checkpoint` it runs after the other callbacks, whose state it saves.
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int | None = None) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps or 0
        self._saved_step: int | None = None

    @property
    def path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def save(self, trainer: L.Trainer) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:  # debug=fdr writes no checkpoints
            return
        tmp = self.dirpath / f".last.ckpt.{trainer.global_step}.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)  # the full training state; rank 0 writes, all wait
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_train_steps and step > 0 and step % self.every_n_train_steps == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._saved_step != trainer.global_step:
            self.save(trainer)


class WandbTestTable(L.Callback):
    """With ``logger=wandb``: the first test batch as a ``wandb.Table`` (``test/predictions``),
    one row per photo and one image column per kind (gray | pred | truth, VAE samples), so the
    runs of a study can be compared photo by photo. Does nothing without a W&B logger."""

    def __init__(self, max_rows: int = 8) -> None:
        self.max_rows = max_rows

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if batch_idx != 0 or not loggers or not trainer.is_global_zero:
            return
        if not (isinstance(outputs, dict) and "images" in outputs):
            return
        import wandb

        images = {k: v.detach().float().clamp(0, 1).cpu() for k, v in outputs["images"].items()}
        columns = list(images)
        rows = min(self.max_rows, *(len(v) for v in images.values()))
        table = wandb.Table(columns=["photo", *columns])
        for i in range(rows):
            table.add_data(i, *(wandb.Image(images[c][i].permute(1, 2, 0).numpy()) for c in columns))
        for logger in loggers:
            logger.experiment.log({"test/predictions": table})
