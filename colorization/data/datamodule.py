"""``LabDataModule``: one data pipeline for every model.

Workers only decode, resize and crop, and deliver uint8 RGB ``(B, 3, H, W)``: four times
less to copy than float32 and no per-sample colour maths on the CPU. On the device,
``on_after_batch_transfer`` augments (training only) and converts the whole batch to Lab:

    {"L": (B, 1, H, W) in [-1, 1], "ab": (B, 2, H, W) in about [-1, 1], "rgb": (B, 3, H, W) in [0, 1]}

(normalisation constants in :mod:`colorization.color`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from colorization.color import rgb_to_lab_norm
from colorization.data.augment import DeviceAugmentation
from colorization.data.images import UnreadableImage
from colorization.data.scan import ScanReport, scan_source, split_by_photo
from colorization.data.sources import ImageSource

log = logging.getLogger(__name__)


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` px (up or down), keeping the aspect ratio."""
    w, h = image.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    if new == (w, h):
        return image
    return image.resize(new, Image.Resampling.BILINEAR, reducing_gap=3.0 if scale < 0.5 else None)


class PhotoCrops(Dataset):
    """Square uint8 crops of photos ``indices`` of ``source``.

    Each photo is resized so its shorter side is ``resize`` px (photos smaller than the crop
    are upscaled), then cropped to ``image_size``. ``repeats`` crops per photo make an epoch:
    random ones in training; in evaluation, fixed ones (seeded by ``seed`` and the item
    index, the centre when ``repeats == 1``), so validation sees the same pixels every epoch.
    """

    def __init__(
        self,
        source: ImageSource,
        indices: list[int],
        image_size: int,
        resize: int,
        train: bool,
        repeats: int = 1,
        seed: int = 0,
    ) -> None:
        if not indices:
            raise ValueError("PhotoCrops needs at least one photo")
        self.source, self.indices = source, list(indices)
        self.image_size, self.resize = image_size, max(resize, image_size)
        self.train, self.repeats, self.seed = train, max(1, repeats), seed

    def __len__(self) -> int:
        return len(self.indices) * self.repeats

    def _load(self, item: int) -> Image.Image:
        for attempt in range(len(self.indices)):
            index = self.indices[(item + attempt) % len(self.indices)]
            try:
                return self.source.load(index, draft_size=self.resize)
            except UnreadableImage as error:  # passed the set-up scan, failed now: skip it
                warnings.warn(f"{error}; using the next photo instead", stacklevel=2)
        raise UnreadableImage("no photo of this split can be decoded any more")

    def _offsets(self, item: int, width: int, height: int) -> tuple[int, int]:
        room_x, room_y = width - self.image_size, height - self.image_size
        if self.train:
            return int(torch.randint(room_x + 1, ())), int(torch.randint(room_y + 1, ()))
        if self.repeats == 1:
            return room_x // 2, room_y // 2
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + item)
        return (
            int(torch.randint(room_x + 1, (), generator=generator)),
            int(torch.randint(room_y + 1, (), generator=generator)),
        )

    def __getitem__(self, item: int) -> torch.Tensor:
        image = resize_shorter_side(self._load(item), self.resize)
        x, y = self._offsets(item, *image.size)
        crop = image.crop((x, y, x + self.image_size, y + self.image_size))
        return torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1)


def lab_batch(rgb: torch.Tensor) -> dict[str, torch.Tensor]:
    """Float sRGB (B, 3, H, W) in [0, 1] -> the named, normalised batch every model sees."""
    l_norm, ab_norm = rgb_to_lab_norm(rgb)
    return {"L": l_norm, "ab": ab_norm, "rgb": rgb}


class LabDataModule(L.LightningDataModule):
    """Photos from any ``source``, split by photo, as normalised Lab batches on the device.

    Args:
        source: where photos come from (:mod:`colorization.data.sources`): a source, or a
            callable that builds one (a Hydra ``_partial_``), called with ``root`` if set.
        root: the folder the photos are in, for sources that read one (``data.root=DIR``).
        image_size: side of the square crops the model sees, in px (any size, e.g. 150).
        resize: shorter side, in px, photos are resized to before cropping (``None``: the
            crop size, so a crop spans the full shorter side).
        fractions: (train, val, test) fractions of the photos; default 80/10/10.
        seed: fixes the split and the evaluation crops.
        batch_size, eval_batch_size: per-device batch sizes (eval defaults to batch_size).
        num_workers: decoding processes; ``persistent_workers`` keeps them across epochs.
        pin_memory: page-locked host batches for asynchronous copies (``None``: when CUDA).
        train_repeats, eval_repeats: crops per photo per epoch / per evaluation.
        augment: device augmentation for training batches (``None`` disables it).
        min_colorfulness: skip photos whose colourfulness (Hasler-Suesstrunk, 0..255
            scale) is below this; they teach "no colour". 0 disables the check.
        scan_workers: threads that check the files at set-up.
    """

    def __init__(
        self,
        source: ImageSource | Callable[..., ImageSource],
        root: str | None = None,
        image_size: int = 128,
        resize: int | None = None,
        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 42,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        train_repeats: int = 1,
        eval_repeats: int = 1,
        augment: DeviceAugmentation | None = None,
        min_colorfulness: float = 0.0,
        scan_workers: int = 4,
    ) -> None:
        super().__init__()
        if not isinstance(source, ImageSource):
            source = source(root=root) if root is not None else source()
        self.source, self.augment = source, augment
        self.image_size, self.resize = image_size, resize or image_size
        self.fractions, self.seed = tuple(fractions), seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.persistent_workers = num_workers, persistent_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.train_repeats, self.eval_repeats = train_repeats, eval_repeats
        self.min_colorfulness, self.scan_workers = min_colorfulness, scan_workers
        self.report: ScanReport | None = None
        self.splits: dict[str, list[int]] | None = None
        self.datasets: dict[str, PhotoCrops] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        self.report = scan_source(self.source, self.min_colorfulness, self.scan_workers)
        self.splits = split_by_photo(self.report.kept, self.fractions, self.seed)
        for split, indices in self.splits.items():
            if indices:
                train = split == "train"
                repeats = self.train_repeats if train else self.eval_repeats
                self.datasets[split] = PhotoCrops(
                    self.source, indices, self.image_size, self.resize, train, repeats, self.seed
                )
        log.info(
            "data: %s; split by photo: %s",
            self.report.summary(),
            ", ".join(f"{k} {self._describe(k)}" for k in self.splits),
        )

    def _describe(self, split: str) -> str:
        names = self.split_names(split)
        return f"{len(names)} ({', '.join(names)})" if 0 < len(names) <= 3 else str(len(names))

    def split_names(self, split: str) -> list[str]:
        """Names of the photos in ``split`` (after :meth:`setup`)."""
        if self.splits is None:
            raise RuntimeError("call setup() first")
        return [self.source.name(i) for i in self.splits[split]]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise ValueError(f"the {split!r} split is empty: raise its fraction in data.fractions")
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            pin_memory=self.pin_memory,
            drop_last=shuffle and len(self.datasets[split]) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch: torch.Tensor, dataloader_idx: int) -> dict[str, torch.Tensor]:
        """uint8 RGB on the device -> (train: augmented) normalised Lab batch."""
        rgb = batch.float().div_(255.0)
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            rgb = self.augment(rgb)
        return lab_batch(rgb)
