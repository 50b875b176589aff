"""Performance, measured side by side in one process: input pipeline, training step, inference.

    python experiments/perf/run.py                 # full table (about 10 min on a 2-core CPU)
    python experiments/perf/run.py --quick         # a smoke run of every measurement

* **Input pipeline**: normalised Lab batches delivered on the device per second, by
  :class:`~colorization.data.LabDataModule` (workers decode and crop, ship uint8; Lab on the
  device) and by a *seed-style* reference (:class:`SeedStylePhotos`: per-sample PIL decode,
  float, ``skimage.color.rgb2lab`` in ``__getitem__``, float32 collation). Same photos, same
  crops, workers, batch size and device; no augmentation in either.
* **Training step**: images per second of full Lightning training steps (forward, loss,
  backward, optimizer, logging) with (a) real data through the DataModule, augmentation
  included, and (b) a synthetic batch already on the device in its final form. (a) / (b) is
  the *pipeline efficiency*: 1.0 means the model never waits for data.
* **Device transforms**: what the main process does to every batch on the device
  (augmentation + Lab for training, Lab for evaluation), alone, and how many tensor
  operations (kernel launches on a GPU) that takes.
* **Speed switches**: the same step with one switch changed at a time.
* **Inference**: the colorizer at its working size, batched.

Every number is the median of ``repeats`` timed windows after a warm-up.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, Dataset

from colorization.color import AB_SCALE, L_CENTER, L_SCALE
from colorization.compose import PROJECT_ROOT, compose_config
from colorization.data import DeviceAugmentation, ImageFolder, LabDataModule
from colorization.data.datamodule import ResumableSampler, auto_workers, resize_shorter_side
from colorization.runtime import keep_freed_memory
from colorization.train import build_model


@dataclass
class Budget:
    """How long each measurement runs: ``warmup`` untimed steps, then ``repeats`` windows of ``steps``."""

    warmup: int = 3
    steps: int = 5
    repeats: int = 3


@dataclass
class Row:
    section: str
    name: str
    rates: list[float]
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- photos


def sample_photo_folder(folder: Path) -> Path:
    """The bundled sample photos written as JPEG files (for machines without ../shared)."""
    from colorization.data import SamplePhotos

    folder.mkdir(parents=True, exist_ok=True)
    photos = SamplePhotos()
    for index in range(len(photos)):
        path = folder / f"{photos.name(index)}.jpg"
        if not path.exists():
            photos.load(index).save(path, quality=92)
    return folder


# ----------------------------------------------------------------------------- input pipeline


class SeedStylePhotos(Dataset):
    """The seeds' way of building colorization data, for comparison.

    Per sample: decode with PIL, resize and random-crop like :class:`PhotoCrops`, convert to
    float, ``skimage.color.rgb2lab`` on the CPU, normalise, and return float32 ``(L, ab)``
    tensors that the default collation stacks.
    """

    def __init__(self, paths: Sequence[Path], image_size: int, resize: int, repeats: int = 1) -> None:
        self.paths, self.image_size, self.resize, self.repeats = (
            list(paths),
            image_size,
            max(resize, image_size),
            repeats,
        )

    def __len__(self) -> int:
        return len(self.paths) * self.repeats

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        from skimage.color import rgb2lab

        with Image.open(self.paths[item % len(self.paths)]) as image:
            image = resize_shorter_side(image.convert("RGB"), self.resize)
        x = int(torch.randint(image.width - self.image_size + 1, ()))
        y = int(torch.randint(image.height - self.image_size + 1, ()))
        crop = image.crop((x, y, x + self.image_size, y + self.image_size))
        lab = rgb2lab(np.asarray(crop, dtype=np.float32) / 255.0).astype(np.float32)
        l_norm = (lab[..., :1] - L_CENTER) / L_SCALE
        ab_norm = lab[..., 1:] / AB_SCALE
        return torch.from_numpy(l_norm.transpose(2, 0, 1).copy()), torch.from_numpy(ab_norm.transpose(2, 0, 1).copy())


def loader_rate(
    batches: Iterator, deliver: Callable[[object], dict | tuple], device: torch.device, batch_size: int, budget: Budget
) -> list[float]:
    """Images/s of ``deliver(next(batches))`` (to the device, in Lab) over timed windows."""
    for _ in range(budget.warmup):
        deliver(next(batches))
    rates = []
    for _ in range(budget.repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(budget.steps):
            deliver(next(batches))
        synchronize(device)
        rates.append(budget.steps * batch_size / (time.perf_counter() - start))
    return rates


def lab_datamodule(root: Path, image_size: int, batch_size: int, num_workers: int, **kwargs) -> LabDataModule:
    return LabDataModule(
        source=ImageFolder(root),
        image_size=image_size,
        resize=kwargs.pop("resize", image_size),
        fractions=(1.0, 0.0, 0.0),
        batch_size=batch_size,
        num_workers=num_workers,
        augment=kwargs.pop("augment", None),
        min_colorfulness=0.0,
        train_repeats=kwargs.pop("train_repeats", 50),
        **kwargs,
    )


def input_pipeline(
    root: Path, image_size: int, batch_size: int, num_workers: int, device: torch.device, budget: Budget
) -> list[Row]:
    """LabDataModule vs the seed-style reference, same photos, workers, batch size, device."""
    dm = lab_datamodule(root, image_size, batch_size, num_workers)
    dm.setup("fit")
    paths = [dm.source.paths[i] for i in dm.splits["train"]]

    def ours(raw: torch.Tensor) -> dict:
        return dm.device_batch(raw, device)

    pin = device.type == "cuda"

    def seed(raw: tuple[torch.Tensor, torch.Tensor]) -> tuple:
        return tuple(t.to(device, non_blocking=pin) for t in raw)

    reference = DataLoader(
        SeedStylePhotos(paths, image_size, image_size, repeats=50),
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin,
        drop_last=True,
    )
    note = f"{len(paths)} photos, {image_size} px crops, batch {batch_size}, {num_workers} workers"
    rows = [
        Row(
            "input pipeline",
            "LabDataModule (uint8 from workers, Lab on the device)",
            loader_rate(iter(dm.train_dataloader()), ours, device, batch_size, budget),
            note,
        ),  # fmt: skip
        Row(
            "input pipeline",
            "seed-style reference (skimage rgb2lab per sample, float32)",
            loader_rate(iter(reference), seed, device, batch_size, budget),
            note,
        ),  # fmt: skip
    ]
    return rows


class OpCounter(TorchDispatchMode):
    """Counts the tensor operations dispatched inside it (each one a kernel launch on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], object]) -> int:
    with OpCounter() as counter:
        fn()
    return counter.count


