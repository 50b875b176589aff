"""Training run: everything ``python train.py`` does, given a composed Hydra config."""

from __future__ import annotations

import json
import logging
import math
import shlex
import traceback
from pathlib import Path

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from colorization.callbacks import ResumeState
from colorization.checkpoint import CheckpointError, load_checkpoint, stored_location
from colorization.io import write_text_atomic
from colorization.models import GrayBaseline
from colorization.preflight import ConfigError, check_resume, check_values, resolve_ckpt_path
from colorization.runtime import keep_freed_memory
from colorization.tasks import ColorizationModule
from colorization.wandb_runs import run_identity

log = logging.getLogger(__name__)


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Every logger under ``cfg.logger`` (a dict of ``_target_`` configs; empty or null: none)."""
    return [hydra.utils.instantiate(c) for c in (cfg or {}).values() if c and "_target_" in c]


def instantiate_callbacks(cfg: DictConfig | None, with_loggers: bool) -> list[L.Callback]:
    """Every callback under ``cfg.callbacks``; the LR monitor needs a logger and is dropped without.
    :class:`ResumeState` always: a run resumed from any of its checkpoints goes on exactly."""
    callbacks = [hydra.utils.instantiate(c) for c in (cfg or {}).values() if c and "_target_" in c]
    if not with_loggers:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return [*callbacks, ResumeState()]


def build_model(cfg: DictConfig) -> L.LightningModule:
    """The LightningModule of ``cfg.model`` with ``cfg.optim`` and ``cfg.scheduler`` plugged in."""
    scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    model = hydra.utils.instantiate(cfg.model, optimizer=hydra.utils.instantiate(cfg.optim), scheduler=scheduler)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    return model


def compare_with_gray(
    model: ColorizationModule, datamodule: L.LightningDataModule, ckpt_path: str | None, accelerator: str
) -> dict[str, float]:
    """Validation metrics of the trained model and of the gray baseline (ab = 0), same photos."""
    if ckpt_path:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict(state)
    evaluator = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    ours = evaluator.validate(model, datamodule=datamodule, verbose=False)[0]
    baseline = ColorizationModule(GrayBaseline(), loss=model.hparams.loss)
    gray = evaluator.validate(baseline, datamodule=datamodule, verbose=False)[0]
    return {**{f"model/{k}": v for k, v in ours.items()}, **{f"gray/{k}": v for k, v in gray.items()}}


def report(comparison: dict[str, float], history: list[float], ckpt_path: str | None, n_val: int) -> str:
    """A short, honest end-of-run summary: the model next to gray, and the val-loss trend."""
    source = f"checkpoint {ckpt_path}" if ckpt_path else "final weights"
    columns = (
        ("PSNR (dB)", "psnr", ".2f"),
        ("SSIM", "ssim", ".3f"),
        ("ab L1", "ab_l1", ".2f"),
        ("dE2000", "delta_e", ".2f"),
        ("AuC", "ab_auc", ".3f"),
        ("colour gap", "colorfulness_gap", "+.1f"),
    )
    lines = [
        f"Validation on {n_val} crops of photos never seen in training ({source}):",
        f"{'':14s}" + "".join(f"{title:>11s}" for title, _, _ in columns),
    ]
    for name, key in (("model", "model"), ("gray (ab = 0)", "gray")):
        values = (format(comparison[f"{key}/val/{metric}"], fmt) for _, metric, fmt in columns)
        lines.append(f"{name:14s}" + "".join(v.rjust(11) for v in values))
    verdict = "beats" if comparison["model/val/psnr"] > comparison["gray/val/psnr"] else "does not beat"
    lines.append(f"The model {verdict} the gray baseline on PSNR.")
    epochs = [epoch for epoch, value in enumerate(history) if not math.isnan(value)]  # item i: epoch i
    if len(epochs) >= 2:
        first, last = epochs[0], epochs[-1]
        best = min(epochs, key=history.__getitem__)
        change = 100 * (history[last] - history[first]) / max(abs(history[first]), 1e-12)
        start, since = ("first epoch", "first") if first == 0 else (f"epoch {first}", f"epoch {first}")
        lines.append(
            f"val/loss: {start} {history[first]:.4f}, best {history[best]:.4f} (epoch {best}), "
            f"last {history[last]:.4f} ({change:+.0f}% from {since})"
        )
    return "\n".join(lines)


def next_steps(best: str, monitor: str | None, output_dir: str | Path, data: dict | None = None) -> str | None:
    """The closing lines: which checkpoint to use next (the best by ``monitor``, val/loss in
    the default run, else the last) and how; with the run's photo folder (``data``, resolved)
    as ``data_root=`` for eval.py, which takes data locations only from its command line."""
    last = Path(output_dir) / "checkpoints" / "last.ckpt"
    best = best if monitor and best and Path(best).is_file() else ""
    ckpt = best or (str(last) if last.is_file() else None)
    if ckpt is None:
        return None
    which = f"The best checkpoint (by {monitor})" if best else "The last checkpoint"
    quoted = shlex.quote(ckpt)
    where = stored_location(data) if isinstance(data, dict) else None
    location = f" data_root={shlex.quote(where)}" if where else ""
    return (
        f"{which}: {ckpt}\n"
        f"Use next: colorize photo.jpg --ckpt {quoted} -o out/\n"
        f"          python eval.py ckpt_path={quoted}{location}"
    )


def wandb_run_id(cfg: DictConfig, ckpt_path: str | None) -> str | None:
    """The W&B run a resumed run continues: the id in its run folder, else in its checkpoint
    (read only then: a checkpoint is the whole training state)."""
    id_file = Path(cfg.paths.output_dir) / "wandb_run_id.txt"
    if id_file.is_file():
        return id_file.read_text().strip()
    if ckpt_path:
        return load_checkpoint(ckpt_path)["colorization_config"].get("wandb_run_id")
    return None


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) the configured model; return the logged metrics."""
    if cfg.get("keep_freed_memory"):
        keep_freed_memory()
    check_values(cfg)  # train.py checked them already (Preflight); a config composed in Python not yet
    ckpt_path = resolve_ckpt_path(cfg, cfg.paths.output_dir)
    if ckpt_path:
        check_resume(ckpt_path, cfg.get("model"))
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = build_model(cfg)
    logger_cfg = cfg.get("logger")
    if logger_cfg and logger_cfg.get("wandb"):
        logger_cfg = OmegaConf.create(OmegaConf.to_container(logger_cfg, resolve=True))
        logger_cfg.wandb.id = logger_cfg.wandb.get("id") or wandb_run_id(cfg, ckpt_path)
        logger_cfg.wandb.resume = "allow"
        identity = run_identity(cfg)  # one dashboard per study: group, job type, readable name, tags
        for key in ("group", "job_type", "name"):
            if logger_cfg.wandb.get(key) is None and identity.get(key) is not None:
                logger_cfg.wandb[key] = identity[key]
        logger_cfg.wandb.tags = sorted({*(logger_cfg.wandb.get("tags") or []), *identity.get("tags", [])})
    loggers = instantiate_loggers(logger_cfg)
    try:
        return fit_and_test(cfg, datamodule, model, loggers, ckpt_path)
    finally:
        for logger in loggers:  # each run of a multirun is its own W&B run
            if isinstance(logger, WandbLogger):
                logger.experiment.finish()


