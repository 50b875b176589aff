"""Photos packed into streaming shards (``data=shards``), written by :mod:`colorization.data.pack`.

A packed folder holds one LitData optimised data set per split and a manifest::

    OUT/manifest.json        format, version, size, fractions, seed, counts, what was skipped
    OUT/train/index.json     LitData's index: chunk files and how many photos each holds
    OUT/train/chunk-*.bin    photos as JPEG bytes with their names, in a shuffled order
    OUT/val/...  OUT/test/...

:class:`ShardSource` is an :class:`~colorization.data.sources.ImageSource` like any other:
index ``i`` is a photo, ``load(i)`` an 8-bit RGB image, so the DataModule's crops, device Lab
path, samplers, DDP sharding and exact resume work unchanged. Two things differ: the split
comes from the pack (:meth:`ShardSource.packed_splits`, no set-up scan), and the training
order is chunk-aware (:meth:`ShardSource.chunk_bounds`): streamed from object storage, a
reader fetches a chunk (tens of MB) once and uses all its photos, instead of one random
photo per fetch.

Shards are untrusted input: the manifest and every index are JSON, read only from a regular
file (not a link, a device or a pipe) of at most :data:`MAX_JSON_BYTES`, checked on the open
file before a byte is read, and every key of an index is checked before LitData opens it
(:func:`check_index`): only the layout :mod:`~colorization.data.pack` writes (a name string
and image bytes, uncompressed, unencrypted, the exact ``data_spec``), so no shard can make
LitData unpickle anything or import a type; chunk file names must be plain names inside the
split's folder and ``updated_at`` (a cache folder name to LitData) a number; a local chunk
that is missing, a link, or not the size its index says, or a split folder that is a link,
is an error naming it (a half-written or tampered pack). A ``local:/path`` root (LitData
copies its chunks into the cache, as from a URL) gets every check of the folder it names,
before anything is copied. Only JPEG is decoded.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from colorization.data.images import DEFAULT_MAX_PIXELS, DataSourceError, UnreadableImage, decode_rgb
from colorization.data.sources import ImageSource

FORMAT = "colorization-shards"
VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
#: LitData's item layout the packer writes: {"name": str, "jpeg": bytes}
DATA_FORMAT = ["str", "bytes"]
_CHUNK_NAME = re.compile(r"chunk-\d+-\d+\.bin")
_PACK_HINT = "pack photos with: python -m colorization.data.pack SRC... OUT"


def is_remote(root: str | Path) -> bool:
    """A URL LitData streams from (``s3://``, ``gs://``, ``azure://``, ...; ``local:/path`` is
    a local folder read as if remote: fetched chunk by chunk into the cache)."""
    return isinstance(root, str) and ("://" in root or root.startswith("local:"))


def _join(root: str | Path, *parts: str) -> str | Path:
    return "/".join([str(root).rstrip("/"), *parts]) if is_remote(root) else Path(root, *parts)


def _folder(root: str | Path) -> Path | None:
    """The local folder a root reads: itself, or the path of a ``local:`` root (which LitData
    copies chunk by chunk into its cache, as from a URL): both get every check of a local
    folder. ``None`` for a URL."""
    if isinstance(root, str) and root.startswith("local:"):
        path = root.removeprefix("local:")
        if "local:" in path:  # LitData drops every "local:" of the path: it would read another folder
            raise DataSourceError(f"data.root={root}: 'local:' only once, at the start")
        return Path(path)
    return None if is_remote(root) else Path(root)


def _read_regular(path: Path, where: str | Path) -> str:
    """The text of a pack's JSON file, checked on the open file before a byte is read: a
    regular file (not a link, so nothing outside the pack; not a device such as /dev/zero
    or a pipe) of at most :data:`MAX_JSON_BYTES`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DataSourceError(f"{where}: not a regular file (a link); refusing to read it") from None
        raise
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DataSourceError(f"{where}: not a regular file; refusing to read it")
        if info.st_size > MAX_JSON_BYTES:
            raise DataSourceError(f"{where}: {info.st_size:,} bytes, over {MAX_JSON_BYTES:,}: not a pack's")
        return file.read(MAX_JSON_BYTES + 1).decode("utf-8")