def device_transforms(root: Path, image_size: int, batch_size: int, device: torch.device, budget: Budget) -> list[Row]:
    """Images/s of ``device_transforms`` alone on batches already on the device."""
    dm = lab_datamodule(root, image_size, batch_size, 0, augment=DeviceAugmentation())
    dm.setup("fit")
    train = dm.transfer_batch_to_device(next(iter(dm.train_dataloader())), device, 0)
    rows = []
    cases = [("augmentation + Lab, training batch", train), ("Lab, evaluation batch", train[0])]
    for lab in ("fused", "kornia"):  # data.lab: the default and the Kornia conversion, side by side
        dm.lab = lab
        for name, batch in cases:

            def transform(b=batch) -> dict:
                return dm.device_transforms(b)

            transform()  # constants on the device, once
            ops = count_ops(transform)
            rates = loader_rate(itertools.repeat(batch), dm.device_transforms, device,
                                batch_size, budget)  # fmt: skip
            rows.append(Row("device transforms", f"{name} (data.lab={lab})", rates, f"{ops} tensor ops per batch, "
                            f"{image_size} px, batch {batch_size}", {"ops": ops}))  # fmt: skip
    dm.lab = "fused"
    return rows


def main_process_overhead(root: Path, batch_size: int, num_workers: int, device: torch.device,
                          size: int = 16, batches: int = 40, repeats: int = 3) -> Row:  # fmt: skip
    """Images/s of what the main process does per training batch (take it from the workers,
    copy it to the device, augment and convert it) when the workers are far ahead and the
    crops tiny: per-batch and per-operation overheads only, the part that a fast GPU step
    cannot hide."""
    dm = lab_datamodule(root, size, batch_size, 0, augment=DeviceAugmentation(), train_repeats=1)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    wanted = (batches + 1) * batch_size  # an epoch of just over `batches`: the workers then stop
    dataset.indices = dataset.indices[:wanted]
    dataset.repeats = -(-wanted // len(dataset.indices))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=ResumableSampler(dataset, batch_size, 0),
                        num_workers=max(1, num_workers), prefetch_factor=batches + 2, persistent_workers=True,
                        pin_memory=device.type == "cuda", drop_last=True)  # fmt: skip
    start = time.perf_counter()
    for _ in loader:  # one epoch at the workers' pace: how long they need to fill the queue
        pass
    fill = time.perf_counter() - start
    rates = []
    for _ in range(repeats):
        batches_iter = iter(loader)  # persistent workers start on the whole epoch at once
        time.sleep(1.5 * fill + 1)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(batches):
            dm.device_batch(next(batches_iter), device)
        synchronize(device)
        rates.append(batches * batch_size / (time.perf_counter() - start))
        del batches_iter
    ms = 1000 * batch_size / statistics.median(rates)
    return Row("device transforms", "main process per training batch: fetch + copy + augmentation + Lab", rates,
               f"{ms:.2f} ms per batch; {size} px crops, workers ahead: overheads only", {"ms": ms})  # fmt: skip


