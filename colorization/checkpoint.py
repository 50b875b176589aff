"""Reading a train.py checkpoint: the file alone, with ``weights_only=True``, and its stored
config checked by :mod:`colorization.safe_config` before anything is built from it.

Kept free of Lightning and torchmetrics so that ``colorize`` starts in about a third of the
time (importing Lightning takes seconds); ``colorize``, ``eval.py`` and resume share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from colorization.safe_config import UnsafeConfig, build, check

#: set on every class built from a stored config that takes them: opening a checkpoint never
#: downloads (data sets, pretrained weights: a network's weights come from the checkpoint)
#: and never starts a compiler
FORCED = {"download": False, "pretrained": False, "compile": False}


class CheckpointError(RuntimeError):
    """A checkpoint that does not exist, is not a train.py checkpoint, or asks for more than
    the project allows; the message names the file."""


def check_stored_config(config: Any) -> None:
    """Refuse a stored run config (:class:`UnsafeConfig`, naming the key) whose model or
    data section would build anything but the project's own classes from plain values."""
    if not isinstance(config, dict):
        raise UnsafeConfig(f"colorization_config: expected a mapping, got a {type(config).__name__}")
    if not isinstance(config.get("model"), dict):
        raise UnsafeConfig("colorization_config.model: missing")
    check(config["model"], "task", "model")
    if config.get("data") is not None:
        check(config["data"], "datamodule", "data")
    run_id = config.get("wandb_run_id")
    if run_id is not None and not (isinstance(run_id, str) and run_id.isalnum() and len(run_id) <= 64):
        raise UnsafeConfig("wandb_run_id: not a W&B run id")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a train.py checkpoint with ``weights_only=True`` (no code runs while loading) and
    check its stored config (:func:`check_stored_config`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "colorization_config" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint written by train.py (no state_dict / colorization_config)")
    if not isinstance(checkpoint["state_dict"], dict):
        raise CheckpointError(f"{path}: its state_dict is not a mapping of tensors")
    try:
        check_stored_config(checkpoint["colorization_config"])
    except UnsafeConfig as error:
        raise CheckpointError(f"{path}: refused, its stored config asks for more than a model: {error}") from None
    return checkpoint


def _load_weights(module: torch.nn.Module, state: dict[str, Any], what: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])[:300]
        raise CheckpointError(f"the checkpoint's {what} config does not match its weights ({detail})") from None


def _build(node: dict, kind: str, key: str) -> Any:
    try:
        built = build(node, kind, key, forced=FORCED)
    except UnsafeConfig as error:
        raise CheckpointError(f"refused: {error}") from None
    except ImportError as error:  # a plugin module the user named (COLORIZATION_PLUGINS) is not there
        raise CheckpointError(f"cannot import a plugin module ({error})") from None
    except Exception as error:  # noqa: BLE001 - a constructor that rejects the stored arguments
        raise CheckpointError(
            f"cannot rebuild {key} from the checkpoint's config ({type(error).__name__}: {error})"
        ) from None
    if kind in ("task", "net") and not isinstance(built, torch.nn.Module):
        raise CheckpointError(f"{key}: the checkpoint's config does not build a network")
    return built


def net_from_checkpoint(checkpoint: dict[str, Any]) -> torch.nn.Module:
    """The network alone (``model.net`` of the config, weights ``net.*``), without building
    the LightningModule around it (no losses, metrics or Lightning import)."""
    net = _build(checkpoint["colorization_config"]["model"]["net"], "net", "model.net")
    prefix = "net."
    state = {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    _load_weights(net, state, "model.net")
    return net


def model_from_checkpoint(checkpoint: dict[str, Any]) -> torch.nn.Module:
    """The LightningModule a checkpoint was trained as, with its weights (no optimizer)."""
    model = _build(checkpoint["colorization_config"]["model"], "task", "model")
    _load_weights(model, checkpoint["state_dict"], "model")
    return model


def datamodule_from_checkpoint(checkpoint: dict[str, Any]) -> Any:
    """The data the checkpoint was trained on, from its stored ``data`` config (never downloads)."""
    data = checkpoint["colorization_config"].get("data")
    if data is None:
        raise CheckpointError("the checkpoint stores no data config: give data=<source>")
    return _build(data, "datamodule", "data")
