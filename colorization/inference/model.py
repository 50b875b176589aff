"""A trained colorizer at its working size: from a checkpoint (its network alone, as its task
described it) or from an exported ONNX model."""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from colorization.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, net_from_checkpoint
from colorization.hints import no_hints
from colorization.limits import MAX_ONNX_BYTES, MAX_ONNX_MEMORY, MAX_SIZE
from colorization.outputs import OUTPUTS, TEMPERATURE, check_decoding, output_space

#: the ONNX metadata entry in which colorize-export stores the working size it exported at
ONNX_SIZE_KEY = "colorization.size"
#: ... and the multiple its height and width must be (unet: 32); colorize pads photos to it
ONNX_MULTIPLE_KEY = "colorization.multiple"
#: the largest such multiple a file may state
MAX_MULTIPLE = 256
#: what a network that gives NaN or inf is told
NON_FINITE = "the model produces non-finite values (NaN/inf) for a gray input: its weights are corrupt or diverged"


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
        # a network that pads its input to a multiple of this (unet: 32); colorize pads photos
        # to it beforehand, as for its ONNX export, so that both colour a photo alike
        self.multiple = int(getattr(net, "multiple", 1))

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


def probe_colorizer(colorizer: Colorizer, ckpt: str | Path) -> None:
    """The network and its stored description agree (both are untrusted): a gray 32 px input
    gives finite ab (1, 2, 32, 32); it can sample (``--samples``) only if its network decodes
    a latent sample to such ab."""
    gray = torch.zeros(1, 1, 32, 32)
    with torch.no_grad():
        probe = colorizer.eval()(gray)
        if probe.shape != (1, 2, 32, 32):
            raise ColorizeError(
                f"{ckpt}: its network and its stored output ({colorizer.output}) do not fit: a gray 32 px input "
                f"gives {tuple(probe.shape)} instead of ab (1, 2, 32, 32)"
            )
        if not bool(torch.isfinite(probe).all()):
            raise ColorizeError(f"{ckpt}: {NON_FINITE}")
        # a description that says it samples, of a network without a latent: the network decides
        colorizer.can_sample = colorizer.can_sample and _samples(colorizer, gray)


def _samples(colorizer: Colorizer, gray: torch.Tensor) -> bool:
    """Whether the network decodes a latent sample into ab of the input's shape."""
    if colorizer.latent_dim < 1 or not callable(getattr(colorizer.net, "decode", None)):
        return False
    try:
        return colorizer(gray, torch.zeros(1, colorizer.latent_dim)).shape == (1, 2, *gray.shape[-2:])
    except Exception:  # noqa: BLE001 - a decode that does not take (input, latent)
        return False


def load_colorizer(ckpt: str | Path, device: torch.device) -> tuple[Colorizer, int]:
    """-> (colorizer in eval mode on ``device``, the crop size it was trained at).

    The checkpoint is read with ``weights_only=True`` and its config checked; errors name the file.
    """
    try:
        checkpoint = load_checkpoint(ckpt)
        colorizer = colorizer_from_checkpoint(checkpoint)
        probe_colorizer(colorizer, ckpt)
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
    the same contract as :class:`Colorizer` (``L`` in, ``ab`` out). A model exported for any
    height and width (``fixed_size`` None) sees a photo at the checkpoint's working shape, at
    the working size stored in the file (``size``), padded to the ``multiple`` stored there
    (unet: 32, exported for heights and widths of that multiple); one exported at one square
    size (by colorize-export before it exported any shape) gets photos letterboxed.

    An ONNX file is data, not code, and untrusted: it is at most :data:`MAX_ONNX_BYTES`, read
    once; weights it says are in other files (external data) are refused, and onnxruntime gets
    its bytes, never its path, so it opens no other file; its declared input and stored working
    size are at most ``MAX_SIZE``, checked before any tensor is made; onnxruntime allocates at
    most :data:`MAX_ONNX_MEMORY`."""

    can_sample, latent_dim, takes_hints = False, 0, False

    def __init__(self, path: str | Path) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise ColorizeError(f"--onnx needs onnxruntime: pip install 'colorization[export]' ({error})") from None
        self.path = path = Path(path).expanduser()
        data = _read_onnx(path)
        if (name := _external_tensor(data)) is not None:
            raise ColorizeError(
                f"--onnx {path}: its tensor {name!r:.80} is stored in another file (external data); colorize reads "
                "the one file only (colorize-export writes the weights into it)"
            )
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # its errors come back as exceptions, turned into one line
        options.intra_op_num_threads = torch.get_num_threads()  # colorize --threads, as for a checkpoint
        options.add_session_config_entry("session.use_env_allocators", "1")  # the capped allocator
        _capped_allocator(onnxruntime)
        try:
            self.session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - not an ONNX model, or not one onnxruntime runs
            raise ColorizeError(f"--onnx {path}: not a usable ONNX model ({_ort_reason(error)})") from None
        self.input_name, self.fixed_size = _declared_input(self.session, path)
        self.size = self.fixed_size or _stored_size(self.session, path)
        self.multiple = 1 if self.fixed_size else _stored_multiple(self.session, path)

    def __call__(self, l_norm: torch.Tensor) -> torch.Tensor:
        try:
            ab = self.session.run(None, {self.input_name: l_norm.detach().cpu().float().numpy()})[0]
        except Exception as error:  # noqa: BLE001 - onnxruntime's errors, memory cap included
            raise ColorizeError(
                f"--onnx {self.path}: fails on a {tuple(l_norm.shape)} input ({_ort_reason(error)})"
            ) from None
        return torch.from_numpy(np.asarray(ab, dtype=np.float32))


def _read_onnx(path: Path) -> bytes:
    """The file's bytes, read once; a file over :data:`MAX_ONNX_BYTES` is refused unread."""
    if not path.is_file():
        raise ColorizeError(f"--onnx {path}: no such file")
    too_big = f"--onnx {path}: over the {MAX_ONNX_BYTES >> 20} MiB an ONNX model may have; not read"
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise ColorizeError(too_big)
    with open(path, "rb") as file:
        data = file.read(MAX_ONNX_BYTES + 1)  # a file that grows meanwhile is still bounded
    if len(data) > MAX_ONNX_BYTES:
        raise ColorizeError(too_big)
    return data