def epoch_start_seconds(root: Path, image_size: int, batch_size: int, num_workers: int, persistent: bool) -> float:
    """Seconds to the first batch of the second epoch (worker start-up unless persistent)."""
    dm = lab_datamodule(root, image_size, batch_size, num_workers, persistent_workers=persistent, train_repeats=1)
    dm.setup("fit")
    loader = dm.train_dataloader()
    for _ in loader:  # first epoch
        pass
    start = time.perf_counter()
    next(iter(loader))
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- training step


class StepTimer(L.Callback):
    """Wall-clock time at the boundaries of the timed windows: after ``warmup`` batches and
    every ``steps`` batches after that. The device is synchronised at boundaries only, so
    data loading for the next step overlaps the device's work as in a real run."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        done = batch_idx + 1
        if done >= self.warmup and (done - self.warmup) % self.steps == 0:
            synchronize(pl_module.device)
            self.times.append(time.perf_counter())


class SyntheticBatches(L.LightningDataModule):
    """One real batch, converted once and kept on the device, served ``steps`` times."""

    def __init__(self, batch: dict[str, torch.Tensor], steps: int) -> None:
        super().__init__()
        self.batch, self.steps = batch, steps

    def train_dataloader(self) -> list[int]:
        return list(range(self.steps))

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx) -> dict[str, torch.Tensor]:
        return self.batch


def train_config(model: str, image_size: int, batch_size: int, root: Path, overrides: Sequence[str] = ()) -> DictConfig:
    output = Path(tempfile.mkdtemp(prefix="colorization-bench-"))
    cfg = compose_config(
        "train",
        [f"model={model}", "data=folder", f"data.root={root}", f"data.image_size={image_size}",
         f"data.batch_size={batch_size}", "data.min_colorfulness=0", "data.train_repeats=50", *overrides],
        output,
    )  # fmt: skip
    with open_dict(cfg):
        cfg.data.fractions = [1.0, 0.0, 0.0]
    return cfg


def step_rate(
    cfg: DictConfig, device: torch.device, budget: Budget, synthetic: bool, profiler: str | None = None
) -> list[float]:
    """Images/s of Lightning training steps for ``cfg`` on real or synthetic batches."""
    L.seed_everything(0, workers=True)
    import hydra

    datamodule = hydra.utils.instantiate(cfg.data)
    model = build_model(cfg)
    total = budget.warmup + budget.steps * budget.repeats
    if synthetic:
        datamodule.setup("fit")
        raw = next(iter(datamodule.train_dataloader()))
        with torch.no_grad():
            batch = datamodule.device_batch(raw, device)
        datamodule = SyntheticBatches(batch, total)
    timer = StepTimer(budget.warmup, budget.steps)
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        max_steps=total,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision=cfg.trainer.precision,
        callbacks=[timer],
        profiler=profiler,
    )
    with warnings_quiet():
        trainer.fit(model, datamodule=datamodule)
    times, batch_size = timer.times, cfg.data.batch_size
    return [budget.steps * batch_size / (end - start) for start, end in zip(times, times[1:])]


@contextlib.contextmanager
def warnings_quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def profile_step(model: str, size: int, batch_size: int, root: Path, device: torch.device, budget: Budget,
                 overrides: Sequence[str] = ()) -> None:  # fmt: skip
    """Lightning's simple profiler over a real-data run: where the main process spends a step."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.INFO)
    step_rate(
        train_config(model, size, batch_size, root, overrides), device, budget, synthetic=False, profiler="simple"
    )


