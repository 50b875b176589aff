"""The batched run of ``colorize``: inputs (files, folders, globs) to planned outputs, then
the photos through the colorizer in batches, each photo on its own, then the videos one at a
time, their frames in batches (:mod:`colorization.inference.video`). A photo keeps its aspect
ratio at the working size (:func:`~colorization.inference.fullres.working_input`): photos of a
batch with the same working shape go through the network together, the others one group per
shape; a model of one square size (an ONNX file of an older colorize-export) gets each photo
letterboxed.

Each input is handled on its own: a file that cannot be read gets one line on stderr and
the run goes on. Inputs are never overwritten, outputs are written atomically, existing
outputs are skipped unless ``--overwrite``. Outputs are marked as colorize's own (PNG text /
JPEG comment): found again in the output folder (``-o`` = the input folder), they are not
taken as inputs, so a repeated run does nothing.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from colorization.data.images import IMAGE_EXTENSIONS, UnreadableImage, open_rgb
from colorization.hints import Hint, HintsError, hint_channels, read_hints
from colorization.inference.fullres import (
    comparison,
    compose_full_resolution,
    gray_of,
    is_gray,
    letterbox,
    pad_to_multiple,
    working_input,
    working_shape,
)
from colorization.inference.model import (
    ColorizeError,
    Colorizer,
    OnnxColorizer,
    check_size,
    load_colorizer,
    pick_device,
)
from colorization.inference.options import FORMATS
from colorization.inference.video import VIDEO_EXTENSIONS, UnreadableVideo, colorize_video, is_own_video, is_video
from colorization.io import printable, remove_stale_temp_files, save_image_atomic

#: written into every output (PNG text chunk "Software", JPEG comment) to recognise it later
OUTPUT_MARK = "colorization colorize"


@dataclass
class Job:
    """One input file and the outputs it will get."""

    source: Path
    outputs: dict[str, Path] = field(default_factory=dict)  # kind ("colorized", "sample1", "compare") -> path


def output_mark(fmt: str) -> dict:
    """Pillow save arguments that mark a file as colorize's output."""
    if fmt == "jpg":
        return {"comment": OUTPUT_MARK.encode()}
    info = PngInfo()
    info.add_text("Software", OUTPUT_MARK)
    return {"pnginfo": info}


def is_own_output(path: Path) -> bool:
    """Whether ``path`` carries :data:`OUTPUT_MARK` (reads the header only)."""
    if is_video(path):
        return is_own_video(path)
    try:
        with Image.open(path) as image:
            mark = image.info.get("Software") or image.info.get("comment") or ""
    except Exception:  # noqa: BLE001 - not an image we wrote
        return False
    return (mark.decode(errors="replace") if isinstance(mark, bytes) else str(mark)) == OUTPUT_MARK


def expand_inputs(inputs: Sequence[str], out_dir: Path) -> tuple[list[tuple[Path, Path]], list[str], int]:
    """Files, folders (recursive) and globs -> ([(file, its path relative to the output
    folder)], [errors], number of earlier outputs left out). Earlier outputs are files under
    ``out_dir`` that a folder or glob found: all of them when ``out_dir`` is a sub-folder of
    the input folder, else those marked as colorize's own (``-o`` = the input folder, or an
    input folder inside ``-o``)."""
    found: list[tuple[Path, Path]] = []
    errors: list[str] = []
    out_resolved = out_dir.resolve()
    left_out = 0

    def earlier_output(path: Path, folder: Path) -> bool:
        folder = folder.resolve()
        if not path.resolve().is_relative_to(out_resolved):
            return False
        return (out_resolved != folder and out_resolved.is_relative_to(folder)) or is_own_output(path)

    wanted = {e.lower() for e in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS}
    for arg in inputs:
        path = Path(arg).expanduser()
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in wanted)
            files = [p for p in candidates if not earlier_output(p, path)]
            if not candidates:
                errors.append(f"{path}: no images or videos ({', '.join(sorted(wanted))}) in this folder")
            found += [(p, p.relative_to(path)) for p in files]
        elif path.is_file():  # named explicitly: always an input
            candidates = files = [path]
            found.append((path, Path(path.name)))
        elif glob.has_magic(arg):
            candidates = [m for m in sorted(Path(m) for m in glob.glob(str(path), recursive=True)) if m.is_file()]
            files = [m for m in candidates if not earlier_output(m, m.parent)]
            if not candidates:
                errors.append(f"{arg}: no file matches this pattern")
            found += [(m, Path(m.name)) for m in files]
        else:
            hint = " (to export a model: colorize-export --ckpt CKPT)" if arg == "export" else ""
            errors.append(f"{arg}: no such file or folder{hint}")
            continue
        left_out += len(candidates) - len(files)
    return found, errors, left_out


