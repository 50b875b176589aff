"""Callbacks shared by every model."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torchvision.utils import make_grid

from colorization.io import save_image_atomic


class ImageGridLogger(L.Callback):
    """Each validation epoch, a grid of rows ``gray | predicted | truth``.

    Takes the ``images`` dict (``gray``, ``pred``, ``truth``: (N, 3, H, W) RGB in [0, 1])
    that the module's ``validation_step`` returns for the first batch, writes it as
    ``<dirpath>/val_epoch<NNN>.png`` and sends it to TensorBoard and W&B when they log.
    """

    def __init__(self, dirpath: str | Path | None = None, columns: tuple[str, ...] = ("gray", "pred", "truth")):
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.columns = tuple(columns)
        self._images: dict[str, torch.Tensor] | None = None
        self.saved: list[Path] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and not trainer.sanity_checking and isinstance(outputs, dict) and "images" in outputs:
            self._images = {k: v.detach() for k, v in outputs["images"].items()}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._images is None or trainer.sanity_checking:
            return
        rows = torch.stack([self._images[c] for c in self.columns], dim=1).flatten(0, 1)
        grid = make_grid(rows.float().cpu(), nrow=len(self.columns), padding=2, pad_value=1.0)
        self._images = None
        if not trainer.is_global_zero:
            return
        epoch, step = trainer.current_epoch, trainer.global_step
        dirpath = self.dirpath or Path(trainer.default_root_dir) / "images"
        self.saved.append(save_image_atomic(grid, dirpath / f"val_epoch{epoch:03d}.png"))
        caption = " | ".join(self.columns)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(f"val/grid ({caption})", grid, global_step=step)
            elif isinstance(logger, WandbLogger):
                logger.log_image(key="val/grid", images=[grid], caption=[caption], step=step)