def training_steps(
    models: Sequence[tuple[str, int]], batch_size: int, root: Path, device: torch.device, budget: Budget,
    overrides: Sequence[str] = (),
) -> list[Row]:  # fmt: skip
    rows = []
    for model, size in models:
        cfg = train_config(model, size, batch_size, root, overrides)
        real = step_rate(cfg, device, budget, synthetic=False)
        synthetic = step_rate(cfg, device, budget, synthetic=True)
        note = f"batch {batch_size}, {cfg.data.num_workers} workers"
        efficiency = statistics.median(real) / statistics.median(synthetic)
        rows.append(Row("training step", f"{model} {size} px, real data", real, note, {"efficiency": efficiency}))
        rows.append(Row("training step", f"{model} {size} px, synthetic on device", synthetic, note))
        if (model, size) == tuple(models[0]):  # where the time goes: the same without augmentation
            plain = step_rate(train_config(model, size, batch_size, root, [*overrides, "data.augment=null"]),
                              device, budget, synthetic=False)  # fmt: skip
            ratio = statistics.median(plain) / statistics.median(synthetic)
            rows.append(Row("training step", f"{model} {size} px, real data, no augmentation", plain, note,
                            {"efficiency": ratio}))  # fmt: skip
    return rows


def speed_switches(
    switches: dict[str, Sequence[str]], model: str, size: int, batch_size: int, root: Path, device: torch.device,
    budget: Budget,
) -> list[Row]:  # fmt: skip
    """The synthetic step with each switch on its own (the first entry is the baseline)."""
    rows = []
    for name, overrides in switches.items():
        cfg = train_config(model, size, batch_size, root, overrides)
        try:
            rates = step_rate(cfg, device, budget, synthetic=True)
        except Exception as error:  # noqa: BLE001 - a switch this device does not support
            rows.append(
                Row("speed switch", name, [float("nan")], f"not available: {type(error).__name__}: {error}"[:120])
            )
            continue
        rows.append(Row("speed switch", name, rates, " ".join(overrides) or "defaults"))
    return rows


# ----------------------------------------------------------------------------- inference


@torch.no_grad()
def inference(model: str, size: int, batch_size: int, root: Path, device: torch.device, budget: Budget) -> Row:
    """Working-size colorizations per second (the network part of ``colorize``)."""
    from colorization.inference.model import Colorizer

    cfg = train_config(model, size, batch_size, root)
    colorizer = Colorizer.from_module(build_model(cfg)).eval().to(device)
    l_norm = torch.rand(batch_size, 1, size, size, device=device) * 2 - 1
    rates = loader_rate(
        iter(lambda: l_norm, None), lambda x: colorizer(x), device, batch_size, budget
    )  # deliver = one forward pass
    return Row("inference", f"{model} at {size} px, batch {batch_size}", rates, "L in, ab out, no grad")


# ----------------------------------------------------------------------------- report


def display_path(path: Path) -> str:
    """``path`` relative to the project folder (no machine-specific paths in recorded tables)."""
    try:
        return str(Path(os.path.relpath(Path(path).resolve(), PROJECT_ROOT)))
    except ValueError:
        return str(path)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), {os.cpu_count()} CPU cores"
    return f"CPU: {os.cpu_count()} cores ({platform.machine()}), {torch.get_num_threads()} torch threads"