def plan(found: list[tuple[Path, Path]], out_dir: Path, fmt: str, samples: int, compare: bool) -> tuple[list, list]:
    """Output paths for each input; refuses any output that is an input or another input's
    output. A video gets one output, ``<name>.mp4`` (``--format``, ``--samples`` and
    ``--compare`` are for photos)."""
    inputs = {source.resolve() for source, _ in found}
    claimed: dict[Path, Path] = {}
    jobs, errors = [], []
    for source, relative in found:
        stem = out_dir / relative.with_suffix("")
        if is_video(source):
            outputs = {"colorized": stem.with_name(stem.name + ".mp4")}
        else:
            suffix = FORMATS[fmt]
            outputs = {"colorized": stem.with_name(stem.name + suffix)}
            outputs.update(
                {f"sample{k}": stem.with_name(f"{stem.name}_sample{k}{suffix}") for k in range(1, samples + 1)}
            )
            if compare:
                outputs["compare"] = stem.with_name(f"{stem.name}_compare{suffix}")
        clash = next((p for p in outputs.values() if p.resolve() in inputs), None)
        taken = next((p for p in outputs.values() if p.resolve() in claimed), None)
        if source.resolve() in claimed.values():
            continue  # the same file given twice
        if clash is not None:
            errors.append(f"{source}: its output {clash} would overwrite an input; choose another -o or --format")
        elif taken is not None:
            errors.append(f"{source}: its output {taken} is already the output of {claimed[taken.resolve()]}")
        else:
            claimed.update({p.resolve(): source.resolve() for p in outputs.values()})
            jobs.append(Job(source, outputs))
    return jobs, errors


# ----------------------------------------------------------------------------- the run


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    own: int = 0

    def line(self) -> str:
        own = f", {self.own} earlier outputs left out" if self.own else ""
        return f"colorize: {self.done} done, {self.skipped} skipped (output exists), {self.failed} failed{own}"


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fail(summary: Summary, message: str) -> None:
    summary.failed += 1
    print(f"colorize: error: {printable(message)}", file=sys.stderr, flush=True)


def fixed_square_size(colorizer: Colorizer | OnnxColorizer) -> int | None:
    """The one square size a model takes (an ONNX model exported by an older colorize-export),
    or None for a network that takes any height and width (a checkpoint's, a newer export's)."""
    return getattr(colorizer, "fixed_size", None)


def network_inputs(
    colorizer: Colorizer | OnnxColorizer, photos: list[np.ndarray], size: int
) -> tuple[list[torch.Tensor], list[tuple[int, int, int, int] | None]]:
    """Each photo's network input, normalised L (1, h, w), and its crop box in it (None: the
    whole input; a box for a letterboxed square model, or for one padded to the ``multiple``
    its network takes: unet, whose checkpoint and ONNX export then see the same input)."""
    fixed = fixed_square_size(colorizer)
    multiple = getattr(colorizer, "multiple", 1)
    inputs, boxes = [], []
    for rgb_u8 in photos:
        if fixed is None:
            l_norm, box = pad_to_multiple(working_input(rgb_u8, size), multiple)
            inputs.append(l_norm)
            boxes.append(box)
        else:
            l_norm, box = letterbox(rgb_u8, fixed)
            inputs.append(l_norm)
            boxes.append(box)
    return inputs, boxes


def crop(image: torch.Tensor, box: tuple[int, int, int, int] | None) -> torch.Tensor:
    if box is None:
        return image
    top, left, h, w = box
    return image[..., top : top + h, left : left + w]


