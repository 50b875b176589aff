"""Set-up checks on a photo source, and the deterministic split by photo."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from colorization.color import colorfulness
from colorization.data.images import UnreadableImage
from colorization.data.sources import ImageSource
from colorization.io import atomic_path, remove_stale_temp_files

#: shorter side of the thumbnail on which colourfulness is measured
SCAN_SIZE = 64

#: the scan cache's file format (and what its scores mean): a change makes old files unused
SCAN_CACHE_VERSION = 1


@dataclass
class ScanReport:
    """What the set-up scan kept and skipped (names of skipped photos included).

    ``reused``: photos whose check came from the scan cache; ``decoded``: photos decoded now.
    """

    kept: list[int] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # name -> reason
    colorless: dict[str, float] = field(default_factory=dict)  # name -> colourfulness
    reused: int = 0
    decoded: int = 0

    def summary(self) -> str:
        return (
            f"{len(self.kept)} photos kept, {len(self.unreadable)} unreadable skipped, "
            f"{len(self.colorless)} with (almost) no colour skipped"
        )


def default_scan_cache() -> Path:
    """Where scan caches go by default: ``$COLORIZATION_CACHE`` if set, else
    ``$XDG_CACHE_HOME/colorization/scans``, else ``~/.cache/colorization/scans``."""
    if os.environ.get("COLORIZATION_CACHE"):
        return Path(os.environ["COLORIZATION_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "colorization" / "scans"


def resolve_scan_cache(scan_cache: str | Path | None) -> Path | None:
    """``data.scan_cache`` -> the folder: ``"auto"`` is :func:`default_scan_cache`, ``None``
    disables the cache, anything else is a folder (``~`` expanded)."""
    if scan_cache is None:
        return None
    if str(scan_cache) == "auto":
        return default_scan_cache()
    return Path(scan_cache).expanduser()


def _check(source: ImageSource, index: int, min_colorfulness: float) -> tuple[str, object]:
    try:
        image = source.load(index, draft_size=SCAN_SIZE)
        if min_colorfulness <= 0:
            return "ok", None
        image = image.copy()
        image.thumbnail((4 * SCAN_SIZE, 4 * SCAN_SIZE))
        score = colorfulness(np.asarray(image))
        return ("ok", score) if score >= min_colorfulness else ("colorless", score)
    except UnreadableImage as error:
        return "unreadable", str(error)


def _measure(source: ImageSource, index: int) -> tuple[str, object, bool]:
    """Decode photo ``index`` -> ``("ok", colourfulness, cacheable)`` or ``("unreadable",
    reason, cacheable)``. A failure of the system rather than of the file (permission denied,
    an I/O error: an ``OSError`` with an errno) may pass: it is not cached."""
    try:
        image = source.load(index, draft_size=SCAN_SIZE).copy()
        image.thumbnail((4 * SCAN_SIZE, 4 * SCAN_SIZE))
        score = float(colorfulness(np.asarray(image)))
        return "ok", score, math.isfinite(score)
    except UnreadableImage as error:
        cause = error.__cause__
        transient = isinstance(cause, OSError) and cause.errno is not None
        return "unreadable", str(error), not transient


def _cache_file(cache_dir: Path, identity: str) -> Path:
    key = json.dumps([identity, SCAN_CACHE_VERSION, SCAN_SIZE])
    return cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()}.json"


def _is_fingerprint_item(item: object) -> bool:
    if isinstance(item, bool):
        return False
    return isinstance(item, (str, int)) or (isinstance(item, float) and math.isfinite(item))


def _parse_cache(text: str, identity: str) -> dict[tuple, tuple[str, object]]:
    """The entries of a scan cache file (untrusted): fingerprint -> (status, value).
    Raises ``ValueError`` saying what is wrong with it."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("version") != SCAN_CACHE_VERSION:
        raise ValueError(f"format version {data.get('version')!r}, expected {SCAN_CACHE_VERSION}")
    if data.get("scan_size") != SCAN_SIZE or data.get("identity") != identity:
        raise ValueError("written for another scan size or another source")
    entries = data.get("entries")
    if not isinstance(entries, list):
        raise ValueError("no list of entries")
    parsed: dict[tuple, tuple[str, object]] = {}
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], list) and entry[0]):
            raise ValueError(f"malformed entry {str(entry)[:80]}")
        fingerprint, status, value = entry
        if not all(_is_fingerprint_item(item) for item in fingerprint):
            raise ValueError(f"malformed fingerprint {str(fingerprint)[:80]}")
        if status == "ok":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"colourfulness {str(value)[:40]} is not a finite number")
            value = float(value)
        elif status != "unreadable" or not isinstance(value, str):
            raise ValueError(f"unknown status {str(status)[:40]} (or its value)")
        parsed[tuple(fingerprint)] = (status, value)
    return parsed


