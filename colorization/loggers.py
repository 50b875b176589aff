"""Loggers that keep a run's history when the run is resumed."""

from __future__ import annotations

import csv
from pathlib import Path

from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from colorization.io import atomic_path


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued, never
    deleted: a run resumed in its own folder (``hydra.run.dir=<run> ckpt_path=last``) keeps
    every row logged before the interruption (rows logged between the last checkpoint and a
    kill appear again, with the same steps, when the resumed run re-does those steps). A new
    column rewrites the file under a temporary name, so a kill then loses nothing either."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        path = Path(self.metrics_file_path)
        if isinstance(self._fs, LocalFileSystem) and path.is_file() and path.stat().st_size:
            with path.open(newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])
            data = path.read_bytes()
            if not data.endswith(b"\n"):  # a row cut short by a kill: dropped (its numbers may be cut too)
                with path.open("rb+") as file:
                    file.truncate(data.rfind(b"\n") + 1)

    def _check_log_dir_exists(self) -> None:
        """Lightning deletes an existing metrics.csv here; we keep it."""

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        if not isinstance(self._fs, LocalFileSystem):
            super()._rewrite_with_new_header(fieldnames)
            return
        with open(self.metrics_file_path, newline="") as file:
            rows = list(csv.DictReader(file))
        with atomic_path(self.metrics_file_path) as tmp, tmp.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)


class CSVLogger(LightningCSVLogger):
    """``<save_dir>/<name>/metrics.csv``, continued across resumes (:class:`AppendingExperimentWriter`)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


class WandbLogger(LightningWandbLogger):
    """Lightning's W&B logger, without the ``anonymous`` setting it always passes (``None``),
    which W&B answers with a deprecation notice on every run."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