@torch.no_grad()
def predict(
    colorizer: Colorizer | OnnxColorizer, photos: list[np.ndarray], device: torch.device, args: argparse.Namespace,
    generator: torch.Generator, samples: int | None = None, inputs: tuple[list, list] | None = None,
    hints: list[torch.Tensor] | None = None,
) -> dict[str, list[torch.Tensor]]:  # fmt: skip
    """The predicted ab (2, h, w) of each photo, at its working shape: {"colorized": [...],
    "sample1": [...], ...}, in the order of ``photos``. Photos of the same working shape run
    as one network batch; a sample's latent z is drawn for all photos at once, in order, as
    when the whole batch had one shape. ``samples`` defaults to ``args.samples``;
    ``inputs`` to :func:`network_inputs`; ``hints``: each photo's hint channels (1, 3, h, w) at
    its working shape (a hints model; None: nothing revealed)."""
    inputs, boxes = inputs or network_inputs(colorizer, photos, args.size)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, l_norm in enumerate(inputs):
        groups.setdefault(tuple(l_norm.shape), []).append(i)
    kinds = {"colorized": None}
    for k in range(1, (args.samples if samples is None else samples) + 1):
        kinds[f"sample{k}"] = torch.randn(len(photos), colorizer.latent_dim, device=device, generator=generator)
    predictions: dict[str, list[torch.Tensor]] = {kind: [None] * len(photos) for kind in kinds}
    multiple = getattr(colorizer, "multiple", 1)  # the hints are padded as their photo's input
    for members in groups.values():
        l_small = torch.stack([inputs[i] for i in members]).to(device)
        given = None if hints is None else torch.cat([pad_to_multiple(hints[i], multiple)[0] for i in members])
        extra = {} if given is None else {"hints": given.to(device)}
        for kind, z in kinds.items():
            ab = colorizer(l_small, **extra) if z is None else colorizer(l_small, z[members], **extra)
            for j, i in enumerate(members):
                predictions[kind][i] = crop(ab[j], boxes[i])
    return predictions


def with_hints(
    loaded: list[tuple], hints: list[Hint], colorizer: Colorizer | OnnxColorizer, args: argparse.Namespace,
    summary: Summary,
) -> tuple[list[tuple], list[torch.Tensor]]:  # fmt: skip
    """The photos whose hints fit (one error line for each other) and their hint channels."""
    kept, channels = [], []
    for job, rgb_u8, start in loaded:
        working = working_shape(*rgb_u8.shape[:2], args.size)
        try:
            channels.append(hint_channels(hints, rgb_u8.shape[:2], working))
        except HintsError as error:
            fail(summary, f"{job.source}: --hints: {error}")
            continue
        kept.append((job, rgb_u8, start))
    return kept, channels