def _load_cache(path: Path, identity: str) -> tuple[dict[tuple, tuple[str, object]], bool]:
    """(entries, whether the file on disk is a valid cache). A missing file is an empty cache;
    an unreadable or invalid one warns once, naming it, and is rebuilt."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return {}, False
    except (OSError, UnicodeDecodeError) as error:
        warnings.warn(f"ignoring the unreadable scan cache {path} ({error}); rebuilding it", stacklevel=4)
        return {}, False
    try:
        return _parse_cache(text, identity), True
    except (ValueError, RecursionError) as error:  # json.JSONDecodeError is a ValueError
        reason = "not valid JSON" if isinstance(error, json.JSONDecodeError) else str(error)
        warnings.warn(f"ignoring the corrupt scan cache {path} ({reason}); rebuilding it", stacklevel=4)
        return {}, False


def _save_cache(path: Path, identity: str, entries: dict[tuple, tuple[str, object]]) -> None:
    data = {
        "version": SCAN_CACHE_VERSION,
        "scan_size": SCAN_SIZE,
        "identity": identity,
        "entries": [[list(fingerprint), status, value] for fingerprint, (status, value) in entries.items()],
    }
    try:
        text = json.dumps(data, allow_nan=False, separators=(",", ":"))
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        remove_stale_temp_files(path.parent)
    except (OSError, ValueError, TypeError) as error:
        warnings.warn(
            f"could not write the scan cache {path} ({error}); the next run decodes every photo again "
            "(set data.scan_cache to a writable folder, or null)",
            stacklevel=4,
        )


def _scan_cached(
    source: ImageSource,
    min_colorfulness: float,
    workers: int,
    cache_dir: Path,
    identity: str,
    report: ScanReport,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    path = _cache_file(cache_dir, identity)
    cached, valid = _load_cache(path, identity)
    fresh: dict[tuple, tuple[str, object]] = {}
    results: list[tuple[str, object] | None] = [None] * len(source)
    fingerprints: list[tuple | None] = [None] * len(source)
    todo = []
    for index in range(len(source)):  # hits in this thread: a stat each, no pool overhead
        fingerprint = source.fingerprint(index)
        fingerprint = tuple(fingerprint) if fingerprint is not None else None
        hit = cached.get(fingerprint) if fingerprint is not None else None
        if hit is None:
            todo.append(index)
        else:
            results[index] = hit
            fresh[fingerprint] = hit
        fingerprints[index] = fingerprint
    report.reused, report.decoded = len(source) - len(todo), len(todo)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, (index, (status, value, cacheable)) in enumerate(
            zip(todo, pool.map(lambda i: _measure(source, i), todo), strict=True), start=1
        ):
            results[index] = (status, value)
            if cacheable and fingerprints[index] is not None:
                fresh[fingerprints[index]] = (status, value)
            if progress is not None:
                progress(done, len(todo))
    for index, (status, value) in enumerate(results):
        if status == "unreadable":
            report.unreadable[source.name(index)] = value
        elif min_colorfulness > 0 and not value >= min_colorfulness:
            report.colorless[source.name(index)] = value
        else:
            report.kept.append(index)
    if fresh != cached or not valid:
        _save_cache(path, identity, fresh)


def scan_source(
    source: ImageSource,
    min_colorfulness: float = 0.0,
    workers: int = 4,
    quiet: bool = False,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScanReport:
    """Decode every photo once (files only) and measure its colourfulness.

    Unreadable files and photos whose Hasler-Suesstrunk colourfulness is below
    ``min_colorfulness`` are skipped; one warning per kind counts them (none if ``quiet``).

    ``cache_dir``: a folder for a cache of the checks, one JSON file per source (sources
    with a :attr:`~ImageSource.cache_identity`, such as folders). A photo whose fingerprint
    (path, size, modification time) is unchanged since a scan that cached it is not decoded
    again; every readable photo's colourfulness is cached, so one cache serves any
    ``min_colorfulness``. A corrupt cache file warns and is rebuilt; a cache that cannot be
    written warns and the scan goes on. ``"auto"``: :func:`default_scan_cache`; ``None``: no
    cache, every photo is decoded (and scored only when ``min_colorfulness`` > 0).
    ``progress(done, total)`` is called after each photo decoded through the cache.
    """
    report = ScanReport()
    if not source.reads_files and min_colorfulness <= 0:
        report.kept = list(range(len(source)))
        return report
    cache_dir = resolve_scan_cache(cache_dir)
    identity = source.cache_identity if cache_dir is not None else None
    if identity is not None:
        _scan_cached(source, min_colorfulness, workers, cache_dir, identity, report, progress)
    else:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = pool.map(lambda i: _check(source, i, min_colorfulness), range(len(source)))
            for index, (status, value) in enumerate(results):
                if status == "ok":
                    report.kept.append(index)
                elif status == "unreadable":
                    report.unreadable[source.name(index)] = value
                else:
                    report.colorless[source.name(index)] = value
        report.decoded = len(source)
    if quiet:
        return report
    if report.unreadable:
        examples = "; ".join(list(report.unreadable.values())[:3])
        warnings.warn(
            f"skipped {len(report.unreadable)} unreadable image file(s) of {len(source)}, e.g. {examples}",
            stacklevel=2,
        )
    if report.colorless:
        examples = ", ".join(list(report.colorless)[:5])
        warnings.warn(
            f"skipped {len(report.colorless)} photo(s) of {len(source)} with colourfulness below "
            f"{min_colorfulness} (gray or nearly so), e.g. {examples}",
            stacklevel=2,
        )
    return report


def split_by_photo(indices: list[int], fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
    """Shuffle photo ``indices`` under ``seed`` and cut them into train/val/test.

    ``fractions`` are (train, val, test) and must sum to 1. A split with a non-zero
    fraction gets at least one photo, so even a handful of photos yields a validation set
    that training never sees.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions (train, val, test) must be >= 0 and sum to 1, got {list(fractions)}")
    n = len(indices)
    needed = sum(1 for f in fractions if f > 0)
    if n < needed:
        raise ValueError(f"{n} usable photo(s) cannot fill {needed} non-empty splits {list(fractions)}")
    counts = [max(1, round(f * n)) if f > 0 else 0 for f in fractions[1:]]
    train_count = n - sum(counts)
    if train_count < (1 if fractions[0] > 0 else 0):
        raise ValueError(f"{n} usable photo(s) leave none for training with fractions {list(fractions)}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [indices[i] for i in order]
    val_end = train_count + counts[0]
    return {
        "train": sorted(shuffled[:train_count]),
        "val": sorted(shuffled[train_count:val_end]),
        "test": sorted(shuffled[val_end:]),
    }