def _external_tensor(data: bytes) -> str | None:
    """The name of a tensor the model says is stored in another file (ONNX external data), or
    None; needs the ``onnx`` package (without it, onnxruntime given bytes and no path refuses
    such a model too, with a less clear message)."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        model = onnx.ModelProto.FromString(data)
    except Exception:  # noqa: BLE001 - not a model: onnxruntime says so
        return None
    tensors = itertools.chain(_graph_tensors(model.graph), *(_node_tensors(f.node) for f in model.functions))
    external = (t.name for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL or t.external_data)
    return next(external, None)


def _graph_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of an ONNX graph: initializers, and those of its nodes."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Any) -> Iterator[Any]:
    """Every TensorProto in these nodes' attributes, sub-graphs (If, Loop, Scan) included."""
    for node in nodes:
        for attribute in node.attribute:
            yield attribute.t
            yield from attribute.tensors
            for sparse in (attribute.sparse_tensor, *attribute.sparse_tensors):
                yield from (sparse.values, sparse.indices)
            for subgraph in (attribute.g, *attribute.graphs):
                yield from _graph_tensors(subgraph)


@functools.cache
def _capped_allocator(onnxruntime: Any) -> None:
    """Register, once per process, the CPU allocator that ONNX sessions share, capped at
    :data:`MAX_ONNX_MEMORY`: a graph that asks for more fails before allocating it."""
    info = onnxruntime.OrtMemoryInfo("Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                     onnxruntime.OrtMemType.DEFAULT)  # fmt: skip
    arena = onnxruntime.OrtArenaCfg({"max_mem": MAX_ONNX_MEMORY, "arena_extend_strategy": 1})  # as requested
    onnxruntime.create_and_register_allocator(info, arena)


def _ort_reason(error: Exception) -> str:
    """onnxruntime's message in one short line (a cap reached said in GiB)."""
    text = " ".join(str(error).split())
    if asked := re.search(r"requested bytes of (\d+)", text):
        return f"it asks for {int(asked[1]) / 2**30:.1f} GiB more, past the {MAX_ONNX_MEMORY >> 30} GiB cap"
    return text.rsplit(" : ", 1)[-1][:200]


def _declared_input(session: Any, path: Path) -> tuple[str, int | None]:
    """(the input's name, its one square size or None for any height and width): one input
    'L' (B, 1, H, W); a declared size past ``MAX_SIZE`` is refused before any tensor is made."""
    inputs = session.get_inputs()
    shape = inputs[0].shape if len(inputs) == 1 else None
    if not shape or len(shape) != 4 or shape[1] != 1:
        raise ColorizeError(f"--onnx {path}: expects one input 'L' of shape (B, 1, H, W), has {shape}")
    height, width = shape[2:]
    if not isinstance(height, int) and not isinstance(width, int):
        return inputs[0].name, None
    if height != width:
        raise ColorizeError(f"--onnx {path}: takes (B, 1, {height}, {width}); colorize runs (B, 1, S, S) or any H, W")
    if not 1 <= height <= MAX_SIZE:
        raise ColorizeError(f"--onnx {path}: declares a {height} px input; working sizes are 1..{MAX_SIZE} px")
    return inputs[0].name, height


def _stored_size(session: Any, path: Path) -> int | None:
    """The working size colorize-export stored in the file (None: not stored)."""
    value = session.get_modelmeta().custom_metadata_map.get(ONNX_SIZE_KEY)
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,6}", value) or not 1 <= int(value) <= MAX_SIZE:
        raise ColorizeError(f"--onnx {path}: its stored working size {value!r:.40} is not in 1..{MAX_SIZE} px")
    return int(value)


def _stored_multiple(session: Any, path: Path) -> int:
    """The multiple of which the file takes heights and widths (1: any; colorize-export stores
    it for a network that pads to one)."""
    value = session.get_modelmeta().custom_metadata_map.get(ONNX_MULTIPLE_KEY, "1")
    if not re.fullmatch(r"[0-9]{1,3}", value) or not 1 <= int(value) <= MAX_MULTIPLE:
        raise ColorizeError(f"--onnx {path}: its stored size multiple {value!r:.40} is not in 1..{MAX_MULTIPLE}")
    return int(value)


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
        except ColorizeError:
            raise
        except Exception as error:  # noqa: BLE001
            raise ColorizeError(f"--size {size}: the model cannot run at this size ({error})") from None
    if ab.shape != (1, 2, size, size):
        raise ColorizeError(f"--size {size}: the model returns shape {tuple(ab.shape)}; try its training size")
    if not bool(torch.isfinite(ab).all()):
        where = f"--onnx {colorizer.path}" if isinstance(colorizer, OnnxColorizer) else f"--size {size}"
        raise ColorizeError(f"{where}: {NON_FINITE}")
