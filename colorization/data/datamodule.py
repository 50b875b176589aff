"""``LabDataModule``: one data pipeline for every model.

Workers only decode, resize and crop, and deliver uint8 RGB ``(B, 3, H, W)``: four times
less to copy than float32 and no per-sample colour maths on the CPU (in training, with each
crop's (2, 3) augmentation matrix). On the device, ``on_after_batch_transfer`` augments
(one resampling for the batch) and converts the whole batch to Lab:

    {"L": (B, 1, H, W) in [-1, 1], "ab": (B, 2, H, W) in about [-1, 1], "rgb": (B, 3, H, W) in [0, 1]}

(normalisation constants in :mod:`colorization.color`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from colorization.color import AB_SCALE, linear_to_lab, normalize_l, rgb_u8_to_linear, srgb_to_linear
from colorization.data.augment import DRAWS, DeviceAugmentation
from colorization.data.base import SplitDataModule
from colorization.data.images import DataSourceError, UnreadableImage
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
    With ``augment`` (training), an item is ``(crop, theta)``: the crop and its (2, 3)
    augmentation matrix (:meth:`DeviceAugmentation.matrix`), drawn with the crop offsets.
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
        augment: DeviceAugmentation | None = None,
    ) -> None:
        if not indices:
            raise ValueError("PhotoCrops needs at least one photo")
        self.source, self.indices = source, list(indices)
        self.image_size, self.resize = image_size, max(resize, image_size)
        self.train, self.repeats, self.seed = train, max(1, repeats), seed
        self.augment = augment if augment is not None and augment.enabled else None
        #: photos that failed to load since set-up (each worker process keeps its own set)
        self.lost: set[int] = set()

    def __len__(self) -> int:
        return len(self.indices) * self.repeats

    def _load(self, item: int) -> Image.Image:
        for attempt in range(len(self.indices)):
            index = self.indices[(item + attempt) % len(self.indices)]
            if index in self.lost:
                continue
            try:
                return self.source.load(index, draft_size=self.resize)
            except UnreadableImage as error:  # passed the set-up scan, failed now (deleted, changed): skip it
                self.lost.add(index)  # one warning per data-loading process (a persistent worker: per run)
                warnings.warn(
                    f"{error}; it passed the set-up check, so it was changed or removed since. Using the next photo "
                    f"instead, now and for the rest of this run ({len(self.lost)} photo(s) lost so far in this "
                    "data-loading process)",
                    stacklevel=2,
                )
        names = ", ".join(self.source.name(i) for i in sorted(self.lost)[:3]) + (", ..." if len(self.lost) > 3 else "")
        raise DataSourceError(
            f"no photo of this {'training' if self.train else 'evaluation'} split can be decoded any more "
            f"({len(self.lost)} lost since the set-up check: {names}): they were changed or removed during the run"
        )

    def _generator(self, item: int, epoch: int | None) -> torch.Generator | None:
        """Fixed by (seed, epoch, item): the same crop and augmentation whichever worker makes
        them, also after a resume; ``None`` where nothing is drawn (centre crops) or for a
        training item without an epoch (the worker's own generator)."""
        if (self.train and epoch is None) or (not self.train and self.repeats == 1):
            return None
        return torch.Generator().manual_seed((self.seed * 1_000_003 + item) * 10_007 + (epoch or 0))

    def _offsets(self, width: int, height: int, generator: torch.Generator | None) -> tuple[int, int]:
        room_x, room_y = width - self.image_size, height - self.image_size
        if not self.train and self.repeats == 1:
            return room_x // 2, room_y // 2
        return (
            int(torch.randint(room_x + 1, (), generator=generator)),
            int(torch.randint(room_y + 1, (), generator=generator)),
        )

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``item``, or ``(item, epoch)`` from :class:`ResumableSampler` (reproducible crops)."""
        item, epoch = item if isinstance(item, tuple) else (item, None)
        image = resize_shorter_side(self._load(item), self.resize)
        generator = self._generator(item, epoch)
        x, y = self._offsets(*image.size, generator)
        crop = image.crop((x, y, x + self.image_size, y + self.image_size))
        crop = torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1)
        if self.augment is None:
            return crop
        draws = torch.rand(DRAWS, generator=generator, dtype=torch.float64).tolist()
        return crop, self.augment.matrix(draws, self.image_size, self.image_size)


class ResumableSampler(DistributedSampler):
    """Training order that a resumed run can continue exactly.

    The order of each epoch is a permutation seeded by ``(seed, epoch)`` (and sharded by
    rank under DDP, as ``DistributedSampler``); items are yielded as ``(index, epoch)`` so
    crops are seeded too. ``consumed`` counts the batches of this epoch that reached the
    model (the DataModule increments it); a checkpoint stores it, and a run restored from
    that checkpoint skips those batches of that epoch instead of starting it again.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
        blocks: list[tuple[int, int]] | None = None,
        window: int = 1,
    ) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=num_replicas > 1
        )
        self.batch_size, self.consumed = batch_size, 0
        self._resume: tuple[int, int] | None = None
        self.blocks, self.window = blocks, max(1, window)
        if blocks is not None:  # every rank the same count, the ranks' shares disjoint (a tail dropped)
            self.num_samples = len(self.dataset) // self.num_replicas
            self.total_size = self.num_samples * self.num_replicas

    def _block_order(self) -> list[int]:
        """Chunk-aware order (``blocks``: the dataset's items as ``(start, end)`` runs, e.g.
        shard chunks): the runs in a seeded random order, items shuffled within each window
        of ``window`` consecutive runs; rank ``r`` takes the ``r``-th contiguous share. A
        streaming reader then holds a few chunks at a time, and uses all of each."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        runs = [self.blocks[i] for i in torch.randperm(len(self.blocks), generator=generator).tolist()]
        order: list[int] = []
        for w in range(0, len(runs), self.window):
            items = [i for start, end in runs[w : w + self.window] for i in range(start, end)]
            order += [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]
        return order[self.rank * self.num_samples : (self.rank + 1) * self.num_samples]

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.consumed = 0
        super().set_epoch(epoch)

    def resume(self, epoch: int, consumed: int) -> None:
        self._resume = (epoch, consumed)
        self.epoch, self.consumed = epoch, consumed

    def __iter__(self):
        skip = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            skip = self._resume[1] * self.batch_size
            self.consumed = self._resume[1]
        else:
            self.consumed = 0
        self._resume = None
        epoch = self.epoch
        order = self._block_order() if self.blocks is not None else list(super().__iter__())
        return ((index, epoch) for index in order[skip:])


def loader_generator(seed: int) -> torch.Generator:
    """A loader's own generator: each iterator a DataLoader starts draws its workers' seed from
    it instead of from the global generator, so the training steps' draws (dropout, hints) do
    not depend on how many loaders a run started (a resumed run starts others)."""
    return torch.Generator().manual_seed(seed)


class ResumableLoader(DataLoader):
    """A DataLoader whose position Lightning saves in checkpoints (``state_dict``) and
    restores on resume, through its :class:`ResumableSampler`. After an epoch's last batch the
    position is the next epoch's start: Lightning may create (and start filling) the iterator a
    resumed run reads first before it sets the sampler's epoch."""

    def state_dict(self) -> dict[str, int]:
        if self.sampler.consumed >= len(self):
            return {"epoch": self.sampler.epoch + 1, "consumed": 0}
        return {"epoch": self.sampler.epoch, "consumed": self.sampler.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.resume(int(state["epoch"]), int(state["consumed"]))


#: how batches become Lab on the device (``data.lab``): ``fused``, our conversion (two 3x3 maps
#: around one cube root, the sRGB curve from a table for uint8), or ``kornia``,
#: ``kornia.color.rgb_to_lab``; the same batches to 1e-3, the fused one in fewer kernels
#: (experiments/perf measures both)
LAB_CONVERSIONS = ("fused", "kornia")


def lab_batch(rgb: torch.Tensor, lab: str = "fused") -> dict[str, torch.Tensor]:
    """sRGB (B, 3, H, W), uint8 or float in [0, 1] -> the named, normalised batch every model sees.

    ``lab="fused"``: uint8 input takes the sRGB curve from a 256-entry table
    (:func:`~colorization.color.rgb_u8_to_linear`), float input (after augmentation) computes
    it; they agree to 1e-4. About 20 small kernels in all: on a GPU, launching them is the cost.
    ``lab="kornia"``: ``kornia.color.rgb_to_lab`` on float RGB, then the same normalisation.
    L and ab come out contiguous, as models may ``view`` them.
    """
    if lab == "kornia":
        import kornia.color

        rgb = rgb.float().div_(255.0) if rgb.dtype == torch.uint8 else rgb
        lab_real = kornia.color.rgb_to_lab(rgb)
        l_norm, ab_norm = normalize_l(lab_real[:, :1]), lab_real[:, 1:] / AB_SCALE
        return {"L": l_norm.contiguous(), "ab": ab_norm.contiguous(), "rgb": rgb}
    if lab != "fused":
        raise ValueError(f"data.lab must be one of {list(LAB_CONVERSIONS)}, got {lab!r}")
    if rgb.dtype == torch.uint8:
        lab_norm = linear_to_lab(rgb_u8_to_linear(rgb), normalized=True)
        rgb = rgb.float().div_(255.0)
    else:
        lab_norm = linear_to_lab(srgb_to_linear(rgb), normalized=True)
    return {"L": lab_norm[:, :1].contiguous(), "ab": lab_norm[:, 1:].contiguous(), "rgb": rgb}


def auto_workers(num_workers: int | str, limit: int = 8) -> int:
    """``"auto"`` -> one worker per CPU core this process may use, at most ``limit``.

    Measured (experiments/perf): on 2 cores, 2 workers keep a 150 px skip-CAE step fed
    (pipeline efficiency 0.93); a GPU step is ~75x faster and needs every core it can get.
    """
    if num_workers == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(limit, cores))
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"data.num_workers must be a count >= 0 or 'auto', got {num_workers!r}")
    return num_workers


