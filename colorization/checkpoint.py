"""Reading a train.py checkpoint: the file alone, with ``weights_only=True``, and its stored
config checked by :mod:`colorization.safe_config` before anything is built from it.

Kept free of Lightning and torchmetrics so that ``colorize`` starts in about a third of the
time (importing Lightning takes seconds); ``colorize``, ``eval.py`` and resume share it.
"""

from __future__ import annotations

import copy
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from colorization.io import printable
from colorization.safe_config import UnsafeConfig, build, check

#: set on every class built from a stored config that takes them: opening a checkpoint never
#: downloads (data sets, pretrained weights: a network's weights come from the checkpoint)
#: and never starts a compiler
FORCED = {"download": False, "pretrained": False, "compile": False}


class CheckpointError(RuntimeError):
    """A checkpoint that does not exist, is not a train.py checkpoint, or asks for more than
    the project allows; the message names the file."""


#: what a checkpoint's zip entries may unpack to beyond the file's own size: torch.save
#: stores every entry uncompressed, so a real checkpoint's entries fit in its file; entries
#: that are compressed (2 GiB of zeros deflate to 2 MB) or share their bytes may add this much
MAX_UNPACKED_EXTRA = 2**20
#: the pickled index of tensors and config (data.pkl): 21 KB in a 10 MB checkpoint of this
#: project (~150 bytes a tensor); unpickled, a byte makes up to ~225 bytes of objects (an
#: empty set; a tensor ~110), so at most ~0.5 GB
MAX_PICKLE_BYTES = 2 * 2**20
#: the zip's central directory (~60 bytes an entry: 8 KB in that checkpoint), parsed into
#: ~10 times as much before any entry is read
MAX_DIRECTORY_BYTES = 2**20
_END = struct.Struct("<4s4H2LH")  # end of central directory record
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end record: ..., directory size, directory offset


def _directory_size(file: Any, size: int) -> int | None:
    """The size of the zip's central directory from its end records, as torch's reader takes
    them (zip64's when present), or ``None`` when the file does not end as torch.save
    ends a zip: its end record last (no comment), the directory right before the end records
    (no bytes before the archive, so Python's zipfile and torch read the same directory)."""
    if size < _END.size:
        return None
    file.seek(size - _END.size)
    signature, *_, length, offset, comment = _END.unpack(file.read(_END.size))
    if signature != b"PK\x05\x06" or comment:
        return None
    ends = size - _END.size
    if ends >= _END64_LOCATOR.size:
        file.seek(ends - _END64_LOCATOR.size)
        locator, _, at, _ = _END64_LOCATOR.unpack(file.read(_END64_LOCATOR.size))
        if locator == b"PK\x06\x07":
            file.seek(at)
            record = file.read(_END64.size)
            if len(record) < _END64.size or record[:4] != b"PK\x06\x06":
                return None
            ends, (length, offset) = at, _END64.unpack(record)[-2:]
    return length if offset + length == ends else None