def markdown(rows: list[Row], device: torch.device, extra_lines: Sequence[str] = ()) -> str:
    lines = [
        f"Device: {describe_device(device)}; torch {torch.__version__}, lightning {L.__version__}.",
        "",
        "| section | measurement | images/s (median) | runs | ratio | setting |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    reference = {r.section: r for r in rows if r.name.startswith("seed-style")}
    baseline = next((r for r in rows if r.section == "speed switch"), None)  # the first switch row
    for row in rows:
        ratio = ""
        if "efficiency" in row.extra:
            ratio = f"pipeline efficiency {row.extra['efficiency']:.2f}"
        elif row.section == "input pipeline" and row is not reference.get(row.section):
            ratio = f"{row.median / reference[row.section].median:.2f}x the reference"
        elif row.section == "speed switch" and row is not baseline and not np.isnan(row.median):
            ratio = f"{row.median / baseline.median:.2f}x the baseline"
        runs = ", ".join(f"{r:.0f}" for r in row.rates)
        lines.append(f"| {row.section} | {row.name} | {row.median:.1f} | {runs} | {ratio} | {row.note} |")
    lines += ["", *extra_lines]
    return "\n".join(lines)


def default_switches(device: torch.device) -> dict[str, list[str]]:
    switches = {
        "baseline (fp32)": [],
        "channels_last": ["model.channels_last=true"],
        "bf16-mixed": ["trainer.precision=bf16-mixed"],
        "channels_last + bf16-mixed": ["model.channels_last=true", "trainer.precision=bf16-mixed"],
        "fused Adam": ["optim.fused=true"],
        "torch.compile": ["model.compile=true"],
    }
    if device.type == "cuda":
        switches["compile + channels_last + bf16 + fused"] = [
            "model.compile=true", "model.channels_last=true", "trainer.precision=bf16-mixed", "optim.fused=true"
        ]  # fmt: skip
    return switches


def run(
    root: Path, device: torch.device, budget: Budget, batch_size: int, num_workers: int | None, quick: bool = False,
    compile_budget: Budget | None = None, models: Sequence[tuple[str, int]] | None = None, steps_only: bool = False,
) -> str:  # fmt: skip
    keep_freed_memory()  # as train.py does (train.yaml: keep_freed_memory=true)
    for name in ("lightning.pytorch", "lightning.fabric"):  # no banner per Trainer
        logging.getLogger(name).setLevel(logging.WARNING)
    default = OmegaConf.load(PROJECT_ROOT / "conf" / "base" / "data.yaml").num_workers
    workers = auto_workers(num_workers if num_workers is not None else default)
    default_models = [("skip_cae", 150), ("skip_cae", 256), ("fusion", 150), ("fusion", 256)]
    models = models or ([("skip_cae", 64)] if quick else default_models)
    overrides = [f"data.num_workers={workers}"]
    started = time.perf_counter()
    rows: list[Row] = []

    def measured(new: list[Row]) -> None:  # progress, so a run cut short still tells something
        rows.extend(new)
        for row in new:
            print(f"[bench] {row.section}: {row.name}: {row.median:.1f} images/s {row.extra or ''}", flush=True)

    if steps_only:
        measured(device_transforms(root, models[0][1], batch_size, device, budget))
        measured([main_process_overhead(root, batch_size, workers, device, repeats=2 if quick else 3)])
        measured(training_steps(models, batch_size, root, device, budget, overrides))
        return markdown(rows, device, [f"Photos: {display_path(root)}. Training steps only."])
    measured(input_pipeline(root, models[0][1], batch_size, workers, device, budget))
    measured(device_transforms(root, models[0][1], batch_size, device, budget))
    measured([main_process_overhead(root, batch_size, workers, device, repeats=2 if quick else 3)])
    measured(training_steps(models, batch_size, root, device, budget, overrides))
    measured([inference("skip_cae", models[0][1], batch_size, root, device, budget)])
    switches = default_switches(device)
    if quick:
        switches = {k: v for k, v in switches.items() if k in ("baseline (fp32)", "channels_last")}
    for name, switch in switches.items():
        measured(speed_switches({name: switch}, models[0][0], models[0][1], batch_size, root, device,
                                compile_budget if "compile" in name and compile_budget else budget))  # fmt: skip
    persistent = epoch_start_seconds(root, models[0][1], batch_size, workers, True)
    fresh = epoch_start_seconds(root, models[0][1], batch_size, workers, False)
    lines = [
        f"Epoch start (first batch of the 2nd epoch, {workers} workers): persistent_workers=true {persistent:.3f} s, "
        f"false {fresh:.3f} s.",
        f"Photos: {display_path(root)}. Budget: {budget.warmup} warm-up steps, "
        f"{budget.repeats} windows of {budget.steps} steps. Total time {time.perf_counter() - started:.0f} s.",
    ]
    return markdown(rows, device, lines)
