"""Where photos come from. A source is an indexed collection of photos:
``len(source)``, ``source.load(i) -> 8-bit RGB PIL image`` and ``source.name(i)``.

Sources do no resizing, cropping or colour conversion: :class:`LabDataModule` does that
for all of them alike, so swapping ``data=`` changes nothing but the photos.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from colorization.data.images import (
    IMAGE_EXTENSIONS,
    DataSourceError,
    find_images,
    open_rgb,
    pil_to_rgb,
)


class ImageSource:
    """Base class: an indexed collection of photos.

    Sources are lazy: building one touches no file, so configs compose and instantiate
    anywhere; the first ``len()`` or ``load()`` (in ``LabDataModule.setup``) reads them.
    """

    #: whether load() reads files that may be corrupt (the DataModule then checks them once)
    reads_files = False

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int, draft_size: int | None = None) -> Image.Image:
        """Photo ``index`` as 8-bit RGB (``draft_size``: the smallest shorter side needed)."""
        raise NotImplementedError

    def name(self, index: int) -> str:
        return f"{type(self).__name__}[{index}]"


def _sample_photo_loaders() -> dict[str, Callable[[], np.ndarray]]:
    import matplotlib
    import skimage.data
    from sklearn.datasets import load_sample_image

    def grace_hopper() -> np.ndarray:
        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        return np.asarray(open_rgb(path))

    return {
        "astronaut": skimage.data.astronaut,
        "chelsea": skimage.data.chelsea,
        "coffee": skimage.data.coffee,
        "rocket": skimage.data.rocket,
        "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],  # one view: one photo
        "hubble_deep_field": skimage.data.hubble_deep_field,
        "china": lambda: load_sample_image("china.jpg"),
        "flower": lambda: load_sample_image("flower.jpg"),
        "grace_hopper": grace_hopper,
    }


SAMPLE_PHOTO_NAMES = tuple(
    ["astronaut", "chelsea", "coffee", "rocket", "motorcycle", "hubble_deep_field", "china", "flower", "grace_hopper"]
)


class SamplePhotos(ImageSource):
    """The real colour photos that ship inside scikit-image, scikit-learn and matplotlib.

    Nine natural photos (portrait, cat, coffee cup, rocket launch, motorcycle, deep-sky
    image, Chinese temple, flower, Grace Hopper's portrait), 300-1000 px. Nothing is
    downloaded. ``names`` picks a subset.
    """

    def __init__(self, names: list[str] | None = None) -> None:
        names = list(names) if names is not None else list(SAMPLE_PHOTO_NAMES)
        unknown = sorted(set(names) - set(SAMPLE_PHOTO_NAMES))
        if unknown:
            raise ValueError(f"unknown sample photo(s) {unknown}; choose from {list(SAMPLE_PHOTO_NAMES)}")
        self.names = names

    @cached_property
    def _images(self) -> list[Image.Image]:
        loaders = _sample_photo_loaders()
        return [Image.fromarray(np.ascontiguousarray(loaders[n]())) for n in self.names]

    def __len__(self) -> int:
        return len(self._images)

    def load(self, index: int, draft_size: int | None = None) -> Image.Image:
        return self._images[index]

    def name(self, index: int) -> str:
        return self.names[index]


class ImageFolder(ImageSource):
    """Every image file under ``root`` (recursive): jpg, jpeg, png, bmp, webp, tif, tiff."""

    reads_files = True

    def __init__(self, root: str | Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> None:
        self.root = Path(root).expanduser()
        self.extensions = tuple(extensions)

    @cached_property
    def paths(self) -> list[Path]:
        try:
            return find_images(self.root, self.extensions)
        except DataSourceError as error:
            raise DataSourceError(
                f"{error} (point data.root=DIR at a folder of photos, or run on the bundled photos with data=sample)"
            ) from error

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int, draft_size: int | None = None) -> Image.Image:
        return open_rgb(self.paths[index], draft_size=draft_size)

    def name(self, index: int) -> str:
        return str(self.paths[index].relative_to(self.root))


_TORCHVISION_SPLITS = {
    "CIFAR10": lambda cls, root, split, download: cls(root, train=split == "train", download=download),
    "STL10": lambda cls, root, split, download: cls(root, split=split, download=download),
    "Flowers102": lambda cls, root, split, download: cls(root, split=split, download=download),
    "Places365": lambda cls, root, split, download: cls(root, split=split, small=True, download=download),
}


class TorchvisionImages(ImageSource):
    """A torchvision image data set, labels dropped, official splits pooled.

    ``name`` is ``CIFAR10``, ``STL10``, ``Flowers102`` or ``Places365`` (small, 256 px);
    ``splits`` lists the official splits to pool (the DataModule then splits by its own
    fractions). With ``download=False`` and no files under ``root`` this fails with an
    error that names ``root`` and the override that downloads.
    """

    def __init__(self, name: str, root: str | Path, splits: list[str], download: bool = False):
        if name not in _TORCHVISION_SPLITS:
            raise ValueError(f"unsupported torchvision data set {name!r}; choose from {sorted(_TORCHVISION_SPLITS)}")
        self.dataset_name, self.root = name, Path(root).expanduser()
        self.splits, self.download = list(splits), download

    @cached_property
    def datasets(self) -> list:
        import torchvision.datasets as tvd

        built = []
        for split in self.splits:
            try:
                built.append(
                    _TORCHVISION_SPLITS[self.dataset_name](
                        getattr(tvd, self.dataset_name), str(self.root), split, self.download
                    )
                )
            except RuntimeError as error:  # torchvision: "Dataset not found or corrupted..."
                raise DataSourceError(
                    f"{self.dataset_name} split {split!r} not found under {self.root.resolve()} "
                    f"({error}). Put the files there, or add the override "
                    f"data.source.download=true on a machine with network access, or use other photos: "
                    f"data=folder data.root=DIR."
                ) from error
        return built

    @classmethod
    def from_datasets(cls, datasets: list, name: str = "custom") -> TorchvisionImages:
        """Wrap already-built datasets whose items are ``(PIL image, target)``."""
        source = cls.__new__(cls)
        source.dataset_name, source.root, source.splits, source.download = name, Path("."), [], False
        source.__dict__["datasets"] = list(datasets)
        return source

    @cached_property
    def _offsets(self) -> np.ndarray:
        return np.cumsum([0] + [len(d) for d in self.datasets])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def load(self, index: int, draft_size: int | None = None) -> Image.Image:
        part = int(np.searchsorted(self._offsets, index, side="right") - 1)
        image = self.datasets[part][index - int(self._offsets[part])][0]
        return pil_to_rgb(image)

    def name(self, index: int) -> str:
        return f"{self.dataset_name}[{index}]"