def fit_and_test(cfg: DictConfig, datamodule, model, loggers: list[Logger], ckpt_path: str | None) -> dict:
    callbacks = instantiate_callbacks(cfg.get("callbacks"), with_loggers=bool(loggers))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:  # stored: a resume logs to the same run
            model.run_config["wandb_run_id"] = logger.experiment.id
            write_text_atomic(Path(cfg.paths.output_dir) / "wandb_run_id.txt", logger.experiment.id)

    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if trainer.fast_dev_run:
        return metrics
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    if cfg.get("compare_gray") and isinstance(model, ColorizationModule) and trainer.is_global_zero:
        comparison = compare_with_gray(model, datamodule, best or None, cfg.trainer.get("accelerator", "auto"))
        metrics.update(comparison)
        log.info("\n%s", report(comparison, model.val_loss_history, best, len(datamodule.datasets["val"])))
    if trainer.is_global_zero:
        step, epoch = trainer.global_step, trainer.current_epoch
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if step == 0 and last.is_file():  # ddp_spawn trains in child processes: their count is in the checkpoint
            state = torch.load(last, map_location="cpu", weights_only=True)
            step, epoch = state["global_step"], state["epoch"] + 1
        summary = {
            "metrics": metrics,
            "best_checkpoint": best,
            "global_step": step,
            "epochs": epoch,
            "val_loss_history": getattr(model, "val_loss_history", []),
        }
        write_text_atomic(Path(cfg.paths.output_dir) / "metrics.json", json.dumps(summary, indent=2))
        for logger in loggers:  # the final numbers as the run's summary: a study's runs side by side
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(metrics)
        monitor = getattr(trainer.checkpoint_callback, "monitor", None)
        data = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else None
        closing = next_steps(best, monitor, cfg.paths.output_dir, data)
        if closing:
            log.info("%s", closing)
    return metrics


def log_through_hydra() -> None:
    """Send Lightning's messages to Hydra's handlers (console and run log) once, not twice."""
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run(cfg: DictConfig) -> float | None:
    """Hydra entry: train, and return ``cfg.optimized_metric`` for sweepers.

    In a multirun (a sweep, an Optuna search) a failing job does not stop the others: its
    traceback goes to its log and to ``FAILED`` in its folder, and it returns NaN, which
    Optuna records as a failed trial.
    """
    from colorization.data import DataSourceError

    log_through_hydra()
    try:
        metrics = train(cfg)
    except (DataSourceError, ConfigError, CheckpointError) as error:
        if in_multirun():
            return failed_job(cfg, error)
        log.error("%s", error)
        raise SystemExit(2) from None
    except Exception as error:
        if in_multirun():
            return failed_job(cfg, error)
        raise
    name = cfg.get("optimized_metric")
    value = metrics.get(name) if name else None
    if name and value is None:
        log.warning("optimized_metric %s was not logged (logged: %s)", name, ", ".join(sorted(metrics)))
    return value


def failed_job(cfg: DictConfig, error: BaseException) -> float:
    text = "".join(traceback.format_exception(error))
    log.error("this job failed; the sweep goes on:\n%s", text)
    write_text_atomic(Path(cfg.paths.output_dir) / "FAILED", text)
    return float("nan")