class LabDataModule(SplitDataModule):
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
        num_workers: decoding processes, or ``"auto"``: one per available CPU core, at most
            8 (:func:`auto_workers`); ``persistent_workers`` keeps them across epochs
            (no start-up pause at each epoch and evaluation).
        pin_memory: page-locked host batches, copied to a CUDA device with
            ``non_blocking=True`` so the copy overlaps compute (``None``: when CUDA is there).
        train_repeats, eval_repeats: crops per photo per epoch / per evaluation.
        augment: device augmentation for training batches (``None`` disables it).
        min_colorfulness: skip photos whose colourfulness (Hasler-Suesstrunk, 0..255
            scale) is below this; they teach "no colour". 0 disables the check.
        scan_workers: threads that check the files at set-up.
        lab: how batches become Lab on the device: ``fused`` (default) or ``kornia``
            (:data:`LAB_CONVERSIONS`).
        scan_cache: where the set-up scan keeps each file's result, keyed by path, size,
            times and inode, so a rerun over unchanged files decodes none: ``"auto"``
            (:func:`~colorization.data.scan.default_scan_cache`), a folder, or ``None``.
        shuffle_window: for a chunked source (``data=shards``): training order shuffles the
            chunks, and the photos within each window of this many consecutive chunks
            (:class:`ResumableSampler`; 1: one chunk at a time, the fastest read, and random
            enough as a pack stores its photos shuffled); other sources shuffle every photo.
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
        num_workers: int | str = "auto",
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        train_repeats: int = 1,
        eval_repeats: int = 1,
        augment: DeviceAugmentation | None = None,
        min_colorfulness: float = 0.0,
        scan_workers: int = 4,
        lab: str = "fused",
        shuffle_window: int = 1,
        scan_cache: str | None = "auto",
    ) -> None:
        super().__init__()
        if lab not in LAB_CONVERSIONS:
            raise ValueError(f"data.lab must be one of {list(LAB_CONVERSIONS)}, got {lab!r}")
        self.lab = lab
        if not isinstance(source, ImageSource):
            source = source(root=root) if root is not None else source()
        self.source, self.augment = source, augment
        self.image_size, self.resize = image_size, resize or image_size
        self.fractions, self.seed = tuple(fractions), seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.persistent_workers = auto_workers(num_workers), persistent_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.train_repeats, self.eval_repeats = train_repeats, eval_repeats
        self.min_colorfulness, self.scan_workers = min_colorfulness, scan_workers
        self.shuffle_window, self.scan_cache = shuffle_window, scan_cache
        self.report: ScanReport | None = None
        self.splits: dict[str, list[int]] | None = None
        self.datasets: dict[str, PhotoCrops] = {}
        self.train_sampler: ResumableSampler | None = None

    def prepare_data(self) -> None:
        """Lightning calls this in one process per node (local rank 0) before any ``setup``:
        the scan fills the scan cache once, every other rank's ``setup`` then reads it, and
        this process keeps its report."""
        if self.scan_cache is not None and self.report is None and self.source.packed_splits() is None:
            self.report = scan_source(self.source, self.min_colorfulness, self.scan_workers, cache_dir=self.scan_cache)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        packed = self.source.packed_splits()
        if packed is not None:  # shards: checked, and split, when they were packed
            self.report, self.splits = ScanReport(kept=[i for s in packed.values() for i in s]), packed
        else:
            if self.report is None:  # prepare_data did not scan in this process
                self.report = scan_source(
                    self.source, self.min_colorfulness, self.scan_workers, cache_dir=self.scan_cache
                )
            self.splits = self._split(self.report)
            strategy = getattr(self.trainer, "strategy", None)
            if strategy is not None and getattr(self.trainer, "world_size", 1) > 1:
                # every rank trains on rank 0's split: a file that changed, or failed to read for
                # a moment, between two ranks' scans must not give them different lengths (a hang)
                self.splits = strategy.broadcast(self.splits, src=0)
        for split, indices in self.splits.items():
            if indices:
                train = split == "train"
                repeats = self.train_repeats if train else self.eval_repeats
                self.datasets[split] = PhotoCrops(
                    self.source, indices, self.image_size, self.resize, train, repeats, self.seed,
                    augment=self.augment if train else None,
                )  # fmt: skip
        manifest = getattr(self.source, "manifest", None)
        if packed is not None and isinstance(manifest, dict):
            log.info(
                "data: packed at %s px, split with fractions %s and seed %s when packed (data.fractions and the "
                "data seed do not change a pack's split)",
                manifest.get("size"), manifest.get("fractions"), manifest.get("seed"),
            )  # fmt: skip
        log.info(
            "data: %s; split by photo: %s",
            self.report.summary(),
            ", ".join(f"{k} {self._describe(k)}" for k in self.splits),
        )

    def _split(self, report: ScanReport) -> dict[str, list[int]]:
        try:
            return split_by_photo(report.kept, self.fractions, self.seed)
        except ValueError as error:
            root = getattr(self.source, "root", None)
            folders = ", ".join(map(str, root)) if isinstance(root, (list, tuple)) else root
            where = f" under {folders}" if root is not None else ""
            raise DataSourceError(
                f"too few usable photos{where}: {report.summary()}; {error}. Add photos or change data.fractions"
            ) from None

    def _describe(self, split: str) -> str:
        count = len(self.splits[split])  # names only for a tiny split: a shard's name is a read
        return f"{count} ({', '.join(self.split_names(split))})" if 0 < count <= 3 else str(count)

    def split_names(self, split: str) -> list[str]:
        """Names of the photos in ``split`` (after :meth:`setup`)."""
        if self.splits is None:
            raise RuntimeError("call setup() first")
        return [self.source.name(i) for i in self.splits[split]]

    def loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise ValueError(f"the {split!r} split is empty: raise its fraction in data.fractions")
        dataset = self.datasets[split]
        common = dict(
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            pin_memory=self.pin_memory,
            generator=loader_generator(self.seed),
        )
        if not shuffle:
            return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, **common)
        world, rank = 1, 0
        if self.trainer is not None:  # under DDP: this process's share (batch_size is per device)
            world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = ResumableSampler(
            dataset, self.batch_size, self.seed, num_replicas=world, rank=rank, blocks=self._blocks(dataset),
            window=self.shuffle_window,
        )  # fmt: skip
        fit_loop = getattr(self.trainer, "fit_loop", None)
        if fit_loop is not None:  # the epoch Lightning runs next (a resumed run: after the checkpoint's)
            sampler.set_epoch(fit_loop.epoch_progress.current.processed)
        self.train_sampler = sampler
        drop_last = sampler.num_samples > self.batch_size  # a split smaller than a batch is one batch
        return ResumableLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=drop_last, **common)

    def _blocks(self, dataset: PhotoCrops) -> list[tuple[int, int]] | None:
        """The training items as runs of one chunk each, for a chunked source (shards):
        a run's photos are read together (:meth:`ResumableSampler._block_order`)."""
        bounds = self.source.chunk_bounds()
        if bounds is None:
            return None
        position = {index: k for k, index in enumerate(dataset.indices)}  # source index -> item
        runs = []
        for start, end in bounds:
            items = [position[i] for i in range(start, end) if i in position]
            if items:
                if items != list(range(items[0], items[0] + len(items))):
                    return None  # not contiguous: no chunk order to follow
                runs.append((items[0], items[0] + len(items)))
        photos = len(dataset.indices)
        return [(a + r * photos, b + r * photos) for r in range(dataset.repeats) for a, b in runs]

    def sample_loader(self, split: str, items: int, seed: int | None = None) -> DataLoader:
        """``items`` crops of ``split`` drawn at random (seeded: ``seed``, default the data
        seed), in batches of ``batch_size``: a look at a large split's statistics (the ab
        prior of ``output=bins``) without reading all of it. Touches no training-loader state."""
        self.setup("fit")
        if split not in self.datasets:
            raise ValueError(f"the {split!r} split is empty: raise its fraction in data.fractions")
        dataset = self.datasets[split]
        generator = torch.Generator().manual_seed(self.seed if seed is None else seed)
        order = torch.randperm(len(dataset), generator=generator)[: max(1, items)].tolist()
        return DataLoader(
            Subset(dataset, order), batch_size=self.batch_size, num_workers=self.num_workers, pin_memory=self.pin_memory
        )

    def transfer_batch_to_device(
        self, batch: torch.Tensor | list[torch.Tensor], device: torch.device, dataloader_idx: int
    ) -> torch.Tensor | list[torch.Tensor]:
        """The uint8 batch (and augmentation matrices) to the device; asynchronous from
        pinned memory (``pin_memory``)."""
        non_blocking = self.pin_memory and device.type == "cuda"
        if isinstance(batch, (list, tuple)):
            return [part.to(device, non_blocking=non_blocking) for part in batch]
        return batch.to(device, non_blocking=non_blocking)

    def device_transforms(self, batch: torch.Tensor | list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """A uint8 RGB batch on the device (training: with augmentation matrices) -> the
        normalised Lab batch every model sees. Pure: counts nothing."""
        if isinstance(batch, (list, tuple)):  # training crops and their matrices
            images, theta = batch
            if self.augment is None:
                return lab_batch(images, self.lab)
            return lab_batch(self.augment(images, theta).div_(255.0).clamp_(0.0, 1.0), self.lab)
        return lab_batch(batch, self.lab)

    def device_batch(self, raw: torch.Tensor | list[torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
        """A loader batch -> the model's batch on ``device``: the path Lightning's loop takes."""
        return self.device_transforms(self.transfer_batch_to_device(raw, device, 0))

    def device_batches(self, split: str, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
        """Every batch of ``split`` as the model sees it, for loops outside Lightning's
        (closed-form fitting, set-level metrics, benchmarks)."""
        self.setup("fit")
        loader = {"train": self.train_dataloader, "val": self.val_dataloader, "test": self.test_dataloader}[split]()
        for raw in loader:
            yield self.device_batch(raw, device)

    def on_after_batch_transfer(
        self, batch: torch.Tensor | list[torch.Tensor], dataloader_idx: int
    ) -> dict[str, torch.Tensor]:
        """Lightning's hook: :meth:`device_transforms`, and the one place the training
        sampler's progress is counted (a batch handed to the model: a checkpoint skips it)."""
        if self.trainer is not None and self.trainer.training and self.train_sampler is not None:
            self.train_sampler.consumed += 1
        return self.device_transforms(batch)
