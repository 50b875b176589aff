"""Callbacks that tests plug into real train.py runs through Hydra overrides."""

from __future__ import annotations

import os
import signal
import struct

import lightning as L
import numpy as np


class KillAtStep(L.Callback):
    """SIGKILL the training process once ``step`` optimizer steps are done: no clean-up, no
    last checkpoint, as when a node dies or a job is pre-empted without notice."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


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