def _read_json(root: str | Path, *parts: str) -> Any:
    """A small JSON file of the packed folder (a local folder's, checked before it is read
    by :func:`_read_regular`; for a URL, fetched through LitData's downloader), parsed as
    JSON only."""
    where, folder = _join(root, *parts), _folder(root)
    try:
        if folder is None:
            import tempfile

            from litdata.streaming.downloader import get_downloader

            with tempfile.TemporaryDirectory() as tmp:
                local = os.path.join(tmp, parts[-1])
                get_downloader(str(root), tmp, []).download_file(str(where), local)
                text = _read_regular(Path(local), where)
        else:
            text = _read_regular(Path(folder, *parts), where)
        if len(text) > MAX_JSON_BYTES:
            raise DataSourceError(f"{where}: over {MAX_JSON_BYTES:,} bytes: not a pack's")
    except (FileNotFoundError, DataSourceError):
        raise
    except (OSError, UnicodeDecodeError) as error:
        raise DataSourceError(f"{where}: cannot read ({error})") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataSourceError(f"{where}: not valid JSON ({error}); the pack is damaged: {_PACK_HINT}") from None


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The checked manifest of the packed folder ``root``; :class:`DataSourceError` naming
    it when it is missing, half-written (an interrupted pack) or not ours."""
    where = _join(root, MANIFEST)
    try:
        manifest = _read_json(root, MANIFEST)
    except FileNotFoundError:
        folder = _folder(root)
        partial = f"{str(root).rstrip('/')}.partial"
        interrupted = (
            f"; {partial} is an interrupted pack: run the same pack command again"
            if folder is not None and Path(f"{str(folder).rstrip('/')}.partial").exists()
            else ""
        )
        exists = folder is None or folder.is_dir()
        what = "has no manifest.json, so it is not a complete pack" if exists else "does not exist"
        raise DataSourceError(f"data.root={root} {what}{interrupted} ({_PACK_HINT})") from None
    counts = manifest.get("counts") if isinstance(manifest, dict) else None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or manifest.get("version") != VERSION
        or not isinstance(counts, dict)
        or set(counts) != set(SPLITS)
        or not all(isinstance(counts[s], int) and not isinstance(counts[s], bool) and counts[s] >= 0 for s in SPLITS)
    ):
        raise DataSourceError(
            f"{where}: not a {FORMAT} manifest of version {VERSION} (format, version and counts per split "
            f"{list(SPLITS)} expected); {_PACK_HINT}"
        )
    return manifest


#: the index.json the packer writes (LitData 0.2.x, items {"name": str, "jpeg": bytes}): every
#: key checked, as LitData acts on them (``data_spec`` names types it imports, ``format`` and
#: ``compression*`` pick readers and decompressors, ``updated_at`` becomes a cache path)
_CONFIG = {
    "chunk_bytes": lambda v: v is None or (_is_int(v) and v > 0),
    "chunk_size": lambda v: v is None or (_is_int(v) and v > 0),
    "compression": lambda v: v is None,
    "compression_batch_size": lambda v: v is None,
    "compression_level": lambda v: v is None,
    "data_format": lambda v: v == DATA_FORMAT,
    "data_spec": lambda v: _json_or_none(v) == _DATA_SPEC,
    "encryption": lambda v: v is None,
    "ipc_compression": lambda v: v is None,
    "item_loader": lambda v: v == "PyTreeLoader",
    "types": lambda v: v == {"jpeg": "bytes", "name": "str"},
}
_DATA_SPEC = [
    1,
    {
        "type": "builtins.dict",
        "context": '["name", "jpeg"]',
        "children_spec": [{"type": None, "context": None, "children_spec": []}] * 2,
    },
]
_CHUNK_KEYS = {"chunk_bytes", "chunk_size", "dim", "filename"}
_UPDATED_AT = re.compile(r"\d{1,20}(\.\d{1,20})?")
#: manifest.json and index.json are small (an index lists chunks: ~100 bytes each, so this
#: is 160,000 chunks, 10 TB at the packer's 64 MB); parsed, JSON takes up to ~25 times its size
MAX_JSON_BYTES = 16 * 2**20


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_or_none(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        return None


def check_index(index: Any, where: str | Path) -> list[dict]:
    """``index`` (a parsed index.json) is exactly what the packer writes, or
    :class:`DataSourceError` naming ``where``; returns its chunk entries."""
    refuse = f"{where}: not an index the packer writes (item format {DATA_FORMAT}, uncompressed, unencrypted)"
    if not isinstance(index, dict) or not set(index) <= {"chunks", "config", "updated_at"}:
        raise DataSourceError(f"{refuse}: unexpected keys; refusing to read it")
    config, chunks = index.get("config"), index.get("chunks")
    if not isinstance(config, dict) or not isinstance(chunks, list):
        raise DataSourceError(f"{refuse}; refusing to read it")
    bad = sorted(k for k in set(config) | set(_CONFIG) if k not in _CONFIG or not _CONFIG[k](config.get(k)))
    if bad:
        raise DataSourceError(f"{refuse}: config {bad}; refusing to read it")
    if "updated_at" in index and not _UPDATED_AT.fullmatch(str(index["updated_at"])):
        raise DataSourceError(f"{refuse}: updated_at {str(index['updated_at'])[:80]!r}; refusing to read it")
    for chunk in chunks:
        ok = (
            isinstance(chunk, dict)
            and set(chunk) <= _CHUNK_KEYS
            and isinstance(chunk.get("filename"), str)
            and _CHUNK_NAME.fullmatch(chunk["filename"]) is not None
            and _is_int(chunk.get("chunk_bytes"))
            and _is_int(chunk.get("chunk_size"))
            and 1 <= chunk["chunk_size"] <= chunk["chunk_bytes"] // 8  # an item is > 8 bytes
            and chunk.get("dim") is None
        )
        if not ok:
            raise DataSourceError(f"{where}: a chunk entry is malformed ({str(chunk)[:200]}); refusing to read it")
    return chunks


def read_index(root: str | Path, split: str, count: int) -> list[int]:
    """Photos per chunk of ``split``, after checking its LitData index is one the packer
    writes (:func:`check_index`: formats, no compression or encryption, plain chunk names,
    ``count`` photos) and, for a local folder, that every chunk file is whole: a regular
    file (not a link) of the size the index says, in a folder of the pack (not a link)."""
    where, folder = _join(root, split, "index.json"), _folder(root)
    if folder is not None and Path(folder, split).is_symlink():
        raise DataSourceError(f"{_join(root, split)}: a link, not a folder of the pack; refusing to read it")
    try:
        index = _read_json(root, split, "index.json")
    except FileNotFoundError:
        raise DataSourceError(f"{where} is missing: the pack is incomplete ({_PACK_HINT})") from None
    chunks = check_index(index, where)
    if folder is not None:
        for chunk in chunks:
            path = Path(folder, split, chunk["filename"])
            have = path.lstat().st_size if path.is_file() and not path.is_symlink() else None
            if have != chunk["chunk_bytes"]:
                state = "missing or not a regular file" if have is None else f"{have} bytes of {chunk['chunk_bytes']}"
                raise DataSourceError(
                    f"{_join(root, split, chunk['filename'])}: chunk {state}: the pack is incomplete or damaged "
                    f"({_PACK_HINT})"
                )
    sizes = [chunk["chunk_size"] for chunk in chunks]
    if sum(sizes) != count:
        raise DataSourceError(f"{where}: {sum(sizes)} photos, but {MANIFEST} says {count}; the pack is damaged")
    return sizes


class _RefusePickle:
    """Stands in for LitData's pickle serializer: a shard can never make us unpickle."""

    def can_serialize(self, item: Any) -> bool:
        return False

    def serialize(self, item: Any):  # pragma: no cover - never selected for writing
        raise TypeError("pickled items are not supported")

    def deserialize(self, data: bytes) -> Any:
        raise UnreadableImage("a shard item asks to be unpickled; refused")

    def setup(self, *args: Any, **kwargs: Any) -> None:
        pass


