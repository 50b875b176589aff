"""Checks that run before anything is scanned, built or written: config values, and the
checkpoint a resume or an evaluation will open.

``train.py`` and ``eval.py`` run them from a Hydra callback (:class:`Preflight`, in
``conf/hydra/default.yaml``) *before* Hydra creates or touches the run folder, so a bad value
or an unreadable checkpoint is one line on stderr, exit code 2, in about a second, and a
failed resume leaves its run folder byte-identical. ``colorization.train`` and
``colorization.evaluate`` call them again for configs composed in Python. Nothing here
imports Lightning; torch only when there is a checkpoint to open.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value of the wrong type or range; the message names the key and the value."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _need(ok: bool, key: str, value: Any, what: str) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {what}, got {value!r}")


#: data keys: (check, what it must be); a missing key is left to the class default
_DATA_RULES = {
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "eval_batch_size": (lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
    "image_size": (lambda v: _is_int(v) and 1 <= v <= 16384, "an integer in 1..16384 (px)"),
    "resize": (lambda v: v is None or (_is_int(v) and 1 <= v <= 16384), "null or an integer in 1..16384 (px)"),
    "num_workers": (lambda v: v == "auto" or (_is_int(v) and 0 <= v <= 256), "'auto' or an integer in 0..256"),
    "scan_workers": (lambda v: _is_int(v) and 1 <= v <= 256, "an integer in 1..256"),
    "train_repeats": (lambda v: _is_int(v) and 1 <= v <= 100_000, "an integer in 1..100000"),
    "eval_repeats": (lambda v: _is_int(v) and 1 <= v <= 100_000, "an integer in 1..100000"),
    "min_colorfulness": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "seed": (lambda v: v is None or _is_int(v), "an integer"),
    "lab": (lambda v: v in ("fused", "kornia"), "fused or kornia"),
}
_TRAINER_RULES = {
    "max_epochs": (lambda v: v is None or (_is_int(v) and v >= -1), "an integer >= 1 (-1: no limit)"),
    "max_steps": (lambda v: v is None or (_is_int(v) and v >= -1), "an integer >= 1 (-1: no limit)"),
}


def check_fractions(value: Any, key: str = "data.fractions", training: bool = False) -> None:
    items = list(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else None
    _need(items is not None and len(items) == 3, key, value, "three fractions [train, val, test]")
    _need(all(_is_number(f) and f >= 0 for f in items), key, value, "three numbers >= 0")
    _need(abs(sum(items) - 1) <= 1e-6, key, value, f"fractions that sum to 1 (they sum to {sum(items):g})")
    if training:
        _need(items[0] > 0, key, value, "fractions with a training share > 0 to train on")


def check_data_values(data: Mapping | None, prefix: str = "data", training: bool = False) -> None:
    """Types and ranges of a data config (``cfg.data`` or a checkpoint's stored one)."""
    if not data:
        return
    if isinstance(data, DictConfig) and OmegaConf.is_missing(data, "root"):
        raise ConfigError(f"{prefix}.root is not set: give the folder of photos, {prefix}.root=DIR")
    for key, (ok, what) in _DATA_RULES.items():
        if key in data:
            _need(ok(data[key]), f"{prefix}.{key}", data[key], what)
    if "fractions" in data:
        check_fractions(data["fractions"], f"{prefix}.fractions", training)
    if "root" in data:
        check_root(data["root"], f"{prefix}.root")


def _is_folder(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike)) and str(value) != ""


def _root_list(value: Any) -> list | None:
    """``data.root`` as a list of folders (one folder: a list of one), or ``None`` if it is neither."""
    if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
        return list(value)
    return [value] if _is_folder(value) else None


def check_root(value: Any, key: str = "data.root") -> None:
    """``data.root``: null (a source that reads no folder), a folder, or a non-empty list of
    folders (``data.root=[DIR1,DIR2]``: one training set, split by photo across them)."""
    if value is None:
        return
    folders = _root_list(value)
    if folders and all(_is_folder(f) for f in folders):
        return
    hint = ""
    if _is_number(value) or any(_is_number(f) for f in folders or []):
        hint = " (to name a folder like a number, quote it: data.root='\"2024\"')"
    raise ConfigError(f"{key} must be a folder path or a non-empty list of them ([DIR1,DIR2]), got {value!r}{hint}")


#: a folder source of at most this many image files is checked (decoded) in the preflight,
#: so "too few usable photos" is one line before Lightning is imported; larger folders are
#: checked by the DataModule's set-up scan (the same check, one line too, seconds later)
PREFLIGHT_SCAN_LIMIT = 200


