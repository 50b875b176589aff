"""W&B runs that line up into one dashboard per study.

``logger=wandb`` runs get, unless the config sets them: ``group`` (the study: the multirun
folder, prefixed by the experiment's name), ``job_type`` (``task_name``), a readable ``name``
(the overrides that differ between the runs of the sweep, e.g. ``optim=rmsprop``) and tags
(the model and data options). The swept keys are recorded when a multirun starts
(:class:`RecordSweep`, a Hydra callback) and read by each job. Light imports only: Hydra
instantiates the callback for every run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

#: the override keys a multirun sweeps, comma-separated (set by RecordSweep, read by the jobs)
SWEPT_ENV = "COLORIZATION_SWEPT_KEYS"
#: overrides that say where or how a run logs, not what it is: never part of a name
_NOT_NAMES = ("hydra.", "hydra/", "paths.", "logger", "ckpt_path", "callbacks.progress_bar")


def swept_keys(config: DictConfig) -> list[str]:
    """Keys with several values in a multirun's command line or ``hydra.sweeper.params``."""
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = [o.get_key_element() for o in overrides if o.is_sweep_override()]
    params = config.hydra.sweeper.get("params") or {}
    return sorted({*keys, *(str(k) for k in params)})


class RecordSweep(Callback):
    """Hydra callback: remember which keys a multirun sweeps (jobs may run in other processes
    of the same environment, as with the SLURM launcher)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._previous = os.environ.get(SWEPT_ENV)
        os.environ[SWEPT_ENV] = ",".join(swept_keys(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if getattr(self, "_previous", None) is None:
            os.environ.pop(SWEPT_ENV, None)
        else:
            os.environ[SWEPT_ENV] = self._previous


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """group, job_type, name and tags for this run's W&B logger."""
    identity: dict[str, Any] = {"job_type": cfg.get("task_name")}
    if not HydraConfig.initialized():
        return identity
    hydra = HydraConfig.get()
    choices = hydra.runtime.choices
    experiment = choices.get("experiment") if choices.get("experiment") not in (None, "null") else None
    overrides = [o for o in hydra.overrides.task if not _key(o).startswith(_NOT_NAMES)]
    if hydra.mode == RunMode.MULTIRUN:
        swept = set(filter(None, os.environ.get(SWEPT_ENV, "").split(",")))
        identity["group"] = f"{experiment or 'sweep'}/{Path(hydra.sweep.dir).name}"
        named = [o for o in overrides if _key(o) in swept] or overrides
        identity["name"] = ",".join(named) or f"job{hydra.job.num}"
    else:
        identity["group"] = experiment
        identity["name"] = ",".join(overrides) or None
    identity["tags"] = [*(cfg.get("tags") or []), f"model={choices.get('model')}", f"data={choices.get('data')}"]
    return identity
