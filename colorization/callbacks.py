"""Callbacks shared by every model."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
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


def rng_states() -> dict[str, Any]:
    """Every random generator a training step may draw from (dropout, colour hints, a model's
    noise): torch's (CPU, and CUDA once in use), numpy's and Python's, as plain values and
    tensors (a checkpoint loads with ``weights_only=True``)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 - the global one, that code draws from
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "python": random.getstate(),
    }  # fmt: skip
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))  # noqa: NPY002
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumeState(L.Callback):
    """What a checkpoint must hold, beyond Lightning's, for a resumed run to go on exactly as
    an uninterrupted one: the random generators (:func:`rng_states`; set back when training
    starts, so set-up and the sanity check draw nothing that counts) and, in a checkpoint
    written mid-epoch, the running sums of the values logged ``on_epoch`` in training
    (``train/loss_epoch`` would average only the batches after the resume). train.py adds it
    to every run; checkpoints without it resume as before.
    """

    KEY = "resume_state"

    def __init__(self) -> None:
        self._rng: dict[str, Any] | None = None
        self._sums: dict[str, dict[str, torch.Tensor]] = {}
        self._sums_epoch: int | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        state: dict[str, Any] = {"rng": rng_states()}
        progress = trainer.fit_loop.epoch_progress.current
        if trainer.training and progress.processed == progress.completed:  # inside an epoch, not at its end
            state["epoch"] = trainer.current_epoch
            state["epoch_sums"] = {
                key: {name: getattr(metric, name).detach().cpu() for name in ("value", "cumulated_batch_size")
                      if hasattr(metric, name)}
                for key, metric in trainer.fit_loop.epoch_loop._results.items()
                if metric.is_tensor and metric.meta.on_epoch
            }  # fmt: skip
        checkpoint[self.KEY] = state

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(self.KEY) or {}
        self._rng = state.get("rng")
        self._sums, self._sums_epoch = state.get("epoch_sums", {}), state.get("epoch")

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        if self._rng is not None:
            set_rng_states(self._rng)
            self._rng = None
        if trainer.current_epoch != self._sums_epoch:
            self._sums = {}  # Lightning goes on with the next epoch (the checkpoint was written at its last batch)

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        """After the first batch of a resumed epoch has logged (Lightning creates the sums then):
        add the sums of the batches before the checkpoint, as the uninterrupted run's sums hold them."""
        if not self._sums:
            return
        results = trainer.fit_loop.epoch_loop._results
        for key, saved in self._sums.items():
            metric = results.get(key)
            if metric is None or not metric.is_tensor:
                continue
            if metric.meta.is_max_reduction or metric.meta.is_min_reduction:
                metric.value = metric.meta.reduce_fx(saved["value"].to(metric.value), metric.value)
            else:  # a sum, or a mean: the sum of value x batch size, and the sum of batch sizes
                for name, before in saved.items():
                    now = getattr(metric, name)
                    setattr(metric, name, before.to(now) + now)  # the order of the uninterrupted run's sums
            metric._computed = None
        self._sums = {}
