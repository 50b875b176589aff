"""Timestamps of one ``train.py`` run up to its first training batch (experiments/scale).

Added to a run with::

    python train.py ... ++callbacks.first_step._target_=experiments.scale.first_step.FirstStep \
        ++trainer.max_steps=1

with the environment variable ``SCALE_FIRST_STEP_FILE`` naming the JSON file to write. The
run trains one step (``trainer.max_steps=1``) and exits as usual; the file holds
``time.time()`` at each of these points (the parent process takes the launch time itself,
just before starting the process):

- ``callback_built``: Hydra built this callback (``fit_and_test``): the interpreter has
  started, ``colorization`` and Lightning are imported, the config is composed and checked
  (preflight), the data module and the model are built;
- ``prepare_data_start`` / ``_end`` and ``setup_start`` / ``_end``: the first call of
  :meth:`LabDataModule.prepare_data` and of :meth:`LabDataModule.setup` (the data set-up:
  listing, set-up scan, split; for shards, reading the manifest and indices);
- ``sanity_check_start`` / ``_end``: Lightning's sanity validation (validation loader
  workers, two batches);
- ``train_start``: just before the training loop fetches its first batch;
- ``first_batch``: ``on_train_batch_start`` of batch 0 (its data fetched, before the step).

The data module's two methods are timed by wrapping them on the class when the callback is
built (a dedicated process; Lightning has no callback hook before ``prepare_data``).
"""

from __future__ import annotations

import functools
import json
import os
import time

import lightning as L

from colorization.data.datamodule import LabDataModule
from colorization.io import write_text_atomic

#: the environment variable that names the JSON file of timestamps
STAMPS_ENV = "SCALE_FIRST_STEP_FILE"


class FirstStep(L.Callback):
    """Records the timestamps above and writes them when the first training batch starts."""

    def __init__(self) -> None:
        self.path = os.environ.get(STAMPS_ENV)
        self.stamps: dict[str, float] = {"callback_built": time.time()}
        for name in ("prepare_data", "setup"):
            self._time_first_call(name)

    def _time_first_call(self, name: str) -> None:
        original = getattr(LabDataModule, name)
        stamps = self.stamps

        @functools.wraps(original)
        def timed(module, *args, **kwargs):
            start = time.time()
            try:
                return original(module, *args, **kwargs)
            finally:
                if f"{name}_start" not in stamps:
                    stamps[f"{name}_start"], stamps[f"{name}_end"] = start, time.time()

        setattr(LabDataModule, name, timed)

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stamps.setdefault("sanity_check_start", time.time())

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stamps.setdefault("sanity_check_end", time.time())

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stamps.setdefault("train_start", time.time())

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == 0 and "first_batch" not in self.stamps:
            self.stamps["first_batch"] = time.time()
            if self.path:
                write_text_atomic(self.path, json.dumps(self.stamps, indent=2) + "\n")