def check_photo_folder(data: Mapping) -> None:
    """A ``data=folder`` source: its folder (or each of its folders) exists and holds images,
    and, when they are small, they hold enough usable photos between them for the splits
    (:func:`colorization.data.scan.split_by_photo`)."""
    source = data.get("source")
    target = source.get("_target_", "") if isinstance(source, Mapping) else ""
    if str(target).endswith("ShardSource"):
        check_shards(data)
        return
    if not str(target).endswith("ImageFolder"):
        return
    folders = _root_list(data.get("root"))
    if not folders:
        raise ConfigError("data.root is not set: give the folder of photos, data.root=DIR (or [DIR1,DIR2])")
    from colorization.data.images import DataSourceError, count_images
    from colorization.data.scan import scan_source, split_by_photo
    from colorization.data.sources import ImageFolder

    counts = [count_images(folder, PREFLIGHT_SCAN_LIMIT + 1) for folder in folders]  # stops early: fast on 1 M files
    if all(counts) and sum(counts) > PREFLIGHT_SCAN_LIMIT:
        return
    photos = ImageFolder(folders)  # lists every folder: a missing or empty one is named
    try:
        len(photos)
    except DataSourceError as error:
        raise ConfigError(f"data.root: {error}") from None
    report = scan_source(photos, data.get("min_colorfulness") or 0.0, quiet=True)
    try:
        split_by_photo(report.kept, tuple(data.get("fractions") or (0.8, 0.1, 0.1)), 0)
    except ValueError as error:
        where = ", ".join(map(str, folders))
        raise ConfigError(f"data.root: too few usable photos in {where}: {report.summary()}; {error}") from None


def check_shards(data: Mapping) -> None:
    """A ``data=shards`` source: ``data.root`` is one complete pack (manifest and indices
    checked; for a local folder, every chunk file present and whole)."""
    root = data.get("root")
    if not _is_folder(root):
        raise ConfigError(f"data.root must be the folder (or URL) of one pack for data=shards, got {root!r}")
    from colorization.data.images import DataSourceError
    from colorization.data.shards import ShardSource

    try:
        ShardSource(str(root)).check()
    except DataSourceError as error:
        raise ConfigError(str(error)) from None


#: the data each task scores on: colorizers on photos, the digits autoencoders on digits
_TASK_DATA = {
    "ColorizationModule": "LabDataModule",
    "VAEColorizationModule": "LabDataModule",
    "RestorationModule": "LabDataModule",
    "ReconstructionModule": "DigitsDataModule",
}


def check_model_fits_data(model: Mapping | None, data: Mapping | None, where: str = "model") -> None:
    """A task trains and scores on its kind of data (:data:`_TASK_DATA`)."""
    if not model or not data:
        return
    task = str(model.get("_target_", "")).rsplit(".", 1)[-1]
    kind = str(data.get("_target_", "")).rsplit(".", 1)[-1]
    wants = _TASK_DATA.get(task)
    if wants and kind and kind != wants:
        hint = "photos: data=sample or data=folder" if wants == "LabDataModule" else "digits: data=digits"
        raise ConfigError(f"data: {where} is a {task}, which takes {wants} data ({hint}), not {kind}")


def check_values(cfg: Mapping, training: bool = True) -> None:
    """Everything checkable in a train or eval config before data or models are built."""
    check_data_values(cfg.get("data"), training=training)
    check_model_fits_data(cfg.get("model"), cfg.get("data"), "model")
    if cfg.get("data"):
        check_photo_folder(cfg["data"])
    for key, (ok, what) in _TRAINER_RULES.items():
        trainer = cfg.get("trainer") or {}
        if key in trainer:
            _need(ok(trainer[key]), f"trainer.{key}", trainer[key], what)
    if "seed" in cfg:
        _need(cfg["seed"] is None or _is_int(cfg["seed"]), "seed", cfg["seed"], "an integer")
    if training:
        check_schedule(cfg)
    for key in ("temperature", "mix"):  # eval.py: decoding of a bins model
        if cfg.get(key) is not None:
            _need(_is_number(cfg[key]), key, cfg[key], "a number")


