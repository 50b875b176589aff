"""Exporting a checkpoint's colorizer: input ``L`` (B, 1, S, S) = (Lab L - 50) / 50, output
``ab`` (B, 2, S, S) = Lab ab / 110, S the working size, any batch size B.

* ``onnx``: for onnxruntime and every ONNX runtime (``colorize --onnx FILE`` runs it);
* ``pt2``: a ``torch.export`` program (``torch.export.load(path).module()``), which replaces
  TorchScript tracing (deprecated in torch 2.14).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from colorization.inference.model import ColorizeError, Colorizer, check_size, load_colorizer
from colorization.inference.options import EXPORT_SUFFIXES as SUFFIXES
from colorization.io import atomic_path


def export(args: argparse.Namespace) -> Path:
    """Write the checkpoint's colorizer in ``args.format``. An existing file is replaced only
    with ``--overwrite``, the checkpoint never."""
    suffix = SUFFIXES[args.format]
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
    try:
        export_model(colorizer, torch.zeros(2, 1, size, size), path, args.format)
    except ColorizeError:
        raise
    except Exception as error:  # noqa: BLE001 - a missing exporter package, an op it cannot export, a disk error
        raise ColorizeError(f"cannot export to {path} as {args.format} ({type(error).__name__}: {error})") from None
    return path


def export_model(colorizer: Colorizer, example: torch.Tensor, path: Path, fmt: str) -> None:
    """``colorizer`` at ``example``'s working size, any batch size, to ``path`` (atomically)."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    with atomic_path(path) as tmp:
        if fmt == "pt2":
            program = torch.export.export(colorizer.eval(), (example,), dynamic_shapes={"l_norm": {0: batch}})
            with open(tmp, "wb") as file:  # a handle: torch.export names files by their suffix
                torch.export.save(program, file)
        elif fmt == "onnx":
            program = torch.onnx.export(
                colorizer.eval(),
                (example,),
                input_names=["L"],
                output_names=["ab"],
                dynamic_shapes={"l_norm": {0: batch}},
                dynamo=True,
                external_data=False,
            )
            program.save(str(tmp), external_data=False)
        else:
            raise ColorizeError(f"--format {fmt}: choose from {sorted(SUFFIXES)}")
