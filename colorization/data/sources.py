"""Where photos come from. A source is an indexed collection of photos:
``len(source)``, ``source.load(i) -> 8-bit RGB PIL image`` and ``source.name(i)``.

Sources do no resizing, cropping or colour conversion: :class:`LabDataModule` does that
for all of them alike, so swapping ``data=`` changes nothing but the photos.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
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

    def packed_splits(self) -> dict[str, list[int]] | None:
        """The train/val/test indices fixed when the photos were packed (shards), or ``None``:
        the DataModule scans and splits them itself."""
        return None

    def chunk_bounds(self) -> list[tuple[int, int]] | None:
        """``(start, end)`` index runs stored together (shard chunks), read best in one go;
        ``None``: any order is as cheap as any other."""
        return None

    def fingerprint(self, index: int) -> tuple | None:
        """What identifies photo ``index``'s current bytes without reading them (JSON-able
        str/int/float items), so the set-up scan can reuse an earlier check of an unchanged
        photo (:func:`colorization.data.scan.scan_source`); ``None``: nothing to cache."""
        return None

    @property
    def cache_identity(self) -> str | None:
        """A stable text naming this source for the set-up scan's cache (the same photos, the
        same text, in any process); ``None``: the source is never cached."""
        return None


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
    """Every image file under ``root`` (recursive): jpg, jpeg, png, bmp, webp, tif, tiff.

    ``root`` is one folder or a list of folders (``data.root=[DIR1,DIR2]``): the photos are
    each folder's files, sorted, folder after folder in the order given, and split by photo
    across all of them. A folder listed twice (the same resolved path) counts once, and so
    does a file that two nested folders both hold. Each folder must exist and hold images:
    one that does not is an error naming it.

    ``name(i)`` is the file's path relative to its folder; with several folders it is
    prefixed by a label for the folder: the folder's name (``landscapes/x.jpg``), or as many
    trailing parts of its resolved path as tell the folders apart
    (``landscapes/train/x.jpg`` next to ``flowers/train/y.jpg``; no label is a leading part
    of another, so the names stay unique).
    """

    reads_files = True

    def __init__(self, root: str | Path | Sequence[str | Path], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> None:
        several = not isinstance(root, (str, os.PathLike))
        given = list(root) if several else [root]  # a list, a tuple, an OmegaConf ListConfig
        if not given:
            raise DataSourceError("ImageFolder: no folder given (data.root=[] lists none)")
        self.roots = [Path(r).expanduser() for r in given]
        #: the folder, or the folders, as given (for error messages)
        self.root: Path | list[Path] = self.roots if several and len(self.roots) > 1 else self.roots[0]
        self.extensions = tuple(extensions)

    def _find(self, root: Path) -> list[Path]:
        try:
            return find_images(root, self.extensions)
        except DataSourceError as error:
            hint = (
                "every folder in data.root=[DIR1,DIR2,...] must hold photos"
                if len(self.roots) > 1
                else "point data.root=DIR at a folder of photos"
            )
            raise DataSourceError(f"{error} ({hint}, or run on the bundled photos with data=sample)") from error

    @cached_property
    def _files(self) -> tuple[list[Path], list[int], list[tuple[Path, Path | None]]]:
        """(paths, the root each came from, (root, label) per root): every root scanned once,
        a root listed twice and a file two nested roots hold kept once (the first time)."""
        resolved: list[Path] = []
        for root in self.roots:
            if root.resolve() not in resolved:
                resolved.append(root.resolve())
        if len(resolved) == 1:  # names as with a single root: relative to it, as given
            paths = self._find(self.roots[0])
            return paths, [0] * len(paths), [(self.roots[0], None)]
        paths, owners, seen = [], [], set()
        for owner, full in enumerate(resolved):
            for path in self._find(full):
                if path not in seen:  # path is full / its relative path: the same file, the same path
                    seen.add(path)
                    paths.append(path)
                    owners.append(owner)
        return paths, owners, list(zip(resolved, _root_labels(resolved), strict=True))

    @property
    def paths(self) -> list[Path]:
        return self._files[0]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int, draft_size: int | None = None) -> Image.Image:
        return open_rgb(self.paths[index], draft_size=draft_size)

    def fingerprint(self, index: int) -> tuple[str, int, int, int, int] | None:
        """``(name, size, mtime, inode, ctime)`` of file ``index`` (times in ns), from one
        ``stat`` (the name: its path inside the folders, which :attr:`cache_identity` names).
        The inode and change time catch what size and mtime miss: a file replaced by a copy
        that keeps both (``cp -p``, ``rsync -a``, ``tar x``), a retargeted link, a ``chmod``.
        ``None`` when it is gone (the scan then decodes it, and finds it unreadable)."""
        try:
            stat = os.stat(self.paths[index])
            return self.name(index), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns
        except (OSError, ValueError):
            return None

    @property
    def cache_identity(self) -> str:
        """The resolved folders (sorted, each once) and the extensions: the same folders given
        relative or absolute, in any order, share one scan cache."""
        roots = sorted({os.path.realpath(root) for root in self.roots})
        extensions = sorted({e.lower() for e in self.extensions})
        return json.dumps({"source": "ImageFolder", "roots": roots, "extensions": extensions})

    @cached_property
    def _prefixes(self) -> list[tuple[str, str]]:
        """Per root: (its path + separator, the label + separator or ""), for :meth:`name`."""
        return [
            (os.path.join(str(root), ""), "" if label is None else os.path.join(str(label), ""))
            for root, label in self._files[2]
        ]

    def name(self, index: int) -> str:
        paths, owners, roots = self._files
        path = str(paths[index])
        prefix, label = self._prefixes[owners[index]]
        if path.startswith(prefix):  # always, for listed files: string slicing, no Path maths
            return label + path[len(prefix) :]
        root, label_path = roots[owners[index]]
        relative = paths[index].relative_to(root)
        return str(relative if label_path is None else label_path / relative)


def _root_labels(roots: list[Path]) -> list[Path]:
    """For distinct resolved ``roots``: the fewest trailing parts of each that tell it from
    the others, lengthened until no label is a leading part of (or equal to) another, so
    ``label / relative`` names stay unique across roots (a root whose label reaches its whole
    path keeps it: such names are whole paths, unique since each file is listed once)."""
    parts = [r.parts for r in roots]
    take = [1] * len(roots)

    def label(i: int) -> tuple[str, ...]:
        return parts[i][-take[i] :]

    while True:
        clash = {
            i
            for i in range(len(roots))
            for j in range(len(roots))
            if i != j and label(j)[: take[i]] == label(i) and take[i] < len(parts[i])
        }
        if not clash:
            break
        for i in clash:  # both of two equal labels grow: landscapes/train, flowers/train
            take[i] += 1
    return [Path(*label(i)) for i in range(len(roots))]


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
