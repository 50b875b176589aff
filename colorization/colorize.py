"""``colorize``: colour your own photos with a trained checkpoint, at full resolution.

    colorize old_photos/ scan.tif 'more/*.jpg' --ckpt logs/train/runs/<run>/checkpoints/last.ckpt -o colorized/
    colorize photo.jpg --ckpt vae.ckpt -o out/ --samples 4 --compare
    colorize-export --ckpt last.ckpt --format onnx -o colorizer.onnx

How a photo is coloured: it is decoded to 8-bit sRGB (any mode, EXIF rotation applied) and
seen as gray (its Lab lightness L; a colour photo loses its colour first). Only a
``size x size`` copy goes through the network; the predicted chroma ab is resized bilinearly
to the photo's size and joined with the photo's **own full-resolution L**, so every detail
of the input is kept. Colours the predicted ab would push outside sRGB are pulled towards
gray at the same L (not clipped per channel), so the output's lightness is the input's.
Full-resolution work runs in strips of rows: memory stays bounded on large scans.

Each input is handled on its own: a file that cannot be read gets one line on stderr and the
run goes on; the exit code is 1 when any input failed, 2 when nothing could start (bad
checkpoint or options), 130 / 143 when stopped by SIGINT / SIGTERM (the photo being written
is dropped, finished ones are kept). Inputs are never overwritten, outputs are written
atomically, and existing outputs are skipped unless ``--overwrite``. Outputs are marked as
colorize's own (PNG text / JPEG comment): found again in the output folder (``-o`` = the
input folder), they are not taken as inputs, so a repeated run does nothing.

The checkpoint is untrusted input: it is read with ``weights_only=True`` and its stored
config builds only the project's own classes (:mod:`colorization.safe_config`).
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import nn

from colorization.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, net_from_checkpoint
from colorization.color import AB_SCALE, lab_to_rgb_preserving_l, normalize_l, rgb_u8_to_lab
from colorization.data.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, UnreadableImage, open_rgb
from colorization.io import atomic_path, remove_stale_temp_files, save_image_atomic
from colorization.runtime import Interrupted, signals_interrupt

#: pixels per strip of rows in full-resolution work (bounds the float intermediates)
STRIP_PIXELS = 1 << 20
FORMATS = {"png": ".png", "jpg": ".jpg"}
#: the largest working size (px) a checkpoint or --size may ask for
MAX_SIZE = 16384
#: written into every output (PNG text chunk "Software", JPEG comment) to recognise it later
OUTPUT_MARK = "colorization colorize"


class ColorizeError(RuntimeError):
    """A problem that stops the whole run (checkpoint, options); one line, exit code 2."""


# ----------------------------------------------------------------------------- the model


#: the tasks whose network colours on its own (gray L in, colour out), and whether it samples
#: (a VAE); ``colorize`` rebuilds just their network, without Lightning
COLORIZATION_TASKS = {
    "colorization.tasks.ColorizationModule": False,
    "colorization.tasks.colorization.ColorizationModule": False,
    "colorization.tasks.VAEColorizationModule": True,
    "colorization.tasks.vae.VAEColorizationModule": True,
}


class Colorizer(nn.Module):
    """The deployable part of a trained colorization model: normalised L ``(B, 1, S, S)`` in
    [-1, 1] -> normalised ab ``(B, 2, S, S)`` (Lab chroma / 110), whatever the model's
    output space (ab, RGB or Lab). ``forward(l, z)`` takes a latent ``z`` for VAE samples."""

    def __init__(self, net: nn.Module, output: str = "ab", can_sample: bool = False) -> None:
        super().__init__()
        from colorization.outputs import output_space

        self.net, self.space, self.can_sample = net, output_space(output), can_sample
        self.output = self.space.name
        self.latent_dim = getattr(net, "latent_dim", 0) if can_sample else 0

    @classmethod
    def from_module(cls, module: nn.Module) -> Colorizer:
        """From a colorization LightningModule (``ColorizationModule`` or a subclass)."""
        from colorization.tasks import ColorizationModule, VAEColorizationModule

        if not isinstance(module, ColorizationModule):
            raise ColorizeError(
                f"the checkpoint holds a {type(module).__name__}, not a colorization model (gray L in, colour out)"
            )
        return cls(module.net, module.output, isinstance(module, VAEColorizationModule))

    def forward(self, l_norm: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        pred = self.net(l_norm) if z is None else self.net.decode(l_norm, z)
        return self.space.to_ab(pred)


def colorizer_from_checkpoint(checkpoint: dict) -> Colorizer:
    """The network of a colorization task alone (:data:`COLORIZATION_TASKS`: seconds faster,
    Lightning is never imported); any other task through its full LightningModule."""
    model_cfg = checkpoint["colorization_config"].get("model") or {}
    can_sample = COLORIZATION_TASKS.get(model_cfg.get("_target_"))
    if can_sample is None or "net" not in model_cfg:
        return Colorizer.from_module(model_from_checkpoint(checkpoint))
    output = (checkpoint.get("hyper_parameters") or {}).get("output", model_cfg.get("output", "ab"))
    return Colorizer(net_from_checkpoint(checkpoint), output, can_sample)


def load_colorizer(ckpt: str | Path, device: torch.device) -> tuple[Colorizer, int]:
    """-> (colorizer in eval mode on ``device``, the crop size it was trained at).

    The checkpoint is read with ``weights_only=True``; errors name the file.
    """
    try:
        checkpoint = load_checkpoint(ckpt)
        colorizer = colorizer_from_checkpoint(checkpoint)
    except (CheckpointError, ColorizeError) as error:
        raise ColorizeError(str(error)) from None
    except Exception as error:  # noqa: BLE001 - a config or weights that do not fit the code
        raise ColorizeError(f"{ckpt}: cannot rebuild the model ({type(error).__name__}: {error})") from None
    size = (checkpoint["colorization_config"].get("data") or {}).get("image_size") or 256
    if not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise ColorizeError(f"{ckpt}: its data.image_size {size!r} is not a working size in 1..{MAX_SIZE}")
    return colorizer.eval().to(device), size


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ColorizeError(f"--device {name}: CUDA is not available here (use --device cpu or auto)")
    return torch.device(name)


def check_size(colorizer: Colorizer, size: int, device: torch.device) -> None:
    """Fail early, with the option's name, if the network cannot run at ``size``."""
    with torch.no_grad():
        try:
            ab = colorizer(torch.zeros(1, 1, size, size, device=device))
        except Exception as error:  # noqa: BLE001
            raise ColorizeError(f"--size {size}: the model cannot run at this size ({error})") from None
    if ab.shape != (1, 2, size, size):
        raise ColorizeError(f"--size {size}: the model returns shape {tuple(ab.shape)}; try its training size")


