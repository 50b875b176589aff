"""Writing files so that a crash never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
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


#: temporary files are ``.<name>.<random>.<pid>.partial``: never an input (no image
#: extension), and removable once the process that wrote them is gone
TEMP_SUFFIX = ".partial"
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]+\.(?P<pid>\d+)" + re.escape(TEMP_SUFFIX) + "$")


def is_temp_file(path: str | Path) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_path`."""
    return _TEMP_NAME.match(Path(path).name) is not None


def process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temp_files(folder: str | Path, min_age_s: float = 3600.0) -> int:
    """Remove the temporary files a killed writer left in ``folder`` (not recursive): those
    whose process is gone on this machine and that nobody touched for ``min_age_s`` (an hour:
    on a shared disk the writer may be another machine's process). Returns how many."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if now - entry.stat().st_mtime < min_age_s or process_running(int(match["pid"])):
                continue
            os.unlink(entry.path)
            removed += 1
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """``with atomic_path(path) as tmp:`` write ``tmp``; on success it is renamed to ``path``
    (readers see the old file or the complete new one), on failure or interruption (an
    exception, KeyboardInterrupt, or a signal turned into one) removed. Writers must not
    rely on ``tmp``'s suffix to choose a format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{os.getpid()}{TEMP_SUFFIX}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_image_atomic(image: torch.Tensor | np.ndarray, path: str | Path, **save_kwargs) -> Path:
    """Write an RGB image ((3, H, W) float in [0, 1], or (H, W, 3) uint8) to ``path``,
    atomically (:func:`atomic_path`). ``save_kwargs`` go to Pillow (e.g. ``quality=95``)."""
    if isinstance(image, torch.Tensor):
        image = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=Image.registered_extensions()[path.suffix.lower()], **save_kwargs)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
