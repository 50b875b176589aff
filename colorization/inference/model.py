"""A trained colorizer at its working size: from a checkpoint (its network alone, as its task
described it) or from an exported ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from colorization.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, net_from_checkpoint
from colorization.hints import no_hints
from colorization.limits import MAX_SIZE
from colorization.outputs import OUTPUTS, TEMPERATURE, check_decoding, output_space


class ColorizeError(RuntimeError):
    """A problem that stops the whole run (checkpoint, model, options); one line, exit code 2."""


class Colorizer(nn.Module):
    """The deployable part of a trained colorization model: normalised L ``(B, 1, H, W)`` in
    [-1, 1] -> normalised ab ``(B, 2, H, W)`` (Lab chroma / 110), whatever the model's
    output space (:mod:`colorization.outputs`; ``bins`` decoded at the checkpoint's
    temperature and mix unless :meth:`decoding` changes them). ``forward(l, z)`` takes a
    latent ``z`` for VAE samples; ``forward(l, hints=h)`` the hint channels (B, 3, H, W) of a
    model trained with hints (:mod:`colorization.hints`; none given: nothing revealed): the
    revealed patches keep exactly the given colour, the network colours the rest."""

    def __init__(
        self,
        net: nn.Module,
        output: str = "ab",
        can_sample: bool = False,
        temperature: float | None = None,
        mix: float | None = None,
        hints: bool = False,
    ) -> None:
        super().__init__()
        self.net, self.space, self.can_sample = net, output_space(output, temperature, mix), can_sample
        self.takes_hints = bool(hints)
        self.output = self.space.name
        self.latent_dim = getattr(net, "latent_dim", 0) if can_sample else 0

    @classmethod
    def from_module(cls, module: nn.Module) -> Colorizer:
        """From a task module that describes its inference (``inference_spec``)."""
        spec = getattr(module, "inference_spec", None)
        if spec is None:
            raise ColorizeError(
                f"the checkpoint holds a {type(module).__name__}, not a colorization model (gray L in, colour out)"
            )
        described = spec()
        return cls(
            module.net, described["output"], described["samples"], described.get("temperature"), described.get("mix"),
            described.get("hints", False),
        )  # fmt: skip

    def decoding(self, temperature: float | None = None, mix: float | None = None) -> None:
        """Change how a ``bins`` model turns its prediction into colour (``colorize
        --temperature / --mix``); an error for the other outputs."""
        if temperature is None and mix is None:
            return
        if self.output != "bins":
            raise ColorizeError(f"--temperature and --mix apply to bins models; this one predicts {self.output}")
        try:
            temperature = self.space.temperature if temperature is None else temperature
            self.space = output_space(self.output, temperature, self.space.mix if mix is None else mix)
        except ValueError as error:
            raise ColorizeError(str(error)) from None

    def forward(
        self, l_norm: torch.Tensor, z: torch.Tensor | None = None, hints: torch.Tensor | None = None
    ) -> torch.Tensor:
        if hints is not None and not self.takes_hints:
            raise ColorizeError("this model was trained without hints (train one with model.hints=true)")
        if not self.takes_hints:
            pred = self.net(l_norm) if z is None else self.net.decode(l_norm, z)
            return self.space.to_ab(pred, l_norm.shape[-2:])
        hints = no_hints(l_norm) if hints is None else hints.to(l_norm)
        x = torch.cat([l_norm, hints], dim=1)
        ab = self.space.to_ab(self.net(x) if z is None else self.net.decode(x, z), l_norm.shape[-2:])
        # a revealed patch gets the colour the user gave (the network spreads it around)
        return torch.where(hints[:, 2:] > 0, hints[:, :2], ab)


def _inference_spec(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """``checkpoint["inference"]`` if it is a well-formed description (it is untrusted input)."""
    spec = checkpoint.get("inference")
    if not isinstance(spec, dict):
        return None
    temperature, mix = spec.get("temperature", TEMPERATURE), spec.get("mix", 0.0)
    try:
        decoding_ok = isinstance(temperature, float) and isinstance(mix, float)
        check_decoding(temperature, mix) if decoding_ok else None
    except ValueError:
        decoding_ok = False
    hints_ok = isinstance(spec.get("hints", False), bool)
    if (
        spec.get("output") not in OUTPUTS
        or not isinstance(spec.get("samples"), bool)
        or not decoding_ok
        or not hints_ok
    ):
        raise ColorizeError(f"the checkpoint's inference description is not one this version reads: {spec!r:.120}")
    return spec


def colorizer_from_checkpoint(checkpoint: dict[str, Any]) -> Colorizer:
    """The network alone, as the task described it when it saved the checkpoint (seconds faster:
    Lightning is never imported); a checkpoint without that description (written before it
    existed) through its full LightningModule."""
    spec = _inference_spec(checkpoint)
    if spec is None or "net" not in (checkpoint["colorization_config"].get("model") or {}):
        return Colorizer.from_module(model_from_checkpoint(checkpoint))
    return Colorizer(
        net_from_checkpoint(checkpoint), spec["output"], spec["samples"], spec.get("temperature"), spec.get("mix"),
        spec.get("hints", False),
    )  # fmt: skip


def load_colorizer(ckpt: str | Path, device: torch.device) -> tuple[Colorizer, int]:
    """-> (colorizer in eval mode on ``device``, the crop size it was trained at).

    The checkpoint is read with ``weights_only=True`` and its config checked; errors name the file.
    """
    try:
        checkpoint = load_checkpoint(ckpt)
        colorizer = colorizer_from_checkpoint(checkpoint)
        with torch.no_grad():  # the network and its stored output description agree (both are untrusted)
            probe = colorizer.eval()(torch.zeros(1, 1, 32, 32))
        if probe.shape != (1, 2, 32, 32) or not bool(torch.isfinite(probe).all()):
            raise ColorizeError(
                f"{ckpt}: its network and its stored output ({colorizer.output}) do not fit: a gray 32 px input "
                f"gives {tuple(probe.shape)} instead of ab (1, 2, 32, 32)"
            )
    except (CheckpointError, ColorizeError) as error:
        raise ColorizeError(str(error)) from None
    except Exception as error:  # noqa: BLE001 - a config or weights that do not fit the code
        raise ColorizeError(f"{ckpt}: cannot rebuild the model ({type(error).__name__}: {error})") from None
    size = (checkpoint["colorization_config"].get("data") or {}).get("image_size") or 256
    if not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise ColorizeError(f"{ckpt}: its data.image_size {size!r} is not a working size in 1..{MAX_SIZE}")
    return colorizer.eval().to(device), size


class OnnxColorizer:
    """An exported model (``colorize-export --format onnx``) run by onnxruntime on the CPU:
    the same contract as :class:`Colorizer` (``L`` in, ``ab`` out), at the size it was
    exported at. An ONNX file is data, not code."""

    can_sample, latent_dim = False, 0

    def __init__(self, path: str | Path) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise ColorizeError(f"--onnx needs onnxruntime: pip install 'colorization[export]' ({error})") from None
        path = Path(path).expanduser()
        if not path.is_file():
            raise ColorizeError(f"--onnx {path}: no such file")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - not an ONNX model, or not one onnxruntime runs
            raise ColorizeError(f"--onnx {path}: not a usable ONNX model ({type(error).__name__})") from None
        inputs = self.session.get_inputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        if not shape or len(shape) != 4 or not isinstance(shape[2], int) or shape[2] != shape[3]:
            raise ColorizeError(f"--onnx {path}: expects one input 'L' of shape (B, 1, S, S), has {shape}")
        self.input_name, self.size = inputs[0].name, int(shape[2])

    def __call__(self, l_norm: torch.Tensor) -> torch.Tensor:
        ab = self.session.run(None, {self.input_name: l_norm.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(np.asarray(ab, dtype=np.float32))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ColorizeError(f"--device {name}: CUDA is not available here (use --device cpu or auto)")
    try:
        device = torch.device(name)
        torch.empty(0, device=device)  # the device exists here (cuda:3 on a one-GPU machine does not)
    except (RuntimeError, ValueError, AssertionError) as error:
        raise ColorizeError(f"--device {name}: not a device this machine has ({error})") from None
    return device


def check_size(colorizer: Colorizer | OnnxColorizer, size: int, device: torch.device) -> None:
    """Fail early, with the option's name, if the network cannot run at ``size``."""
    with torch.no_grad():
        try:
            ab = colorizer(torch.zeros(1, 1, size, size, device=device))
        except Exception as error:  # noqa: BLE001
            raise ColorizeError(f"--size {size}: the model cannot run at this size ({error})") from None
    if ab.shape != (1, 2, size, size):
        raise ColorizeError(f"--size {size}: the model returns shape {tuple(ab.shape)}; try its training size")