class ShardSource(ImageSource):
    """The photos of a folder written by ``python -m colorization.data.pack`` (``data=shards``).

    ``root`` is a local folder or a URL LitData reads (``s3://bucket/photos``, ``local:/path``,
    ...; a remote root streams chunks into ``cache_dir``, LitData's default cache when ``None``). Indices
    run over the train, val and test photos in that order; :meth:`packed_splits` gives each
    split's. Building one touches nothing; the first use reads and checks the manifest and
    indices (:meth:`check`).
    """

    reads_files = False  # checked at pack time: no set-up scan

    def __init__(
        self, root: str | Path, cache_dir: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS
    ) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise DataSourceError(f"data=shards reads one pack: data.root must be its folder or URL, got {root!r}")
        self.root = root if is_remote(root) else Path(root).expanduser()
        self.cache_dir, self.max_pixels = cache_dir, max_pixels
        self._opened: dict[str, Any] = {}
        self._pid: int | None = None

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.root)

    @cached_property
    def _chunks(self) -> dict[str, list[int]]:
        counts = self.manifest["counts"]
        return {s: read_index(self.root, s, counts[s]) if counts[s] else [] for s in SPLITS}

    def check(self) -> None:
        """Read and check the manifest and every split's index (raises DataSourceError)."""
        _ = self._chunks

    @cached_property
    def _offsets(self) -> np.ndarray:
        return np.cumsum([0] + [self.manifest["counts"][s] for s in SPLITS])

    def __len__(self) -> int:
        self.check()
        return int(self._offsets[-1])

    def packed_splits(self) -> dict[str, list[int]]:
        self.check()
        return {s: list(range(int(self._offsets[k]), int(self._offsets[k + 1]))) for k, s in enumerate(SPLITS)}

    def chunk_bounds(self) -> list[tuple[int, int]]:
        """``(start, end)`` source indices of every chunk, split after split."""
        self.check()
        bounds = []
        for k, split in enumerate(SPLITS):
            start = int(self._offsets[k])
            for size in self._chunks[split]:
                bounds.append((start, start + size))
                start += size
        return bounds

    def _dataset(self, split: str):
        if self._pid != os.getpid():  # a DataLoader worker: open its own readers
            self._opened, self._pid = {}, os.getpid()
        if split not in self._opened:
            from litdata import StreamingDataset

            self._opened[split] = StreamingDataset(
                str(_join(self.root, split)),
                cache_dir=self.cache_dir,
                shuffle=False,
                serializers={"pickle": _RefusePickle()},
                # one item per read: our sampler shuffles within chunks, so LitData's default
                # (decode 256 neighbours at once) would decode ~255 photos it then drops
                batch_decode=0,
            )
            self._opened[split] = self._verified(self._opened[split], split)
        return self._opened[split]

    def _verified(self, dataset: Any, split: str) -> Any:
        """The index LitData opened (for a URL: the copy it fetched) is the one :meth:`check`
        accepted: a pack replaced or tampered with since (``pack --overwrite`` mid-run) is an
        error, not photos read with another pack's indices."""
        where = _join(self.root, split)
        local = Path(dataset.input_dir.path, "index.json") if getattr(dataset.input_dir, "path", None) else None
        if local is None or not local.is_file():
            raise DataSourceError(f"{where}: LitData opened no index.json to check; refusing to read it")
        chunks = check_index(_read_json(local.parent, "index.json"), local)
        if [chunk["chunk_size"] for chunk in chunks] != self._chunks[split]:  # (len(dataset) is per DDP rank)
            raise DataSourceError(f"{where}: the pack changed since this run checked it; restart the run")
        return dataset

    def _item(self, index: int) -> tuple[str, dict[str, Any]]:
        if not 0 <= index < len(self):
            raise IndexError(f"photo {index} of {len(self)}")
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        split, position = SPLITS[k], index - int(self._offsets[k])
        dataset = self._dataset(split)
        where = f"{_join(self.root, split)}[{position}]"
        try:
            item = dataset[position]
        except Exception as error:  # noqa: BLE001 - a damaged chunk: skip the photo, name it
            raise UnreadableImage(f"{where}: cannot read the packed photo ({type(error).__name__}: {error})") from error
        if not (isinstance(item, dict) and isinstance(item.get("jpeg"), (bytes, memoryview))):
            raise UnreadableImage(f"{where}: not a packed photo")
        if not isinstance(item.get("name"), str):
            raise UnreadableImage(f"{where}: a packed photo without a name")
        return where, item

    def load(self, index: int, draft_size: int | None = None) -> Image.Image:
        where, item = self._item(index)
        return decode_rgb(bytes(item["jpeg"]), f"{where} ({item['name']})", draft_size, self.max_pixels, ("JPEG",))

    def name(self, index: int) -> str:
        try:
            return self._item(index)[1]["name"]
        except UnreadableImage:
            k = int(np.searchsorted(self._offsets, index, side="right") - 1)
            return f"{SPLITS[k]}[{index - int(self._offsets[k])}]"