def check_schedule(cfg: Mapping) -> None:
    """Combinations that would train wrongly without an error: a cosine schedule over a
    run without an epoch count (its period would be -1: the learning rate jumps between its
    maximum and minimum every epoch), and a frozen encoder under DDP (DDP expects a gradient
    for every parameter it was built with)."""
    scheduler, trainer, model = cfg.get("scheduler") or {}, cfg.get("trainer") or {}, cfg.get("model") or {}
    if "T_max" in scheduler:
        t_max = scheduler["T_max"]
        _need(_is_int(t_max) and t_max >= 1, "scheduler.T_max", t_max,
              "an epoch count >= 1: scheduler=cosine decays over trainer.max_epochs; with a step budget "
              "(trainer.max_epochs=-1) use scheduler=none or set scheduler.T_max")  # fmt: skip
    strategy = str(trainer.get("strategy") or "")
    if (model.get("freeze_epochs") or 0) > 0 and strategy in ("ddp", "ddp_spawn"):
        raise ConfigError(
            f"model.freeze_epochs={model['freeze_epochs']} with trainer.strategy={strategy}: DDP needs a gradient "
            f"for every parameter at every step; use trainer.strategy={strategy}_find_unused_parameters_true, "
            "or model.freeze_epochs=0"
        )


def resolve_ckpt_path(cfg: Mapping, run_dir: str | Path) -> str | None:
    """``ckpt_path``: a path; ``last``: this run folder's ``checkpoints/last.ckpt`` (a run
    restarted in its own folder with ``hydra.run.dir=<run>``), else the newest ``last.ckpt``
    under ``logs/<task_name>/runs``; ``auto``: this run folder's ``last.ckpt`` if there is
    one, else a fresh start (for jobs a cluster requeues)."""
    from colorization.checkpoint import CheckpointError

    path = cfg.get("ckpt_path")
    own = Path(run_dir) / "checkpoints" / "last.ckpt"
    if path == "auto":
        return str(own) if own.is_file() else None
    if path != "last":
        if path and not Path(path).expanduser().is_file():
            raise CheckpointError(f"ckpt_path: no checkpoint at {path}")
        return str(Path(path).expanduser()) if path else None
    if own.is_file():
        return str(own)
    runs = Path(cfg["paths"]["log_dir"]) / cfg["task_name"] / "runs"
    found = sorted(runs.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise CheckpointError(f"ckpt_path=last: no last.ckpt in {own.parent} nor in any run under {runs}")
    return str(found[-1])


#: file paths in a ModelCheckpoint's saved state; Lightning may delete the file they name
_CALLBACK_PATH_FIELDS = ("best_model_path", "kth_best_model_path", "last_model_path")


def check_checkpoint_callback_paths(checkpoint: Mapping, path: Path) -> None:
    """Refuse callback states naming files outside the checkpoint's own folder: Lightning
    deletes an old "best" file such a state names (any remote URL; a local one inside the
    current checkpoint folder, compared without resolving ``..``) and tests the "best" one."""
    from colorization.checkpoint import CheckpointError

    folder = Path(path).resolve().parent
    for name, state in (checkpoint.get("callbacks") or {}).items():
        if not isinstance(state, Mapping):
            continue
        named = [state.get(field) for field in _CALLBACK_PATH_FIELDS] + list(state.get("best_k_models") or {})
        for value in named:
            if value and not _checkpoint_in(value, folder):
                raise CheckpointError(f"{path}: refused, callback state {str(name)[:40]} names {str(value)[:80]!r}")


def _checkpoint_in(value: Any, folder: Path) -> bool:
    """A local ``.ckpt`` file directly in ``folder``, named without ``..``."""
    if not isinstance(value, str) or "://" in value or not value.endswith(".ckpt"):
        return False
    file = Path(value)
    return ".." not in file.parts and file.parent.resolve() == folder


#: resume checkpoints already checked in this process, by (path, size, mtime), with their stored
#: model config: train.py's Preflight and ``train()`` would otherwise read the whole file twice
_RESUME_CHECKED: dict[tuple[str, int, int], dict] = {}

#: the model settings that decide which weights (and buffers) a model has (``net``: every setting)
_WEIGHT_SETTINGS = ("_target_", "net", "output", "hints")


def model_difference(stored: Mapping, model: Mapping) -> tuple[str, Any, Any] | None:
    """The first setting by which ``model`` (a run's ``cfg.model``, resolved) builds other
    weights than ``stored`` (a checkpoint's): ``(key, stored value, value)``, or ``None``.
    Compared: :data:`_WEIGHT_SETTINGS`, in that order, and every setting of ``net`` that both
    name (one that only one names comes from another version of the project's configs; the
    weights themselves tell then)."""
    pick = {k: stored[k] for k in _WEIGHT_SETTINGS if k in stored}
    return _first_difference(pick, {k: model[k] for k in _WEIGHT_SETTINGS if k in model}, "model")


def _first_difference(stored: Mapping, ours: Mapping, prefix: str) -> tuple[str, Any, Any] | None:
    for key in (k for k in stored if k in ours):
        theirs, mine = stored[key], ours[key]
        if isinstance(theirs, Mapping) and isinstance(mine, Mapping):
            found = _first_difference(theirs, mine, f"{prefix}.{key}")
            if found:
                return found
        elif theirs != mine:
            return f"{prefix}.{key}", theirs, mine
    return None


def check_same_model(path: Path, stored: Mapping, model: Mapping) -> None:
    """Refuse (one line) to resume ``path`` as another model than it was trained as: a
    traceback after the run folder was written, else."""
    from colorization.checkpoint import CheckpointError

    try:
        ours = OmegaConf.to_container(model, resolve=True) if OmegaConf.is_config(model) else dict(model)
    except Exception:  # noqa: BLE001 - an interpolation only Hydra's runtime resolves: the weights tell later
        return
    found = model_difference(stored, ours)
    if found is None:
        return
    key, theirs, ours = (" ".join(str(v).split())[:80] for v in found)  # one line
    settings = path.resolve().parent.parent / ".hydra" / "overrides.yaml"
    where = f" (its run's settings: {settings})" if settings.is_file() else ""
    raise CheckpointError(
        f"cannot resume: {path} was trained with {key}={theirs}, this run has {key}={ours}. "
        f"Nothing was changed. Resume with the model settings it was trained with{where}, or start a new run "
        "without ckpt_path"
    )


def check_resume(path: str | Path, model: Mapping | None = None) -> None:
    """A checkpoint to resume from: readable, safe (:func:`load_checkpoint`), a whole
    training state and, given this run's ``cfg.model``, trained as that model
    (:func:`check_same_model`). The error says how to go on: start over, or pick another
    checkpoint (or the model settings it was trained with)."""
    from colorization.checkpoint import CheckpointError, load_checkpoint

    path = Path(path)
    stat = path.stat() if path.is_file() else None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns) if stat else None
    stored = _RESUME_CHECKED.get(key) if key else None
    if stored is None:
        try:
            checkpoint = load_checkpoint(path)
            missing = [k for k in ("epoch", "global_step", "loops") if k not in checkpoint]
            if missing:
                raise CheckpointError(f"{path} holds weights but no training state ({', '.join(missing)}) to resume")
            check_checkpoint_callback_paths(checkpoint, path)
        except CheckpointError as error:
            others = sorted(p.name for p in path.parent.glob("*.ckpt") if p.name != path.name)
            choice = f"ckpt_path={path.parent / others[-1]}" if others else "ckpt_path=<another .ckpt>"
            raise CheckpointError(
                f"cannot resume: {error}. Nothing was changed. Start over without ckpt_path, or pick another "
                f"checkpoint ({choice})"
            ) from None
        stored = checkpoint["colorization_config"]["model"]
        if key:
            _RESUME_CHECKED[key] = stored
    if model is not None:
        check_same_model(path, stored, model)


