"""What several test modules share (no test module imports another): the tiny run settings,
running the scripts, a real tiny checkpoint, crafted files, and callbacks that tests plug
into real train.py runs through Hydra overrides."""

from __future__ import annotations

import ctypes
import gc
import hashlib
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from tests.conftest import CONF, ROOT


class KillAtStep(L.Callback):
    """SIGKILL the training process once ``step`` optimizer steps are done: no clean-up, no
    last checkpoint, as when a node dies or a job is pre-empted without notice."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordShare(L.Callback):
    """Write, per rank and epoch, the photos this rank's training loader will read (source
    indices, in order) to ``folder/rank<r>_epoch<e>.json``: what a DDP rank really streams."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        import json

        dm = trainer.datamodule
        indices = dm.datasets["train"].indices
        share = [indices[item % len(indices)] for item, _ in iter(dm.train_sampler)]
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.json"
        path.write_text(json.dumps(share))


def _s15f16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def icc_profile(primaries: tuple[tuple[float, float], ...], gamma: float, name: str) -> bytes:
    """A minimal ICC v2 RGB display profile (matrix + gamma curves), as cameras and phones
    embed: ``primaries`` are the red, green, blue xy chromaticities (white D65), stored adapted
    to the D50 connection space with the Bradford transform, as the ICC format wants."""
    rgb_to_xyz = rgb_to_xyz_matrix(primaries)
    bradford = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    d65, d50 = np.array([0.95047, 1.0, 1.08883]), np.array([0.96422, 1.0, 0.82521])
    adapt = np.linalg.inv(bradford) @ np.diag((bradford @ d50) / (bradford @ d65)) @ bradford
    colorants = adapt @ rgb_to_xyz

    def xyz(values) -> bytes:
        return b"XYZ " + bytes(4) + b"".join(_s15f16(v) for v in values)

    ascii_name = name.encode() + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(ascii_name)) + ascii_name + bytes(8) + bytes(3) + bytes(67)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    tags = [(b"desc", desc), (b"wtpt", xyz(d65)), (b"cprt", b"text" + bytes(4) + b"test\0")]
    tags += [(s, xyz(colorants[:, i])) for i, s in enumerate((b"rXYZ", b"gXYZ", b"bXYZ"))]
    tags += [(s, curve) for s in (b"rTRC", b"gTRC", b"bTRC")]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = struct.pack(">I", size) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
    header += struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + bytes(24) + struct.pack(">I", 1)
    header += b"".join(_s15f16(v) for v in d50) + bytes(4) + bytes(16) + bytes(28)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def rgb_to_xyz_matrix(primaries: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Linear RGB -> XYZ (D65 white) of an RGB space with these xy primaries."""
    columns = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    scale = np.linalg.solve(columns, np.array([0.95047, 1.0, 1.08883]))
    return columns * scale


TINY_DATA = [
    "data.image_size=32",
    "data.resize=64",
    "data.train_repeats=2",
    "data.eval_repeats=2",
    "data.batch_size=4",
    "data.num_workers=0",
]


TINY = [*TINY_DATA, "model.net.width=8", "model.net.depth=2"]


def run_script(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HYDRA_FULL_ERROR": ""}
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_train_py(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return run_script("train.py", *args, timeout=timeout)


def tiny_checkpoint(folder: Path, *overrides: str) -> Path:
    """A real checkpoint from a one-epoch run of train.py's code on the bundled photos."""
    from colorization.compose import compose_config
    from colorization.train import train

    cfg = compose_config(
        "train",
        [*TINY_DATA, *overrides, "trainer.max_epochs=1", "trainer.accelerator=cpu", "callbacks.progress_bar=null"]
        + ["compare_gray=false", "test=false", "logger=none"],
        folder,
    )
    train(cfg)
    GlobalHydra.instance().clear()
    return folder / "checkpoints" / "last.ckpt"


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height pixels (a decompression bomb) and holds almost nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)))


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def real_batch(n: int = 8, size: int = 48) -> dict[str, torch.Tensor]:
    """A normalised Lab batch of centre crops of the bundled sample photos."""
    from colorization.data import SamplePhotos
    from colorization.data.datamodule import PhotoCrops, lab_batch

    source = SamplePhotos()
    crops = PhotoCrops(source, list(range(len(source))), size, 96, train=False, repeats=1)
    return lab_batch(torch.stack([crops[i] for i in range(n)]).float() / 255)


def options(group: str) -> list[str]:
    """The options of a config group (``conf/<group>/*.yaml``)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def one_line_exit_2(script: str, *args: str) -> str:
    """Run ``script``; it must stop with exit code 2 and one line (the error, before any work:
    callers check that nothing was written; no wall-clock bound, a busy machine is slow)."""
    result = run_script(script, *args)
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, (args, result.returncode, lines[-8:])
    return lines[0]


class RemovePhotosAtStart(L.Callback):
    """Delete the photos of one split once training starts (after the set-up check passed
    them), as when a disk or a folder goes away during a run."""

    def __init__(self, split: str) -> None:
        self.split = split

    def on_train_start(self, trainer: L.Trainer, *args) -> None:
        dm = trainer.datamodule
        for index in dm.splits[self.split]:
            dm.source.paths[index].unlink()


CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def peak_rss_growth(call: Callable[[], object]) -> tuple[int, float, BaseException | None]:
    """(bytes the peak RSS grew by, seconds, the exception raised) while ``call()`` runs in
    this process: the kernel's peak (VmHWM) is reset to the current RSS first."""
    if not os.access(CLEAR_REFS, os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
    gc.collect()
    with suppress(OSError, AttributeError):  # give freed heap back, so reusing it shows as growth
        ctypes.CDLL(None).malloc_trim(0)
    CLEAR_REFS.write_text("5")
    before, start, raised = _status_kib("VmRSS"), time.perf_counter(), None
    try:
        call()
    except Exception as error:  # noqa: BLE001 - returned for the test to check
        raised = error
    return (_status_kib("VmHWM") - before) * 1024, time.perf_counter() - start, raised
