"""Exporting a checkpoint's colorizer: input ``L`` (B, 1, H, W) = (Lab L - 50) / 50, output
``ab`` (B, 2, H, W) = Lab ab / 110, any batch size B.

* ``onnx``: for onnxruntime and every ONNX runtime (``colorize --onnx FILE`` runs it), for any
  height and width, so that colorize gives it each photo at the working shape a checkpoint gets
  (aspect ratio kept); the working size S is stored in its metadata (``colorization.size``).
  A network that pads to a multiple (unet: 32) is exported for heights and widths of that
  multiple (``colorization.multiple``): colorize pads photos to it beforehand, as it does for
  the checkpoint, so both colour a photo alike. One whose program would colour other sizes
  differently is exported at S x S, with a note (``colorize`` letterboxes photos for it, as
  for the square files of older versions);
* ``pt2``: a ``torch.export`` program at S x S (``torch.export.load(path).module()``), which
  replaces TorchScript tracing (deprecated in torch 2.14).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from colorization.inference.model import (
    ONNX_MULTIPLE_KEY,
    ONNX_SIZE_KEY,
    ColorizeError,
    Colorizer,
    check_size,
    load_colorizer,
)
from colorization.inference.options import EXPORT_SUFFIXES as SUFFIXES
from colorization.io import atomic_path
from colorization.limits import MAX_SIZE


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
    """``colorizer`` to ``path`` (atomically), any batch size: ``onnx`` any height and width too
    where the network allows (:func:`onnx_program`), ``pt2`` at ``example``'s size."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():  # constants computed at the first call (bins' centres) made before tracing
        colorizer.eval()(torch.zeros(1, 1, 32, 32))
    with atomic_path(path) as tmp:
        if fmt == "pt2":
            program = torch.export.export(colorizer.eval(), (example,), dynamic_shapes={"l_norm": {0: batch}})
            with open(tmp, "wb") as file:  # a handle: torch.export names files by their suffix
                torch.export.save(program, file)
        elif fmt == "onnx":
            onnx_program(colorizer, example.shape[-1]).save(str(tmp), external_data=False)
        else:
            raise ColorizeError(f"--format {fmt}: choose from {sorted(SUFFIXES)}")


def onnx_program(colorizer: Colorizer, size: int):
    """The colorizer as an ONNX program for any batch, height and width, its working size
    ``size`` in the metadata. A network that pads to a ``multiple`` (unet: 32) is exported for
    heights and widths of that multiple (stored in the metadata too; colorize pads each photo
    to it, as the network itself does, and crops), since its padding branches on the size. At
    ``size`` x ``size`` instead, with a note on stderr, where the program does not colour a
    probe of other sides as the network does (it was captured under conditions on the size)."""
    net = exportable(colorizer).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    multiple = colorizer.multiple
    if multiple == 1:
        # odd, unequal sides: no branch is captured for an even or a square size
        example = torch.zeros(2, 1, size | 1, (size + 2) | 1)
        free = {0: batch, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
        probe = torch.rand(1, 1, 2 * size, size + 2) * 2 - 1
    else:
        steps, most = -(-size // multiple), -(-MAX_SIZE // multiple)
        rows, cols = (torch.export.Dim(name, min=1, max=most) for name in ("rows", "cols"))
        example = torch.zeros(2, 1, multiple * steps, multiple * (steps + 1))  # unequal: no square captured
        free = {0: batch, 2: multiple * rows, 3: multiple * cols}
        probe = torch.rand(1, 1, multiple * (steps + 1), multiple * max(1, steps - 1)) * 2 - 1
    program = _onnx(net, example, free)
    if _colours_as(program, colorizer, probe):
        program.model.metadata_props[ONNX_SIZE_KEY] = str(size)
        if multiple > 1:
            program.model.metadata_props[ONNX_MULTIPLE_KEY] = str(multiple)
        return program
    print(f"colorize-export: note: the network takes one size only: exported at {size} px square "
          "(colorize letterboxes photos for it)", file=sys.stderr)  # fmt: skip
    program = _onnx(net, torch.zeros(2, 1, size, size), {0: batch})
    program.model.metadata_props[ONNX_SIZE_KEY] = str(size)
    return program


def _onnx(net: Colorizer, example: torch.Tensor, dims: dict):
    program = torch.export.export(net, (example,), dynamic_shapes={"l_norm": dims}, strict=False)
    return torch.onnx.export(program, input_names=["L"], output_names=["ab"], dynamo=True, external_data=False)


def _colours_as(program, net: Colorizer, probe: torch.Tensor) -> bool:
    """Whether onnxruntime runs ``program`` on ``probe`` as ``net`` does (to 1e-4); True where
    nothing can check it (no onnxruntime, or one without an operator it uses, e.g. Col2Im)."""
    try:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # its failures are the answer, not log lines
        model = program.model_proto.SerializeToString()
        session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001
        return True
    try:
        (ab,) = session.run(["ab"], {"L": probe.numpy()})
    except Exception:  # noqa: BLE001 - a shape the program cannot take
        return False
    with torch.no_grad():
        expected = net(probe)
    return ab.shape == tuple(expected.shape) and bool(abs(torch.from_numpy(ab) - expected).max() < 1e-4)


class _CroppedConvTranspose2d(nn.ConvTranspose2d):
    """A transposed convolution asked for an ``output_size``: computed at its largest output
    size, then cropped. The same numbers, without an output padding that depends on the input's
    size (which an ONNX ConvTranspose cannot take when the size is free)."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is None:
            return super().forward(x)
        most = [s - 1 for s in self.stride]
        full = F.conv_transpose2d(
            x, self.weight, self.bias, self.stride, self.padding, most, self.groups, self.dilation
        )
        return full[..., : output_size[-2], : output_size[-1]]


class _EvenConv2dSame(nn.Conv2d):
    """timm's ``Conv2dSame`` (TensorFlow "same" padding, computed from the input's size at each
    call) for inputs whose sides are multiples of its stride: the padding is then one constant.
    The same numbers, without the size arithmetic that takes torch.export minutes to reason
    about (9 minutes for unet, 25 s with it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for kernel, stride, dilation in zip(self.kernel_size[::-1], self.stride[::-1], self.dilation[::-1]):
            total = max((kernel - 1) * dilation + 1 - stride, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def exportable(colorizer: Colorizer) -> Colorizer:
    """A copy of ``colorizer`` that exports for any size (:class:`_CroppedConvTranspose2d`); for
    a network that pads to a multiple (:class:`_EvenConv2dSame`: its sides are then multiples
    of every stride inside it)."""
    from timm.layers import Conv2dSame

    twin = copy.deepcopy(colorizer)
    for module in twin.modules():
        if type(module) is nn.ConvTranspose2d:
            module.__class__ = _CroppedConvTranspose2d
        elif colorizer.multiple > 1 and type(module) is Conv2dSame:
            module.__class__ = _EvenConv2dSame
    return twin
