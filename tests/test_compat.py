"""Checkpoints written before issue 27's restructuring (tests/fixtures/before_27, written by
the code at 8a569b2) load with ``weights_only=True`` and colour a photo as they did then."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorization.colorize import main

BEFORE = Path(__file__).parent / "fixtures" / "before_27"


@pytest.mark.parametrize("name", ["skip_cae_ab", "skip_cae_bins"])
def test_a_checkpoint_of_an_earlier_version_colours_as_it_did(name, tmp_path):
    out = tmp_path / "out"
    assert main([str(BEFORE / "chelsea.png"), "--ckpt", str(BEFORE / f"{name}.ckpt"), "-o", str(out)]) == 0
    now = np.asarray(Image.open(out / "chelsea.png")).astype(int)
    then = np.asarray(Image.open(BEFORE / f"{name}.chelsea.png")).astype(int)
    gray = np.asarray(Image.open(BEFORE / "chelsea.png").convert("L").convert("RGB")).astype(int)
    assert now.shape == then.shape == (75, 113, 3)
    assert np.abs(then - gray).max() > 3  # the stored colours are colours, not gray
    assert np.abs(now - then).max() <= 1