def check_eval_checkpoint(path: str | Path, data: Mapping | None, data_root: str | None = None) -> None:
    """A checkpoint to score: safe (:func:`load_checkpoint`), its network's config matching
    its weights, and the data (``data``, else its own stored data, its folder or URL only from
    ``data_root``) of the kind its task takes."""
    from colorization.checkpoint import CheckpointError, load_checkpoint, net_from_checkpoint, stored_data_for_eval

    checkpoint = load_checkpoint(path)
    stored = checkpoint["colorization_config"]
    try:
        net_from_checkpoint(checkpoint)
        if data is None:  # its own data, with locations only from the command line (data_root=)
            data = stored_data_for_eval(stored.get("data"), data_root)
            check_data_values(data, prefix="checkpoint data")
            check_photo_folder(data)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    check_model_fits_data(stored["model"], data, str(path))


def run_checks(cfg: DictConfig, config_name: str | None, run_dir: str | Path) -> None:
    """The checks of :class:`Preflight`, callable without Hydra's runtime."""
    check_values(cfg, training=config_name != "eval")
    if config_name == "eval":
        if cfg.get("ckpt_path"):
            check_eval_checkpoint(cfg.ckpt_path, cfg.get("data"), cfg.get("data_root"))
        return
    path = resolve_ckpt_path(cfg, run_dir)
    if path:
        check_resume(path, cfg.get("model"))


class Preflight(Callback):
    """Hydra callback: :func:`run_checks` before the run folder is created or written."""

    def on_run_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        from colorization.checkpoint import CheckpointError

        script = f"{config_name}.py" if config_name else "colorization"
        try:
            run_checks(config, config_name, config.hydra.run.dir)
        except (ConfigError, CheckpointError) as error:
            print(f"{script}: error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)
        except Exception as error:  # Hydra would only warn and go on: stop here, in one line
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"{script}: error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            sys.exit(2)
