"""Every file a user opens has a memory bound, checked before anything is allocated: a
checkpoint (its zip directory: what its entries would unpack to, its pickle, its directory)
and a shard pack (its manifest and indices: regular files of bounded size, plain folder or
``local:`` root alike). Each bomb is built here, small on disk, and the refusal must come at
once with the process's peak RSS (``VmHWM``, reset before the call) barely moved."""

from __future__ import annotations

import collections
import io
import pickle
import resource
import signal
import struct
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from colorization import checkpoint
from colorization.checkpoint import CheckpointError, load_checkpoint
from colorization.data.images import DataSourceError
from colorization.data.shards import ShardSource
from tests.helpers import peak_rss_growth

MiB = 2**20


class _Storage:
    """A storage as torch.save pickles it: a persistent id naming a zip entry and its size."""

    def __init__(self, key: str, nbytes: int) -> None:
        self.key, self.nbytes = key, nbytes


class _Tensor:
    """A uint8 tensor of ``numel`` elements over ``storage``, pickled as torch.save does."""

    def __init__(self, storage: _Storage, numel: int) -> None:
        self.storage, self.numel = storage, numel

    def __reduce__(self):
        args = (self.storage, 0, (self.numel,), (1,), False, collections.OrderedDict())
        return torch._utils._rebuild_tensor_v2, args


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.ByteStorage, obj.key, "cpu", obj.nbytes) if isinstance(obj, _Storage) else None


def checkpoint_pickle(tensors: dict[str, tuple[str, int, int]]) -> bytes:
    """data.pkl of a checkpoint whose state_dict maps name -> (entry key, storage bytes, numel)."""
    state = {name: _Tensor(_Storage(key, nbytes), numel) for name, (key, nbytes, numel) in tensors.items()}
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump({"state_dict": state, "colorization_config": {"model": {}}})
    return buffer.getvalue()


def write_zip(path: Path, entries: list[tuple[str, int, bytes, int, int, str | None]]) -> None:
    """A zip of (name, method, stored bytes, unpacked size, crc32, the earlier entry whose
    bytes it shares or None), written by hand: an entry can hold pre-deflated data, or point
    at another's bytes (as a crafted central directory can)."""
    directory, offsets = b"", {}
    with open(path, "wb") as file:
        for name, method, payload, size, crc, shares in entries:
            encoded = name.encode()
            if shares is None:
                offsets[name] = file.tell()
                head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(payload), size,
                                   len(encoded), 0)  # fmt: skip
                file.write(head + encoded + payload)
            directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc,
                                     len(payload), size, len(encoded), 0, 0, 0, 0, 0,
                                     offsets[shares or name]) + encoded  # fmt: skip
        start = file.tell()
        file.write(directory + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries),
                                           len(directory), start, 0))  # fmt: skip


def stored(name: str, data: bytes) -> tuple[str, int, bytes, int, int, None]:
    return name, 0, data, len(data), zlib.crc32(data), None


