"""Callbacks that tests plug into real train.py runs through Hydra overrides."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """SIGKILL the training process once ``step`` optimizer steps are done: no clean-up, no
    last checkpoint, as when a node dies or a job is pre-empted without notice."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
