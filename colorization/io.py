"""Writing files so that a crash never leaves a half-written output behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def publish(tmp: str | Path, path: str | Path) -> None:
    """Rename the finished temporary file ``tmp`` to ``path``, with the permissions a plain
    ``open(path, "w")`` would give (``mkstemp`` creates files readable by their owner only)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def save_image_atomic(image: torch.Tensor | np.ndarray, path: str | Path, **save_kwargs) -> Path:
    """Write an RGB image ((3, H, W) float in [0, 1], or (H, W, 3) uint8) to ``path``.

    The file is written under a temporary name in the same folder and renamed into place,
    so readers see either the old file or the complete new one. ``save_kwargs`` go to
    Pillow (e.g. ``quality=95`` for JPEG).
    """
    if isinstance(image, torch.Tensor):
        image = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(image).save(f, format=Image.registered_extensions()[path.suffix.lower()], **save_kwargs)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
