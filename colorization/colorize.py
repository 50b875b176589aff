"""``colorize``: colour your own photos with a trained checkpoint, at full resolution.

    colorize old_photos/ scan.tif 'more/*.jpg' --ckpt logs/train/runs/<run>/checkpoints/last.ckpt -o colorized/
    colorize photo.jpg --ckpt vae.ckpt -o out/ --samples 4 --compare
    colorize photo.jpg --onnx colorizer.onnx -o out/        # an exported model, through onnxruntime
    colorize home_movie.mov --ckpt last.ckpt -o out/        # video: out/home_movie.mp4, stabilised in time
    colorize photo.jpg --ckpt hints.ckpt -o out/ --hints hints.json   # user colour hints (model.hints=true)
    colorize serve --ckpt-dir logs/train/runs               # a web page on http://127.0.0.1:7860
    colorize-export --ckpt last.ckpt --format onnx -o colorizer.onnx

The command line only: the work is in :mod:`colorization.inference` (the model, full-resolution
composition, the batched run, export). A photo is decoded to 8-bit sRGB (any mode, EXIF
rotation and colour profile applied) and seen as gray (its Lab lightness L); a copy whose
shorter side is ``--size`` (aspect ratio kept) goes through the network and the predicted
chroma joins the photo's own full-resolution L. A video (.mp4, .mov, .mkv, .webm, .avi, .mpg)
is coloured frame by frame in bounded memory, its chroma stabilised along the motion
(``--temporal``), and written as H.264 MP4 with the same size, timestamps and audio
(:mod:`colorization.inference.video`).

Exit codes: 0; 1 when any input failed (one line each on stderr, the run goes on); 2 when
nothing could start (bad checkpoint, model or options); 130 / 143 when stopped by SIGINT /
SIGTERM (the photo being written is dropped, finished ones are kept). The checkpoint is
untrusted input: read with ``weights_only=True``, its stored config builds only the project's
own classes (:mod:`colorization.safe_config`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# only what the parser needs: torch and the model code are imported once the arguments are
# good, so --help and argument errors answer at once
from colorization.inference.options import (
    DEFAULT_MAX_PIXELS,
    EXPORT_SUFFIXES,
    FORMATS,
    MAX_SIZE,
    TEMPORAL_METHODS,
    check_decoding,
    default_threads,
)


def colorize_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorize",
        description="Colour gray (or colour, seen as gray) photos with a trained checkpoint, at full resolution. "
        "`colorize-export --help` exports a checkpoint to ONNX or torch.export; "
        "`colorize serve --help` starts a web page.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders (recursive) or globs")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--ckpt", help="checkpoint written by train.py")
    model.add_argument("--onnx", metavar="FILE", help="a model exported by colorize-export (onnxruntime, CPU)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the colorized photos")
    parser.add_argument("--size", type=int, default=None, help="working size in px (default: the training crop size)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    parser.add_argument("--batch-size", type=int, default=4, help="photos (video frames) per network batch (default 4)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="png", help="output format (default png)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    parser.add_argument("--samples", type=int, default=0, help="also write K sampled colorizations (VAE models)")
    parser.add_argument("--saturation", type=float, default=1.0, help="scale the predicted chroma (e.g. 1.3)")
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="bins models: annealed-mean temperature (default: the checkpoint's, 0.38; 1 = mean, 0 = mode)",
    )
    parser.add_argument(
        "--mix",
        type=float,
        default=None,
        help="bins models: share of the regression colour, 0..1 (default: the checkpoint's)",
    )
    parser.add_argument(
        "--temporal",
        choices=sorted(TEMPORAL_METHODS),
        default="flow",
        help="videos: smooth the chroma along optical flow (flow, default), at fixed pixels (ema), or not (none); "
        "reset at scene cuts",
    )
    parser.add_argument("--crf", type=int, default=18, help="videos: H.264 quality, 0 (lossless) .. 51 (default 18)")
    parser.add_argument(
        "--hints",
        metavar="FILE.json",
        help='colour hints for a model trained with them (model.hints=true): {"points": [{"x": 120, "y": 45, '
        '"color": "#c0392b", "size": 5}]}, pixels of the photo (size optional); applied to every photo',
    )
    parser.add_argument("--compare", action="store_true", help="also write gray | colorized | original panels")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --samples draws")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images of more pixels (width x height), before decoding (default {DEFAULT_MAX_PIXELS:,})",
    )
    add_threads(parser)
    return parser


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for the network (default: the cores not already busy, from the load average; "
        "OMP_NUM_THREADS if set)",
    )


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorize-export",
        description="Export a checkpoint's colorizer: input 'L' (B, 1, H, W) = (Lab L - 50) / 50, output 'ab' "
        "(B, 2, H, W) = Lab ab / 110, any batch size B; ONNX for any H, W (the working size S stored in it; a "
        "network that takes one size, e.g. unet, at S x S), pt2 at S x S.",
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    parser.add_argument(
        "--format", choices=sorted(EXPORT_SUFFIXES), default="onnx", help="onnx (default) or pt2 (torch.export)"
    )
    parser.add_argument("-o", "--output", default=None, help="file to write (default: next to the checkpoint)")
    parser.add_argument("--size", type=int, default=None, help="working size S (default: the training crop size)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_threads(parser)
    return parser


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for name in ("batch_size", "size", "max_pixels", "threads"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if (getattr(args, "size", None) or 0) > MAX_SIZE:
        parser.error(f"--size must be <= {MAX_SIZE}, got {args.size}")
    if getattr(args, "samples", 0) < 0 or getattr(args, "saturation", 1.0) < 0:
        parser.error("--samples and --saturation must be >= 0")
    try:
        check_decoding(getattr(args, "temperature", None) or 0.0, getattr(args, "mix", None) or 0.0)
    except ValueError as error:
        parser.error(f"--temperature / --mix: {error}")
    if not 1 <= getattr(args, "quality", 95) <= 100:
        parser.error("--quality must be in 1..100")
    if not 0 <= getattr(args, "crf", 18) <= 51:
        parser.error("--crf must be in 0..51")


def threads_for(args: argparse.Namespace) -> int:
    """``--threads``, else ``OMP_NUM_THREADS`` when the user set it, else :func:`default_threads`."""
    if getattr(args, "threads", None):
        return args.threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else default_threads()


def _run(argv: Sequence[str] | None, parser: argparse.ArgumentParser, job) -> int:
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    check_args(args, parser)
    import torch

    from colorization.inference.jobs import Summary
    from colorization.inference.model import ColorizeError
    from colorization.io import printable
    from colorization.runtime import Interrupted, signals_interrupt

    summary, threads = Summary(), torch.get_num_threads()
    torch.set_num_threads(threads_for(args))
    try:
        with signals_interrupt(), torch.no_grad():  # restored after: main() may run inside a program
            return job(args, summary)
    except ColorizeError as error:
        print(f"{parser.prog}: error: {printable(error)}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        message = f"{parser.prog}: stopped by {stop}: {summary.done} done, the one in progress not written"
        print(message, file=sys.stderr)
        return stop.exit_code
    finally:
        torch.set_num_threads(threads)


def _colorize_job(args: argparse.Namespace, summary) -> int:
    from colorization.inference.jobs import colorize

    colorize(args, summary)
    print(summary.line(), file=sys.stderr)
    return 1 if summary.failed else 0


def _export_job(args: argparse.Namespace, summary) -> int:
    from colorization.inference.export import export

    print(f"exported {export(args)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``colorize INPUT... --ckpt CKPT -o OUTDIR`` or ``colorize serve --ckpt-dir DIR``; returns
    the exit code. (A photo named ``serve`` is ``./serve``.)"""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from colorization.serve import serve_main

        return serve_main(argv[1:])
    return _run(argv, colorize_parser(), _colorize_job)


def export_main(argv: Sequence[str] | None = None) -> int:
    """``colorize-export --ckpt CKPT [--format onnx|pt2] [-o FILE]``; returns the exit code."""
    return _run(argv, export_parser(), _export_job)


def _entry() -> None:  # console script
    sys.exit(main())


def _export_entry() -> None:  # console script
    sys.exit(export_main())


if __name__ == "__main__":
    _entry()