# ----------------------------------------------------------------------------- full resolution


def _bilinear_taps(out_size: int, in_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Source indices and weights of bilinear resizing along one axis (as
    ``F.interpolate(mode="bilinear", align_corners=False)``)."""
    src = ((torch.arange(out_size, device=device, dtype=torch.float32) + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    return i0, i1, (src - i0).clamp(0, 1)


def luminance_l(rgb_u8: np.ndarray, device: torch.device) -> torch.Tensor:
    """(h, W, 3) uint8 rows -> their Lab L (h, W) in [0, 100]."""
    rgb = torch.from_numpy(np.ascontiguousarray(rgb_u8.transpose(2, 0, 1))).to(device)
    return rgb_u8_to_lab(rgb[None], lightness_only=True)[0, 0]


def compose_full_resolution(
    rgb_u8: np.ndarray, ab_norm: torch.Tensor, saturation: float = 1.0, strip_pixels: int = STRIP_PIXELS
) -> np.ndarray:
    """The photo's own L (from ``rgb_u8``, (H, W, 3) uint8) with the working-size prediction
    ``ab_norm`` (2, h, w) resized to (H, W) -> colorized (H, W, 3) uint8.

    Works in strips of rows so memory grows with the photo's bytes, not with float copies
    of it.
    """
    height, width = rgb_u8.shape[:2]
    device = ab_norm.device
    ab = ab_norm.float() * (AB_SCALE * saturation)
    x0, x1, wx = _bilinear_taps(width, ab.shape[2], device)
    ab_cols = ab[:, :, x0] * (1 - wx) + ab[:, :, x1] * wx  # (2, h, W): small
    y0, y1, wy = _bilinear_taps(height, ab.shape[1], device)
    out = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, strip_pixels // width)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        w = wy[top:bottom, None]
        ab_rows = ab_cols[:, y0[top:bottom]] * (1 - w) + ab_cols[:, y1[top:bottom]] * w
        lightness = luminance_l(rgb_u8[top:bottom], device)
        lab = torch.cat([lightness[None], ab_rows], dim=0)[None]
        rgb = lab_to_rgb_preserving_l(lab)[0]
        out[top:bottom] = rgb.mul_(255).round_().byte().permute(1, 2, 0).cpu().numpy()
    return out


def working_input(rgb_u8: np.ndarray, size: int) -> torch.Tensor:
    """The gray photo at the network's working size: normalised L (1, size, size)."""
    small = Image.fromarray(rgb_u8).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return normalize_l(luminance_l(np.asarray(small), torch.device("cpu")))[None]


def gray_of(rgb_u8: np.ndarray, strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """The gray photo the model saw (L with ab = 0), (H, W, 3) uint8."""
    lab_gray = torch.zeros(1, 2, 1, 1)
    height, width = rgb_u8.shape[:2]
    out = np.empty_like(rgb_u8)
    rows = max(1, strip_pixels // width)
    for top in range(0, height, rows):
        lightness = luminance_l(rgb_u8[top : top + rows], torch.device("cpu"))
        lab = torch.cat([lightness[None], lab_gray[0].expand(2, *lightness.shape)], dim=0)[None]
        out[top : top + rows] = lab_to_rgb_preserving_l(lab)[0].mul_(255).round_().byte().permute(1, 2, 0).numpy()
    return out


def is_gray(rgb_u8: np.ndarray) -> bool:
    return bool((rgb_u8[..., 0] == rgb_u8[..., 1]).all() and (rgb_u8[..., 1] == rgb_u8[..., 2]).all())


def comparison(panels: Sequence[np.ndarray], max_height: int = 1024) -> np.ndarray:
    """Panels side by side (gray | colorized [| original]), scaled to at most ``max_height``."""
    height, width = panels[0].shape[:2]
    scale = min(1.0, max_height / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = [np.asarray(Image.fromarray(p).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)) for p in panels]
    gap = np.full((size[1], max(2, size[0] // 100), 3), 255, dtype=np.uint8)
    parts = [resized[0]]
    for panel in resized[1:]:
        parts += [gap, panel]
    return np.concatenate(parts, axis=1)


# ----------------------------------------------------------------------------- inputs and outputs


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
    the input folder, else those marked as colorize's own (``-o`` = the input folder)."""
    found: list[tuple[Path, Path]] = []
    errors: list[str] = []
    out_resolved = out_dir.resolve()
    left_out = 0

    def earlier_output(path: Path, folder: Path) -> bool:
        nonlocal left_out
        inside = path.resolve().is_relative_to(out_resolved)
        if inside and (folder.resolve() != out_resolved or is_own_output(path)):
            left_out += 1
            return True
        return False

    for arg in inputs:
        path = Path(arg).expanduser()
        if path.is_dir():
            wanted = {e.lower() for e in IMAGE_EXTENSIONS}
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in wanted)
            files = [p for p in files if not earlier_output(p, path)]
            if not files and not left_out:
                errors.append(f"{path}: no images ({', '.join(sorted(wanted))}) in this folder")
            found += [(p, p.relative_to(path)) for p in files]
        elif path.is_file():
            found.append((path, Path(path.name)))
        elif glob.has_magic(arg):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            files = [m for m in matches if m.is_file() and not earlier_output(m, m.parent)]
            if not files and not left_out:
                errors.append(f"{arg}: no file matches this pattern")
            found += [(m, Path(m.name)) for m in files]
        else:
            hint = " (to export a model: colorize-export --ckpt CKPT)" if arg == "export" else ""
            errors.append(f"{arg}: no such file or folder{hint}")
    return found, errors, left_out


def plan(found: list[tuple[Path, Path]], out_dir: Path, fmt: str, samples: int, compare: bool) -> tuple[list, list]:
    """Output paths for each input; refuses any output that is an input or another input's output."""
    suffix = FORMATS[fmt]
    inputs = {source.resolve() for source, _ in found}
    claimed: dict[Path, Path] = {}
    jobs, errors = [], []
    for source, relative in found:
        stem = out_dir / relative.with_suffix("")
        outputs = {"colorized": stem.with_name(stem.name + suffix)}
        outputs.update({f"sample{k}": stem.with_name(f"{stem.name}_sample{k}{suffix}") for k in range(1, samples + 1)})
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
    print(f"colorize: error: {message}", file=sys.stderr, flush=True)


@torch.no_grad()
def colorize_jobs(jobs: list[Job], colorizer: Colorizer, args: argparse.Namespace, summary: Summary) -> None:
    device = next(colorizer.parameters(), torch.zeros(())).device
    save_kwargs = {"quality": args.quality} if args.format == "jpg" else {}
    save_kwargs.update(output_mark(args.format))
    generator = torch.Generator(device=device).manual_seed(args.seed)
    for batch in chunks(jobs, args.batch_size):
        loaded = []
        for job in batch:
            try:
                rgb_u8 = np.asarray(open_rgb(job.source, max_pixels=args.max_pixels))
            except (UnreadableImage, OSError, ValueError, MemoryError) as error:
                fail(summary, str(error) if str(job.source) in str(error) else f"{job.source}: {error}")
                continue
            loaded.append((job, rgb_u8, time.perf_counter()))
        if not loaded:
            continue
        l_small = torch.stack([working_input(rgb, args.size) for _, rgb, _ in loaded]).to(device)
        predictions = {"colorized": colorizer(l_small)}
        for k in range(1, args.samples + 1):
            z = torch.randn(len(l_small), colorizer.latent_dim, device=device, generator=generator)
            predictions[f"sample{k}"] = colorizer(l_small, z)
        for i, (job, rgb_u8, start) in enumerate(loaded):
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
            seconds = time.perf_counter() - start
            print(f"{job.source} -> {job.outputs['colorized']} ({width}x{height}, {seconds:.1f} s)", flush=True)


def colorize(args: argparse.Namespace, summary: Summary | None = None) -> Summary:
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
    device = pick_device(args.device)
    colorizer, trained_size = load_colorizer(args.ckpt, device)
    args.size = args.size or trained_size
    if args.samples and not colorizer.can_sample:
        raise ColorizeError("--samples needs a model that can sample (model=vae); this checkpoint's cannot")
    check_size(colorizer, args.size, device)
    for folder in sorted({p.parent for job in jobs for p in job.outputs.values()}):
        if removed := remove_stale_temp_files(folder):
            print(f"colorize: removed {removed} temporary file(s) a killed run left in {folder}", file=sys.stderr)
    colorize_jobs(jobs, colorizer, args, summary)
    return summary


# ----------------------------------------------------------------------------- export


def export(args: argparse.Namespace) -> Path:
    """Write the colorizer (L in, ab out, working size, dynamic batch) as ONNX or TorchScript.
    An existing file is replaced only with ``--overwrite``, the checkpoint never."""
    suffix = {"onnx": ".onnx", "torchscript": ".pt"}[args.format]
    path = Path(args.output or Path(args.ckpt).with_suffix(suffix)).expanduser()
    if path.exists() and path.resolve() == Path(args.ckpt).expanduser().resolve():
        raise ColorizeError(f"-o {path}: that is the checkpoint itself; choose another file")
    if path.is_dir():
        raise ColorizeError(f"-o {path}: is a folder; give the file to write, e.g. {path / ('colorizer' + suffix)}")
    if path.exists() and not args.overwrite:
        raise ColorizeError(f"-o {path}: the file exists; add --overwrite to replace it")
    colorizer, trained_size = load_colorizer(args.ckpt, torch.device("cpu"))
    size = args.size or trained_size
    check_size(colorizer, size, torch.device("cpu"))
    example = torch.zeros(2, 1, size, size)
    export_model(colorizer, example, path, args.format)
    return path


def export_model(colorizer: Colorizer, example: torch.Tensor, path: Path, fmt: str) -> None:
    with atomic_path(path) as tmp:
        if fmt == "torchscript":
            with torch.no_grad(), warnings.catch_warnings():
                # torch.jit's deprecation notice, and shape checks traced as constants: only the
                # batch size varies, and the export test runs another batch size
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                torch.jit.trace(colorizer, example).save(str(tmp))
        else:
            batch = torch.export.Dim("batch", min=1, max=1024)
            program = torch.onnx.export(
                colorizer,
                (example,),
                input_names=["L"],
                output_names=["ab"],
                dynamic_shapes={"l_norm": {0: batch}},
                dynamo=True,
                external_data=False,
            )
            program.save(str(tmp), external_data=False)


# ----------------------------------------------------------------------------- command line


def colorize_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorize",
        description="Colour gray (or colour, seen as gray) photos with a trained checkpoint, at full resolution. "
        "`colorize-export --help` exports a checkpoint to ONNX or TorchScript.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or globs")
    parser.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the colorized photos")
    parser.add_argument("--size", type=int, default=None, help="working size in px (default: the training crop size)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    parser.add_argument("--batch-size", type=int, default=4, help="photos per network batch (default 4)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="png", help="output format (default png)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    parser.add_argument("--samples", type=int, default=0, help="also write K sampled colorizations (VAE models)")
    parser.add_argument("--saturation", type=float, default=1.0, help="scale the predicted chroma (e.g. 1.3)")
    parser.add_argument("--compare", action="store_true", help="also write gray | colorized | original panels")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --samples draws")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images of more pixels (width x height), before decoding (default {DEFAULT_MAX_PIXELS:,})",
    )
    return parser


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorize-export",
        description="Export a checkpoint's colorizer: input 'L' (B, 1, S, S) = (Lab L - 50) / 50, output 'ab' "
        "(B, 2, S, S) = Lab ab / 110, S the working size, any batch size B.",
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    parser.add_argument("-o", "--output", default=None, help="file to write (default: next to the checkpoint)")
    parser.add_argument("--size", type=int, default=None, help="working size S (default: the training crop size)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for name in ("batch_size", "size", "max_pixels"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if (getattr(args, "size", None) or 0) > MAX_SIZE:
        parser.error(f"--size must be <= {MAX_SIZE}, got {args.size}")
    if getattr(args, "samples", 0) < 0 or getattr(args, "saturation", 1.0) < 0:
        parser.error("--samples and --saturation must be >= 0")
    if not 1 <= getattr(args, "quality", 95) <= 100:
        parser.error("--quality must be in 1..100")


def _run(argv: Sequence[str] | None, parser: argparse.ArgumentParser, job) -> int:
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    check_args(args, parser)
    summary = Summary()
    try:
        with signals_interrupt(), torch.no_grad():  # restored after: main() may run inside a program
            return job(args, summary)
    except ColorizeError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        message = f"{parser.prog}: stopped by {stop}: {summary.done} done, the one in progress not written"
        print(message, file=sys.stderr)
        return stop.exit_code


def _colorize_job(args: argparse.Namespace, summary: Summary) -> int:
    colorize(args, summary)
    print(summary.line(), file=sys.stderr)
    return 1 if summary.failed else 0


def _export_job(args: argparse.Namespace, summary: Summary) -> int:
    print(f"exported {export(args)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``colorize INPUT... --ckpt CKPT -o OUTDIR``; returns the exit code."""
    return _run(argv, colorize_parser(), _colorize_job)


def export_main(argv: Sequence[str] | None = None) -> int:
    """``colorize-export --ckpt CKPT [--format onnx|torchscript] [-o FILE]``; returns the exit code."""
    return _run(argv, export_parser(), _export_job)


def _entry() -> None:  # console script
    sys.exit(main())


def _export_entry() -> None:  # console script
    sys.exit(export_main())


if __name__ == "__main__":
    _entry()
