"""Reading a train.py checkpoint: the file alone, with ``weights_only=True``.

Kept free of Lightning and torchmetrics so that ``colorize`` starts in about a third of the
time (importing Lightning takes seconds); ``eval.py`` and ``colorize`` share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint path that does not exist or does not hold a model written by train.py."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a train.py checkpoint with ``weights_only=True`` (no code runs while loading)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "colorization_config" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint written by train.py (no state_dict / colorization_config)")
    return checkpoint


def net_from_checkpoint(checkpoint: dict[str, Any]) -> torch.nn.Module:
    """The network alone (``model.net`` of the config, weights ``net.*``), without building
    the LightningModule around it (no losses, metrics or Lightning import)."""
    import hydra
    from omegaconf import OmegaConf

    net = hydra.utils.instantiate(OmegaConf.create(checkpoint["colorization_config"]["model"]["net"]))
    prefix = "net."
    state = {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    net.load_state_dict(state)
    return net