def _check_archive(path: Path) -> None:
    """Refuse (one line naming ``path``) a checkpoint that would make torch allocate more than
    the file's size plus :data:`MAX_UNPACKED_EXTRA`, a pickle over :data:`MAX_PICKLE_BYTES`
    or a directory over :data:`MAX_DIRECTORY_BYTES`, from its zip directory alone: torch
    allocates each entry's declared size before reading it. Not a zip (torch's legacy format
    allocates every storage's declared size before reading it): refused too."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, 2)
            directory = _directory_size(file, size)
            if directory is None:
                raise CheckpointError(f"{path} is not a readable checkpoint (not a zip archive as torch.save writes)")
            if directory > MAX_DIRECTORY_BYTES:
                raise CheckpointError(
                    f"{path}: refused, its zip directory is {directory:,} bytes, over {MAX_DIRECTORY_BYTES:,}"
                )
            with zipfile.ZipFile(file) as archive:
                entries = archive.infolist()
    except (OSError, EOFError, ValueError, struct.error, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(error).__name__})") from None
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > size + MAX_UNPACKED_EXTRA:
        compressed = sum(entry.compress_type != zipfile.ZIP_STORED for entry in entries)
        raise CheckpointError(
            f"{path}: refused, its entries would unpack to {unpacked:,} bytes from a file of {size:,} "
            f"({compressed} compressed; torch.save stores them uncompressed): a zip bomb, not a checkpoint"
        )
    for entry in entries:
        if entry.filename.endswith(".pkl") and entry.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(
                f"{path}: refused, its {entry.filename} is {entry.file_size:,} bytes, over {MAX_PICKLE_BYTES:,}"
            )


def check_stored_config(config: Any) -> None:
    """Refuse a stored run config (:class:`UnsafeConfig`, naming the key) whose model or
    data section would build anything but the project's own classes from plain values."""
    if not isinstance(config, dict):
        raise UnsafeConfig(f"colorization_config: expected a mapping, got a {type(config).__name__}")
    if not isinstance(config.get("model"), dict):
        raise UnsafeConfig("colorization_config.model: missing")
    check(config["model"], "task", "model")
    if config.get("data") is not None:
        check(config["data"], "datamodule", "data")
    run_id = config.get("wandb_run_id")
    if run_id is not None and not (isinstance(run_id, str) and run_id.isalnum() and len(run_id) <= 64):
        raise UnsafeConfig("wandb_run_id: not a W&B run id")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a train.py checkpoint with ``weights_only=True`` (no code runs while loading), in
    memory bounded by its size (:func:`_check_archive`, before torch allocates), and check
    its stored config (:func:`check_stored_config`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    _check_archive(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "colorization_config" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint written by train.py (no state_dict / colorization_config)")
    if not isinstance(checkpoint["state_dict"], dict):
        raise CheckpointError(f"{path}: its state_dict is not a mapping of tensors")
    try:
        check_stored_config(checkpoint["colorization_config"])
    except UnsafeConfig as error:
        raise CheckpointError(f"{path}: refused, its stored config asks for more than a model: {error}") from None
    return checkpoint


def _load_weights(module: torch.nn.Module, state: dict[str, Any], what: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])[:300]
        raise CheckpointError(f"the checkpoint's {what} config does not match its weights ({detail})") from None


#: what a network rebuilt from a stored config may hold beyond the checkpoint's own tensors
#: (buffers that are not saved, e.g. the ab bins' tables, are a few MiB): a config that asks for
#: a bigger network than its weights is refused before any of it is allocated
MAX_NETWORK_EXTRA = 64 * 2**20


def _tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _check_network_size(node: dict, kind: str, key: str, state: dict[str, Any]) -> None:
    """Build ``node`` on the meta device (shapes only, nothing allocated) and refuse it when
    its parameters and buffers would take more than ``state``'s tensors plus
    :data:`MAX_NETWORK_EXTRA`: a crafted config (``width: 100000``) would otherwise allocate
    its network before the weights are found not to fit. A class that cannot be built on the
    meta device is not measured (its weights still must match, after it is built)."""
    try:
        with torch.device("meta"):
            network = build(node, kind, key, forced=FORCED)
    except Exception:  # noqa: BLE001 - measured only where it can be; the real build reports errors
        return
    if not isinstance(network, torch.nn.Module):
        return
    wanted, held = _tensor_bytes([*network.parameters(), *network.buffers()]), _tensor_bytes(state.values())
    if wanted > held + MAX_NETWORK_EXTRA:
        raise CheckpointError(
            f"refused: its {key} config builds a network of {wanted / 2**20:,.1f} MiB, but the checkpoint holds "
            f"{held / 2**20:,.1f} MiB of weights (a config that does not match its weights)"
        )


def _build(node: dict, kind: str, key: str, state: dict[str, Any] | None = None) -> Any:
    if state is not None:
        _check_network_size(node, kind, key, state)
    try:
        built = build(node, kind, key, forced=FORCED)
    except UnsafeConfig as error:
        raise CheckpointError(f"refused: {error}") from None
    except ImportError as error:  # a plugin module the user named (COLORIZATION_PLUGINS) is not there
        raise CheckpointError(f"cannot import a plugin module ({error})") from None
    except Exception as error:  # noqa: BLE001 - a constructor that rejects the stored arguments
        raise CheckpointError(
            f"cannot rebuild {key} from the checkpoint's config ({type(error).__name__}: {error})"
        ) from None
    if kind in ("task", "net") and not isinstance(built, torch.nn.Module):
        raise CheckpointError(f"{key}: the checkpoint's config does not build a network")
    return built


def net_from_checkpoint(checkpoint: dict[str, Any]) -> torch.nn.Module:
    """The network alone (``model.net`` of the config, weights ``net.*``), without building
    the LightningModule around it (no losses, metrics or Lightning import)."""
    prefix = "net."
    state = {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    net = _build(checkpoint["colorization_config"]["model"]["net"], "net", "model.net", state)
    _load_weights(net, state, "model.net")
    return net


def model_from_checkpoint(checkpoint: dict[str, Any]) -> torch.nn.Module:
    """The LightningModule a checkpoint was trained as, with its weights (no optimizer)."""
    model = _build(checkpoint["colorization_config"]["model"], "task", "model", checkpoint["state_dict"])
    _load_weights(model, checkpoint["state_dict"], "model")
    return model


#: photo sources that read only what the installed packages bundle (no folder, no URL)
_BUNDLED_SOURCES = frozenset({"SamplePhotos"})


def _name(target: Any) -> str:
    return str(target or "").rsplit(".", 1)[-1]


def stored_location(data: dict[str, Any]) -> str | None:
    """The folder or URL (or ``[DIR1,DIR2]``) a stored data config reads its photos from, as
    an override would spell it (``None``: bundled data)."""
    if _name(data.get("_target_")) == "DigitsDataModule" and data.get("source", "sklearn") == "sklearn":
        return None
    source = data.get("source")
    if isinstance(source, dict) and _name(source.get("_target_")) in _BUNDLED_SOURCES:
        return None
    root = data.get("root")
    if isinstance(root, (list, tuple)):
        return "[" + ",".join(map(str, root)) + "]"
    return None if root is None else str(root)


def stored_data_for_eval(data: Any, root: str | list[str] | None = None) -> dict[str, Any]:
    """A checkpoint's stored data config with every location taken out: its photo folder or
    URL (``data.root``) becomes ``root``, which only the user's command line gives; a stored
    scan cache becomes the user's own default (``auto``) and a shard cache LitData's default,
    so a checkpoint can never choose where anything is read, written, deleted or downloaded."""
    if not isinstance(data, dict):
        raise CheckpointError("the checkpoint stores no data config: give data=<source>")
    data = copy.deepcopy(data)
    if root is not None:  # from the command line: a folder or URL, or a list of folders
        root = str(root) if isinstance(root, (str, Path, int, float)) else [str(r) for r in root]
    stored = stored_location(data)
    if stored is not None and root is None:
        raise CheckpointError(
            f"its data reads photos from {printable(stored)}, and eval.py takes data locations only from the "
            f"command line: add data_root={printable(stored)} to score on those photos, or data=folder_test "
            "data.root=DIR for others"
        )
    if stored is None and root is not None:
        raise CheckpointError(
            "data_root: its data reads no folder (bundled photos); to score on other photos give "
            "data=folder_test data.root=DIR"
        )
    if "root" in data:
        data["root"] = root
    if _name(data.get("_target_")) != "DigitsDataModule":
        data["scan_cache"] = "auto"
    source = data.get("source")
    if isinstance(source, dict):
        for key in ("root", "cache_dir"):
            if key in source:
                source[key] = root if key == "root" else None
    return data


def datamodule_from_checkpoint(checkpoint: dict[str, Any], root: str | list[str] | None = None) -> Any:
    """The data the checkpoint was trained on, from its stored ``data`` config without its
    locations (:func:`stored_data_for_eval`; ``root`` from the user); never downloads."""
    data = stored_data_for_eval(checkpoint["colorization_config"].get("data"), root)
    return _build(data, "datamodule", "data")
