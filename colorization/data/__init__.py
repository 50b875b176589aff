"""Photo sources, robust decoding and the Lab DataModule shared by every model."""

from colorization.data.augment import DeviceAugmentation
from colorization.data.datamodule import LabDataModule, PhotoCrops, lab_batch
from colorization.data.images import DataSourceError, UnreadableImage, open_rgb
from colorization.data.sources import ImageFolder, ImageSource, SamplePhotos, TorchvisionImages

__all__ = [
    "DataSourceError",
    "DeviceAugmentation",
    "ImageFolder",
    "ImageSource",
    "LabDataModule",
    "PhotoCrops",
    "SamplePhotos",
    "TorchvisionImages",
    "UnreadableImage",
    "lab_batch",
    "open_rgb",
]