def zeros_crc32(n: int) -> int:
    """``zlib.crc32(bytes(n))`` for ``n`` a power-of-two multiple of 1 MiB, without the bytes:
    feeding zeros is linear in the CRC register, so square the 1 MiB map (32 columns)."""
    mask = 0xFFFFFFFF

    def apply(columns: list[int], register: int) -> int:
        out = 0
        for bit, column in enumerate(columns):
            if register >> bit & 1:
                out ^= column
        return out

    columns = [zlib.crc32(bytes(MiB), (1 << bit) ^ mask) ^ mask for bit in range(32)]
    for _ in range((n // MiB).bit_length() - 1):
        columns = [apply(columns, column) for column in columns]
    return apply(columns, mask) ^ mask


def deflated_zeros(n: int) -> bytes:
    """Raw deflate of ``n`` zero bytes (a multiple of 1 MiB), ~1000 times smaller: one
    compressed MiB, self-contained after a full flush, repeated, then a final empty block."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return piece * (n // MiB) + b"\x03\x00"


TORCH_RECORDS = [stored("archive/byteorder", b"little"), stored("archive/version", b"3\n")]


def test_the_crafted_deflate_and_crc_are_those_zlib_writes():
    assert zlib.decompress(deflated_zeros(3 * MiB), -15) == bytes(3 * MiB)
    assert zeros_crc32(4 * MiB) == zlib.crc32(bytes(4 * MiB))


def test_a_zip_bomb_checkpoint_is_refused_from_its_directory_before_anything_is_unpacked(tmp_path):
    bomb, size = tmp_path / "bomb.ckpt", 2**31  # 2 GiB of zeros in a 2 MB file
    pkl = checkpoint_pickle({"net.w": ("0", size, size)})
    write_zip(bomb, [stored("archive/data.pkl", pkl), *TORCH_RECORDS,
                     ("archive/data/0", 8, deflated_zeros(size), size, zeros_crc32(size), None)])  # fmt: skip
    assert bomb.stat().st_size < 3 * MiB
    grew, seconds, error = peak_rss_growth(lambda: load_checkpoint(bomb))
    assert isinstance(error, CheckpointError), error
    message = str(error)
    assert str(bomb) in message and "2,147,48" in message and "\n" not in message, message
    assert grew < 64 * MiB, grew


def test_entries_sharing_their_bytes_cannot_unpack_to_more_than_the_file_holds(tmp_path):
    # 64 stored entries, all pointing at the same 32 MiB: 2 GiB of tensors from a 32 MiB file
    shared, size, count = tmp_path / "overlapping.ckpt", 32 * MiB, 64
    pkl = checkpoint_pickle({f"net.w{k}": (str(k), size, size) for k in range(count)})
    name, method, data, _, crc, _ = stored("archive/data/0", bytes(size))
    write_zip(shared, [stored("archive/data.pkl", pkl), *TORCH_RECORDS, (name, method, data, size, crc, None)]
              + [(f"archive/data/{k}", method, data, size, crc, name) for k in range(1, count)])  # fmt: skip
    grew, seconds, error = peak_rss_growth(lambda: load_checkpoint(shared))
    assert isinstance(error, CheckpointError), error
    assert str(shared) in str(error) and "2,147,48" in str(error), error
    assert grew < 64 * MiB, grew


def test_an_oversized_pickle_is_refused_before_it_is_unpickled(tmp_path):
    # one byte per empty dict: unpickled, ~70 bytes of objects per byte and ~2 s a MiB
    dicts = b"\x80\x02(" + b"}" * (checkpoint.MAX_PICKLE_BYTES - 4) + b"l."  # one byte over
    path = tmp_path / "objects.ckpt"
    write_zip(path, [stored("archive/data.pkl", dicts), *TORCH_RECORDS])
    grew, seconds, error = peak_rss_growth(lambda: load_checkpoint(path))
    assert isinstance(error, CheckpointError) and "data.pkl is 2,097,153 bytes, over 2,097,152" in str(error), error
    assert grew < 16 * MiB, grew


def test_a_huge_zip_directory_is_refused_before_it_is_parsed(tmp_path):
    path, entries = tmp_path / "listing.ckpt", [stored("archive/data.pkl", checkpoint_pickle({})), *TORCH_RECORDS]
    entries += [(f"archive/{k:0200d}", 0, b"", 0, 0, "archive/version") for k in range(5_000)]
    write_zip(path, entries)  # 5,000 entries of one shared empty record: 1.3 MB of directory
    limit = f"{checkpoint.MAX_DIRECTORY_BYTES:,}"
    with pytest.raises(
        CheckpointError, match=rf"listing.ckpt: refused, its zip directory is 1,2\d\d,\d\d\d bytes, over {limit}"
    ):
        load_checkpoint(path)


def test_the_legacy_format_which_allocates_declared_sizes_before_reading_is_refused(tmp_path):
    path = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": {}, "colorization_config": {"model": {}}}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy.ckpt is not a readable checkpoint .not a zip archive"):
        load_checkpoint(path)


@pytest.mark.parametrize("declared", ["storage", "shape"])
def test_torch_refuses_a_declared_size_beyond_the_stored_bytes_before_allocating_it(declared, tmp_path):
    # what torch itself checks: a storage's size against its record's, a shape against its storage
    path, huge = tmp_path / "declared.ckpt", 2**40  # 1 TiB declared, 16 bytes stored
    tensor = ("0", huge, huge) if declared == "storage" else ("0", 16, huge)
    write_zip(path, [stored("archive/data.pkl", checkpoint_pickle({"net.w": tensor})), *TORCH_RECORDS,
                     stored("archive/data/0", bytes(16))])  # fmt: skip
    grew, seconds, error = peak_rss_growth(lambda: load_checkpoint(path))
    assert isinstance(error, CheckpointError) and "declared.ckpt is not a readable checkpoint" in str(error), error
    assert grew < 16 * MiB, grew


@contextmanager
def file_size_limit(limit: int):
    """Writing a file past ``limit`` bytes fails (EFBIG) in this process: a reader that would
    copy without end stops there, an error instead of a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize("scheme", ["", "local:"])
def test_a_pack_manifest_linked_to_dev_zero_is_refused_without_reading_it(scheme, tmp_path, monkeypatch):
    root, temp = tmp_path / "pack", tmp_path / "temp"
    root.mkdir(), temp.mkdir()
    (root / "manifest.json").symlink_to("/dev/zero")
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with file_size_limit(64 * MiB):
        grew, seconds, error = peak_rss_growth(lambda: len(ShardSource(f"{scheme}{root}", cache_dir=str(temp))))
    assert isinstance(error, DataSourceError), error
    assert f"{scheme}{root}/manifest.json: not a regular file" in str(error), error
    assert not list(temp.iterdir()) and grew < 16 * MiB, (list(temp.iterdir()), grew)
