"""Photo sources, robust decoding and the Lab DataModule shared by every model.

Names are imported on first use: ``colorize`` reads photos through
:mod:`colorization.data.images` without importing Lightning (the DataModule's dependency).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_HOMES = {
    "DeviceAugmentation": "augment",
    "LabDataModule": "datamodule",
    "PhotoCrops": "datamodule",
    "lab_batch": "datamodule",
    "DataSourceError": "images",
    "UnreadableImage": "images",
    "open_rgb": "images",
    "ImageFolder": "sources",
    "ImageSource": "sources",
    "SamplePhotos": "sources",
    "ShardSource": "shards",
    "TorchvisionImages": "sources",
}
__all__ = [
    "DataSourceError",
    "DeviceAugmentation",
    "ImageFolder",
    "ImageSource",
    "LabDataModule",
    "PhotoCrops",
    "SamplePhotos",
    "ShardSource",
    "TorchvisionImages",
    "UnreadableImage",
    "lab_batch",
    "open_rgb",
]

if TYPE_CHECKING:
    from colorization.data.augment import DeviceAugmentation
    from colorization.data.datamodule import LabDataModule, PhotoCrops, lab_batch
    from colorization.data.images import DataSourceError, UnreadableImage, open_rgb
    from colorization.data.shards import ShardSource
    from colorization.data.sources import ImageFolder, ImageSource, SamplePhotos, TorchvisionImages


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
