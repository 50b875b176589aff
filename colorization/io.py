"""Writing files so that a crash never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def printable(text: object) -> str:
    """``text`` safe to print on a terminal: characters that are not printable (escape codes
    that could recolour, move the cursor or retitle the window; newlines; bidi overrides;
    undecodable bytes of a file name) are shown as Python escapes (``\\x1b``)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode() for c in text)


def publish(tmp: str | Path, path: str | Path) -> None:
    """Rename the finished temporary file ``tmp`` to ``path``, with the permissions a plain
    ``open(path, "w")`` would give (``mkstemp`` creates files readable by their owner only)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


#: temporary files are ``.<name>.<random>.h<host>-<pid>.partial``: never an input (no image
#: extension), and removable once the process that wrote them is gone (``<host>`` tells
#: whether that process was one of this machine's; names without it are from older versions)
TEMP_SUFFIX = ".partial"
_TEMP_NAME = re.compile(
    r"^\..+\.[A-Za-z0-9_]+\.(?:h(?P<host>[0-9a-f]{8})-)?(?P<pid>\d+)" + re.escape(TEMP_SUFFIX) + "$"
)


@functools.cache
def host_tag() -> str:
    """8 hex digits naming this machine and boot (host name + kernel boot id): a process id
    in a temporary file's name means something only on the machine, and boot, that wrote it."""
    boot = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return hashlib.sha256(f"{socket.gethostname()}/{boot}".encode()).hexdigest()[:8]


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
    written on this machine whose process is gone, at once; others (another machine's, on a
    shared disk, or an older version's name) once nobody touched them for ``min_age_s``.
    Returns how many."""
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
            ours = match["host"] == host_tag()
            if process_running(int(match["pid"])) and (ours or match["host"] is None):
                continue
            if not ours and now - entry.stat().st_mtime < min_age_s:
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
    suffix = f".h{host_tag()}-{os.getpid()}{TEMP_SUFFIX}"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
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
