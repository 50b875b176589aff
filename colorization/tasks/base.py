"""What every LightningModule of the project shares: optimizers from configs, and
checkpoints that carry the run's config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def evaluation_generator(seed: int, batch_idx: int, device: torch.device) -> torch.Generator:
    """The random numbers of evaluation batch ``batch_idx`` (noise, degradations): the same at
    every validation, so its scores change only with the model."""
    return torch.Generator(device=device).manual_seed(seed * 100_003 + batch_idx)


class ConfiguredModule(L.LightningModule):
    """Base class.

    Args:
        optimizer: partial optimizer (``optim=`` group); gets the trainable ``params``.
        scheduler: partial LR scheduler (``scheduler=`` group) or ``None``; gets the
            ``optimizer``; stepped each epoch, ``ReduceLROnPlateau`` watching ``monitor``.
        monitor: metric the scheduler watches.
    """

    def __init__(
        self,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        monitor: str = "val/loss",
    ) -> None:
        super().__init__()
        self.optimizer_factory, self.scheduler_factory, self.monitor = optimizer, scheduler, monitor
        #: resolved run config stored in checkpoints so they rebuild their own model
        self.run_config: dict | None = None

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError("no optimizer: build the module with optimizer=... (config group optim=)")
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return None  # a baseline with nothing to train
        return self.with_scheduler(self.optimizer_factory(params=params))

    def with_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        """``optimizer`` with the configured scheduler (stepped each epoch), as Lightning takes them."""
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "interval": "epoch"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["colorization_config"] = self.run_config
