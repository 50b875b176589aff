"""Scoring a checkpoint or a baseline on a split: everything ``python eval.py`` does."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig
from torchmetrics import Metric

from colorization.checkpoint import (
    CheckpointError,
    datamodule_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    stored_data_for_eval,
)
from colorization.data import DataSourceError
from colorization.io import write_text_atomic
from colorization.metrics import FrechetDistanceEffNet
from colorization.models import GrayBaseline
from colorization.preflight import ConfigError, check_data_values, check_model_fits_data, check_values
from colorization.runtime import Interrupted, signals_interrupt
from colorization.tasks import ColorizationModule
from colorization.train import build_model, log_through_hydra

log = logging.getLogger(__name__)


class EvaluationError(RuntimeError):
    """Something eval.py was asked for that cannot be done here; the message says why."""


def markdown_table(name: str, split: str, metrics: dict[str, float], gray: dict[str, float] | None = None) -> str:
    """The metrics as a Markdown table; with ``gray``, the gray baseline (ab = 0, the same
    photos) in a second column: what a colorizer must beat."""
    if gray is None:
        rows = "\n".join(f"| {key} | {value:.4f} |" for key, value in sorted(metrics.items()))
        return f"# {name} on the {split} split\n\n| metric | value |\n| --- | --- |\n{rows}\n"
    rows = "\n".join(
        f"| {key} | {value:.4f} | {gray[key]:.4f} |" if key in gray else f"| {key} | {value:.4f} | |"
        for key, value in sorted(metrics.items())
    )
    header = "| metric | model | gray (ab = 0) |\n| --- | --- | --- |"
    return f"# {name} on the {split} split, beside gray\n\n{header}\n{rows}\n"


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score ``cfg.ckpt_path`` (or the baseline ``cfg.model``) on ``cfg.split`` of the data."""
    check_values(cfg, training=False)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("ckpt_path"):
        checkpoint = load_checkpoint(cfg.ckpt_path)
        try:
            model = model_from_checkpoint(checkpoint)
            if cfg.get("data") is None:  # its own data, from the checked stored config, without its locations
                stored_data = stored_data_for_eval(checkpoint["colorization_config"].get("data"), cfg.get("data_root"))
                check_data_values(stored_data, prefix="checkpoint data")
                datamodule = datamodule_from_checkpoint(checkpoint, cfg.get("data_root"))
        except CheckpointError as error:
            raise CheckpointError(f"{cfg.ckpt_path}: {error}") from None
        name = Path(cfg.ckpt_path).name
    elif cfg.get("model"):
        model = build_model(cfg)
        name = cfg.model.net._target_.rsplit(".", 1)[-1]
    else:
        raise EvaluationError("nothing to evaluate: give ckpt_path=PATH or model=<baseline> (e.g. model=gray)")
    if cfg.get("data") is not None:
        if cfg.get("data_root") is not None:
            raise EvaluationError("data_root= is for a checkpoint's own data; with data=... give data.root=DIR")
        datamodule = hydra.utils.instantiate(cfg.data)
    elif not cfg.get("ckpt_path"):
        raise DataSourceError("no data: give data=<source> (e.g. data=sample, or data=folder data.root=DIR)")
    if cfg.get("temperature") is not None or cfg.get("mix") is not None:
        if not isinstance(model, ColorizationModule) or model.output != "bins":
            raise EvaluationError("temperature= and mix= apply to bins models (model.output=bins) only")
        try:
            model.set_decoding(cfg.get("temperature"), cfg.get("mix"))
        except ValueError as error:
            raise EvaluationError(str(error)) from None
    stored = checkpoint["colorization_config"] if cfg.get("ckpt_path") else {}
    check_model_fits_data(stored.get("model") or cfg.get("model"), cfg.get("data") or stored.get("data"))
    trainer_kwargs = dict(logger=False, enable_checkpointing=False, enable_model_summary=False, callbacks=[])
    if not cfg.get("ckpt_path") and isinstance(model, ColorizationModule):
        fit_baseline(model, datamodule, cfg, trainer_kwargs)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, **trainer_kwargs)
    run = trainer.test if cfg.split == "test" else trainer.validate
    results = run(model, datamodule=datamodule, verbose=False)[0]
    metrics = {key.split("/", 1)[1]: float(value) for key, value in results.items()}
    baseline = gray_baseline(model)
    gray = score_gray(baseline, datamodule, cfg, trainer_kwargs) if baseline is not None else {}
    distribution, gray_distribution = distribution_metrics(model, datamodule, cfg, baseline)
    metrics.update(distribution)
    gray.update(gray_distribution)
    out = Path(cfg.paths.output_dir)
    summary = {"model": name, "split": cfg.split, "metrics": metrics, **({"gray": gray} if gray else {})}
    write_text_atomic(out / "metrics.json", json.dumps(summary, indent=2))
    table = markdown_table(name, cfg.split, metrics, gray)
    write_text_atomic(out / "metrics.md", table)
    log.info("\n%s\nwritten to %s", table, out)
    return metrics