def colorize_videos(
    jobs: list[Job], colorizer: Colorizer | OnnxColorizer, device: torch.device, args: argparse.Namespace,
    summary: Summary,
) -> None:  # fmt: skip
    """Each video on its own (:func:`~colorization.inference.video.colorize_video`); one that
    cannot be read or written is one error line, and the run goes on."""
    generator = torch.Generator(device=device)

    def frames_to_ab(frames: list[np.ndarray]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        inputs, boxes = network_inputs(colorizer, frames, args.size)
        ab = predict(colorizer, frames, device, args, generator, samples=0, inputs=(inputs, boxes))["colorized"]
        return [(crop(l_norm, box), a) for l_norm, box, a in zip(inputs, boxes, ab, strict=True)]

    for job in jobs:
        output = job.outputs["colorized"]
        try:
            result = colorize_video(job.source, output, frames_to_ab, args)
        except (UnreadableVideo, OSError, RuntimeError, MemoryError) as error:
            fail(summary, str(error) if str(job.source) in str(error) else f"{job.source}: {error}")
            continue
        summary.done += 1
        print(printable(result.line(job.source, output)), flush=True)


@torch.no_grad()
def colorize_jobs(
    jobs: list[Job], colorizer: Colorizer | OnnxColorizer, device: torch.device, args: argparse.Namespace,
    summary: Summary,
) -> None:  # fmt: skip
    hints = getattr(args, "hint_points", None)
    save_kwargs = {"quality": args.quality} if args.format == "jpg" else {}
    save_kwargs.update(output_mark(args.format))
    generator = torch.Generator(device=device).manual_seed(args.seed)
    for batch in chunks(jobs, args.batch_size):
        loaded = []
        for job in batch:
            start = time.perf_counter()
            try:
                rgb_u8 = np.asarray(open_rgb(job.source, max_pixels=args.max_pixels))
            except (UnreadableImage, OSError, ValueError, MemoryError) as error:
                fail(summary, str(error) if str(job.source) in str(error) else f"{job.source}: {error}")
                continue
            loaded.append((job, rgb_u8, time.perf_counter() - start))  # its own decoding time
        if hints is not None:
            loaded, given = with_hints(loaded, hints, colorizer, args, summary)
        if not loaded:
            continue
        network_start = time.perf_counter()
        inputs = network_inputs(colorizer, [rgb for _, rgb, _ in loaded], args.size)
        predictions = predict(
            colorizer, [rgb for _, rgb, _ in loaded], device, args, generator, inputs=inputs,
            hints=None if hints is None else given,
        )  # fmt: skip
        network_share = (time.perf_counter() - network_start) / len(loaded)  # the batch's network time, shared
        for i, (job, rgb_u8, decoding) in enumerate(loaded):
            start = time.perf_counter()
            try:
                colorized = {}
                for kind, ab in predictions.items():
                    colorized[kind] = compose_full_resolution(rgb_u8, ab[i], args.saturation)
                    save_image_atomic(colorized[kind], job.outputs[kind], **save_kwargs)
                if args.compare:
                    panels = [gray_of(rgb_u8), colorized["colorized"]]
                    if not is_gray(rgb_u8):
                        panels.append(rgb_u8)
                    save_image_atomic(comparison(panels), job.outputs["compare"], **save_kwargs)
            except (OSError, ValueError, RuntimeError, MemoryError) as error:
                fail(summary, f"{job.source}: {type(error).__name__}: {error}")
                continue
            summary.done += 1
            height, width = rgb_u8.shape[:2]
            seconds = decoding + network_share + time.perf_counter() - start  # this photo's, not its batch's
            line = f"{job.source} -> {job.outputs['colorized']} ({width}x{height}, {seconds:.1f} s)"
            print(printable(line), flush=True)


def load_model(args: argparse.Namespace) -> tuple[Colorizer | OnnxColorizer, torch.device]:
    """The checkpoint's colorizer (``--ckpt``) or the exported ONNX model (``--onnx``, CPU);
    ``args.size`` defaults to the size it was trained or exported at."""
    if getattr(args, "onnx", None):
        if getattr(args, "temperature", None) is not None or getattr(args, "mix", None) is not None:
            raise ColorizeError("--temperature and --mix need --ckpt: an exported model decodes as it was exported")
        colorizer = OnnxColorizer(args.onnx)
        if colorizer.fixed_size is not None and args.size not in (None, colorizer.fixed_size):
            raise ColorizeError(f"--size {args.size}: the ONNX model takes one size, {colorizer.fixed_size} px")
        args.size = args.size or colorizer.size
        if args.size is None:
            raise ColorizeError(f"--onnx {args.onnx}: the model does not say its working size; give --size")
        return colorizer, torch.device("cpu")
    device = pick_device(args.device)
    colorizer, trained_size = load_colorizer(args.ckpt, device)
    colorizer.decoding(getattr(args, "temperature", None), getattr(args, "mix", None))
    args.size = args.size or trained_size
    return colorizer, device


def colorize(args: argparse.Namespace, summary: Summary | None = None) -> Summary:
    """Colour every input of ``args`` (the ``colorize`` options) and count what happened."""
    out_dir = Path(args.output).expanduser()
    summary = summary if summary is not None else Summary()
    found, errors, summary.own = expand_inputs(args.inputs, out_dir)
    jobs, plan_errors = plan(found, out_dir, args.format, args.samples, args.compare)
    for message in errors + plan_errors:
        fail(summary, message)
    if not args.overwrite:
        todo = [job for job in jobs if not all(p.exists() for p in job.outputs.values())]
        summary.skipped = len(jobs) - len(todo)
        jobs = todo
    if not jobs:
        return summary
    colorizer, device = load_model(args)
    if getattr(args, "hints", None):
        if not getattr(colorizer, "takes_hints", False):
            raise ColorizeError("--hints needs a checkpoint trained with hints (model.hints=true); this one was not")
        try:
            args.hint_points = read_hints(args.hints)
        except HintsError as error:
            raise ColorizeError(f"--hints {error}") from None
    if args.samples and not colorizer.can_sample:
        raise ColorizeError("--samples needs a model that can sample (model=vae); this one cannot")
    check_size(colorizer, args.size, device)
    for folder in sorted({p.parent for job in jobs for p in job.outputs.values()}):
        if removed := remove_stale_temp_files(folder):
            print(
                f"colorize: removed {removed} temporary file(s) a killed run left in {printable(folder)}",
                file=sys.stderr,
            )
    photos = [job for job in jobs if not is_video(job.source)]
    videos = [job for job in jobs if is_video(job.source)]
    if videos and (args.samples or args.compare or getattr(args, "hints", None)):
        print("colorize: --samples, --compare and --hints apply to photos; videos get their colorized video only")
    colorize_jobs(photos, colorizer, device, args, summary)
    colorize_videos(videos, colorizer, device, args, summary)
    return summary
