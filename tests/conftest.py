"""Shared fixtures: real photos written to disk, and configs composed the way train.py does."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict
from PIL import Image

from colorization.compose import compose_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
# scan caches (data.scan_cache=auto) of test runs, and of the scripts they start, stay out of ~/.cache
os.environ["COLORIZATION_CACHE"] = tempfile.mkdtemp(prefix="colorization-test-scans-")

needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"needs the shared photo sets at {SHARED_DATA} (absent in a user's clone)"
)


def real_photos() -> dict[str, np.ndarray]:
    """Small real colour photos (downscaled scikit-image samples), uint8 (H, W, 3)."""
    photos = {
        "astronaut": skimage.data.astronaut(),
        "chelsea": skimage.data.chelsea(),
        "coffee": skimage.data.coffee(),
        "rocket": skimage.data.rocket(),
        "motorcycle": skimage.data.stereo_motorcycle()[0],
    }
    return {k: np.asarray(Image.fromarray(v).reduce(4)) for k, v in photos.items()}


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    return real_photos()


@pytest.fixture
def photo_dir(tmp_path: Path, photos: dict[str, np.ndarray]) -> Path:
    """A folder tree of real photos as JPEG and PNG (one in a sub-folder)."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i, (name, array) in enumerate(photos.items()):
        folder = root / "sub" if i == 0 else root
        Image.fromarray(array).save(folder / f"{name}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture
def compose_cfg(tmp_path: Path):
    """compose_cfg(*overrides) -> the train config train.py would run, writing into tmp_path."""

    def make(*overrides: str, config_name: str = "train") -> DictConfig:
        cfg = compose_config(config_name, list(overrides), tmp_path / "run")
        with open_dict(cfg):
            cfg.paths.log_dir = str(tmp_path / "logs")
        return cfg

    yield make
    GlobalHydra.instance().clear()