def gray_baseline(model: L.LightningModule) -> ColorizationModule | None:
    """The gray baseline (ab = 0) to score beside ``model``: a colorizer's numbers mean little
    without it (vivid but wrong colours score worse than none). None for the gray baseline
    itself and for models that do not colour photos."""
    if not isinstance(model, ColorizationModule) or isinstance(model.net, GrayBaseline):
        return None
    return ColorizationModule(GrayBaseline(), loss=model.hparams.get("loss", "l1")).to(model.device)


def score_gray(baseline: ColorizationModule, datamodule, cfg: DictConfig, trainer_kwargs: dict) -> dict[str, float]:
    """The gray baseline's per-photo metrics on the same split (its set-level ones come from
    :func:`distribution_metrics`' pass)."""
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, **{**trainer_kwargs, "enable_progress_bar": False})
    run = trainer.test if cfg.split == "test" else trainer.validate
    results = run(baseline, datamodule=datamodule, verbose=False)[0]
    return {key.split("/", 1)[1]: float(value) for key, value in results.items()}


def inception_fid() -> Metric:
    """The standard FID (torchmetrics, Inception-v3 features of torch-fidelity)."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        return FrechetInceptionDistance(feature=2048, normalize=True)
    except (ImportError, ModuleNotFoundError, RuntimeError, OSError) as error:
        raise EvaluationError(
            f"the standard Inception FID is unavailable here ({error}): it needs `pip install torch-fidelity` "
            "and network access once to fetch its weights; fid_effnet_lite0 needs neither"
        ) from error


@torch.no_grad()
def distribution_metrics(
    model: L.LightningModule, datamodule, cfg: DictConfig, baseline: ColorizationModule | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """Set-level metrics of ``model`` and of ``baseline`` (if any), in one more pass over the
    split: FID on EfficientNet-Lite0 features (``fid_effnet_lite0``, offline; the baseline's
    shares the network) and, with ``fid_inception=true``, the standard FID."""
    if not isinstance(model, ColorizationModule) or not (cfg.fid or cfg.fid_inception):
        return {}, {}
    metrics: dict[str, dict[str, Metric]] = {"model": {}, "gray": {}}
    if cfg.fid:
        metrics["model"]["fid_effnet_lite0"] = FrechetDistanceEffNet()
        if baseline is not None:
            metrics["gray"]["fid_effnet_lite0"] = FrechetDistanceEffNet(metrics["model"]["fid_effnet_lite0"].extractor)
    if cfg.fid_inception:
        metrics["model"]["fid_inception"] = inception_fid()
        if baseline is not None:
            metrics["gray"]["fid_inception"] = inception_fid()
    modules = {"model": model, "gray": baseline}
    model.eval()
    for index, batch in enumerate(datamodule.device_batches(cfg.split, model.device)):
        batch = model.prepare_batch(batch, cfg.split, index)
        truth = {}  # the photos' EffNet features: once for both
        for name, module in modules.items():
            if module is None:
                continue
            pred = module.to_rgb(batch["L"], module.model_step(batch)[1])
            for key, metric in metrics[name].items():
                metric.to(model.device)
                if isinstance(metric, FrechetDistanceEffNet):
                    truth.setdefault(key, metric.features(batch["rgb"]))
                    metric.update(pred, batch["rgb"], truth[key])
                else:
                    metric.update(pred, batch["rgb"])
    scores = {name: {key: float(m.compute()) for key, m in group.items()} for name, group in metrics.items()}
    return scores["model"], scores["gray"]


def fit_baseline(model: ColorizationModule, datamodule, cfg: DictConfig, trainer_kwargs: dict) -> None:
    """Baselines given by name are fitted on the training split first: closed form, or a few epochs."""
    if hasattr(model.net, "fit_batch"):
        model.fit_closed_form(datamodule)
    elif any(p.requires_grad for p in model.parameters()):
        log.info("fitting %s for %d epochs on the training split", type(model.net).__name__, cfg.baseline_epochs)
        fit_kwargs = {**trainer_kwargs, "max_epochs": cfg.baseline_epochs, "enable_progress_bar": False}
        hydra.utils.instantiate(cfg.trainer, **fit_kwargs).fit(model, datamodule=datamodule)


def run(cfg: DictConfig) -> None:
    """Hydra entry: evaluate; bad checkpoints and data are one line on stderr, exit code 2;
    SIGTERM / SIGINT stop it with exit code 143 / 130 and no temporary file left."""
    log_through_hydra()
    try:
        with signals_interrupt():
            evaluate(cfg)
    except (EvaluationError, CheckpointError, DataSourceError, ConfigError) as error:
        log.error("%s", error)
        raise SystemExit(2) from None
    except Interrupted as stop:  # metrics files are written atomically: none is left half-written
        log.error("stopped by %s; nothing more written", stop)
        raise SystemExit(stop.exit_code) from None
