"""The set-up scan's cache: a rerun over an unchanged folder decodes nothing and reports the
same; changed, broken and deleted files, corrupt cache files and unwritable cache folders."""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import colorization.data.scan as scan_module
from colorization.data.datamodule import LabDataModule
from colorization.data.images import UnreadableImage
from colorization.data.scan import ScanReport, default_scan_cache, resolve_scan_cache, scan_source
from colorization.data.sources import ImageFolder, ImageSource

THRESHOLD = 5.0


class CountingFolder(ImageFolder):
    """An ImageFolder that records which files it decodes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.decoded: list[str] = []
        self._lock = threading.Lock()

    def load(self, index: int, draft_size: int | None = None) -> Image.Image:
        with self._lock:
            self.decoded.append(self.name(index))
        return super().load(index, draft_size)


@pytest.fixture
def folder(photo_dir: Path, photos: dict[str, np.ndarray]) -> Path:
    """The five real photos, one of them gray (colourless) and one file that is no image."""
    gray = np.repeat(np.asarray(Image.fromarray(photos["coffee"]).convert("L"))[..., None], 3, axis=-1)
    Image.fromarray(gray).save(photo_dir / "gray.png")
    (photo_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return photo_dir


def outcome(report: ScanReport) -> tuple:
    return report.kept, report.unreadable, report.colorless


def scan(
    root: Path, cache: Path | str | None, threshold: float = THRESHOLD
) -> tuple[ScanReport, CountingFolder, list[str]]:
    """Scan a fresh source over ``root``: (report, source, the scan cache's warnings)."""
    source = CountingFolder(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = scan_source(source, threshold, workers=2, quiet=True, cache_dir=cache)
    assert report.decoded == len(source.decoded), (report.decoded, source.decoded)
    assert report.reused + report.decoded == len(source)
    return report, source, [str(w.message) for w in caught if "scan cache" in str(w.message)]


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.json"))


def entries(cache: Path) -> list:
    (file,) = cache_files(cache)
    return json.loads(file.read_text())["entries"]


def rewrite(path: Path, data: bytes) -> None:
    """New bytes (another size) and a modification time 2 s later than before."""
    before = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))


def test_first_scan_decodes_every_photo_and_a_rerun_decodes_none(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    reference, source, _ = scan(folder, None)
    assert reference.unreadable and reference.colorless and reference.kept  # each kind is there

    first, source, warned = scan(folder, cache)
    assert not warned
    assert first.decoded == len(source) == 7 and first.reused == 0
    assert outcome(first) == outcome(reference)
    assert len(cache_files(cache)) == 1 and len(entries(cache)) == 7
    assert not [p for p in cache.iterdir() if p.suffix != ".json"]  # no temporary file left behind
    written = cache_files(cache)[0].stat().st_mtime_ns

    second, source, warned = scan(folder, cache)
    assert not warned
    assert second.decoded == 0 and source.decoded == [] and second.reused == 7
    assert outcome(second) == outcome(first)
    assert list(second.unreadable) == ["broken.jpg"] and list(second.colorless) == ["gray.png"]
    assert cache_files(cache)[0].stat().st_mtime_ns == written  # nothing changed: not rewritten


def test_the_cache_serves_every_colourfulness_threshold(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    warm, _, _ = scan(folder, cache, threshold=0.0)
    assert warm.decoded == 7 and not warm.colorless and "gray.png" not in warm.unreadable
    assert len(warm.kept) == 6  # every readable photo, the gray one too

    stricter, source, _ = scan(folder, cache, threshold=THRESHOLD)
    assert stricter.decoded == 0 and source.decoded == []
    assert outcome(stricter) == outcome(scan(folder, None, threshold=THRESHOLD)[0])
    assert list(stricter.colorless) == ["gray.png"]

    scores = [e[2] for e in entries(cache) if e[1] == "ok"]
    high = sorted(scores)[-2] + 1e-6  # above every score but the largest
    strictest, source, _ = scan(folder, cache, threshold=high)
    assert strictest.decoded == 0 and len(strictest.kept) == 1 and len(strictest.colorless) == 5
    assert outcome(strictest) == outcome(scan(folder, None, threshold=high)[0])


def test_a_rewritten_photo_alone_is_decoded_again(folder: Path, tmp_path: Path, photos) -> None:
    cache = tmp_path / "cache"
    first, _, _ = scan(folder, cache)
    target = folder / "sub" / "astronaut.jpg"
    assert "sub/astronaut.jpg" not in first.colorless
    gray = Image.fromarray(photos["astronaut"]).convert("L").convert("RGB")
    gray.save(target)  # the same photo in gray: another size, and it is no longer colourful
    before = target.stat()
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))

    second, source, _ = scan(folder, cache)
    assert source.decoded == ["sub/astronaut.jpg"] and second.reused == 6
    assert "sub/astronaut.jpg" in second.colorless
    assert outcome(second) == outcome(scan(folder, None)[0])
    assert scan(folder, cache)[0].decoded == 0  # the new check was cached
    assert len(entries(cache)) == 7  # the old entry replaced, not kept beside it


def test_only_the_modification_time_changing_is_enough_to_decode_again(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    scan(folder, cache)
    target = folder / "chelsea.png"
    before = target.stat()
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    second, source, _ = scan(folder, cache)
    assert source.decoded == ["chelsea.png"]


def test_a_photo_replaced_by_garbage_becomes_unreadable(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, _, _ = scan(folder, cache)
    assert "coffee.jpg" not in first.unreadable
    rewrite(folder / "coffee.jpg", os.urandom(1000))

    second, source, _ = scan(folder, cache)
    assert source.decoded == ["coffee.jpg"]
    assert sorted(second.unreadable) == ["broken.jpg", "coffee.jpg"]
    third, source, _ = scan(folder, cache)
    assert source.decoded == [] and sorted(third.unreadable) == ["broken.jpg", "coffee.jpg"]


def test_a_deleted_photo_drops_out_of_the_report_and_the_cache(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    scan(folder, cache)
    gone = folder / "rocket.png"
    assert any(e[0][0] == "rocket.png" for e in entries(cache))
    gone.unlink()

    second, source, _ = scan(folder, cache)
    assert second.decoded == 0 and second.reused == 6 == len(source)
    assert "rocket.png" not in source.paths and outcome(second) == outcome(scan(folder, None)[0])
    assert len(entries(cache)) == 6
    assert not any(e[0][0] == "rocket.png" for e in entries(cache))


def test_a_photo_that_vanishes_after_listing_is_unreadable_and_not_cached(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    source = CountingFolder(folder)
    assert len(source) == 7  # listed
    (folder / "chelsea.png").unlink()
    assert source.fingerprint(source.paths.index(folder / "chelsea.png")) is None
    report = scan_source(source, THRESHOLD, quiet=True, cache_dir=cache)
    assert "chelsea.png" in report.unreadable and report.decoded == 7
    assert len(entries(cache)) == 6


def _mangle(file: Path, how: str) -> None:
    text = file.read_text()
    data = json.loads(text)
    if how == "garbage bytes":
        file.write_bytes(b"\x00\xff\xfe garbage \x80")
    elif how == "truncated":
        file.write_text(text[: len(text) // 2])
    elif how == "empty":
        file.write_text("")
    elif how == "a list":
        file.write_text("[1, 2, 3]")
    elif how == "wrong version":
        file.write_text(json.dumps({**data, "version": 999}))
    elif how == "no entries":
        del data["entries"]
        file.write_text(json.dumps(data))
    elif how == "entries not a list":
        file.write_text(json.dumps({**data, "entries": {"a": 1}}))
    elif how == "a score that is text":
        data["entries"][0] = [data["entries"][0][0], "ok", "12.5"]
        file.write_text(json.dumps(data))
    elif how == "a score that is NaN":
        data["entries"][0] = [data["entries"][0][0], "ok", float("nan")]
        file.write_text(json.dumps(data))
    elif how == "an unknown status":
        data["entries"][0] = [data["entries"][0][0], "pickle", "x"]
        file.write_text(json.dumps(data))
    elif how == "a fingerprint of objects":
        data["entries"][0] = [[{"path": "x"}], "ok", 1.0]
        file.write_text(json.dumps(data))
    elif how == "deeply nested":
        file.write_text("[" * 100_000 + "]" * 100_000)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "garbage bytes",
        "truncated",
        "empty",
        "a list",
        "wrong version",
        "no entries",
        "entries not a list",
        "a score that is text",
        "a score that is NaN",
        "an unknown status",
        "a fingerprint of objects",
        "deeply nested",
    ],
)
def test_a_corrupt_cache_file_is_ignored_with_one_warning_and_rebuilt(folder: Path, tmp_path: Path, how) -> None:
    cache = tmp_path / "cache"
    first, _, _ = scan(folder, cache)
    (file,) = cache_files(cache)
    _mangle(file, how)

    second, source, warned = scan(folder, cache)
    assert len(warned) == 1 and str(file) in warned[0], warned
    assert second.decoded == 7 and second.reused == 0
    assert outcome(second) == outcome(first)
    third, source, warned = scan(folder, cache)
    assert not warned and third.decoded == 0  # rebuilt
    assert outcome(third) == outcome(first)


def test_an_unwritable_cache_folder_warns_once_and_the_scan_goes_on(folder: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    cache = blocker / "cache"  # cannot be created, not even by root

    for _ in range(2):
        report, source, warned = scan(folder, cache)
        assert len(warned) == 1 and str(cache) in warned[0], warned
        assert report.decoded == 7 and outcome(report) == outcome(scan(folder, None)[0])
    assert blocker.read_text() == "not a folder"


def test_without_a_cache_the_scan_is_as_before(folder: Path, tmp_path: Path, monkeypatch) -> None:
    def no_colorfulness(*args):
        raise AssertionError("colourfulness measured though min_colorfulness is 0")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLORIZATION_CACHE", str(tmp_path / "default"))
    monkeypatch.setattr(scan_module, "colorfulness", no_colorfulness)
    report, source, _ = scan(folder, None, threshold=0.0)
    assert report.decoded == 7 and report.reused == 0 and len(report.kept) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no cache written anywhere


def test_a_failure_of_the_system_rather_than_the_file_is_not_cached(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"

    class Denied(CountingFolder):
        def load(self, index: int, draft_size: int | None = None) -> Image.Image:
            if self.name(index) == "chelsea.png":
                try:
                    raise PermissionError(13, "Permission denied", str(self.paths[index]))
                except PermissionError as error:
                    raise UnreadableImage(f"{self.paths[index]}: cannot decode image ({error})") from error
            return super().load(index, draft_size)

    denied = scan_source(Denied(folder), THRESHOLD, quiet=True, cache_dir=cache)
    assert sorted(denied.unreadable) == ["broken.jpg", "chelsea.png"]
    second, source, _ = scan(folder, cache)
    assert source.decoded == ["chelsea.png"] and "chelsea.png" not in second.unreadable
    assert second.reused == 6  # the truly broken file's check was cached


def test_a_source_without_an_identity_is_never_cached(photos, tmp_path: Path) -> None:
    class InMemory(ImageSource):
        reads_files = True

        def __init__(self) -> None:
            self.images = [Image.fromarray(a) for a in photos.values()]
            self.loads = 0

        def __len__(self) -> int:
            return len(self.images)

        def load(self, index: int, draft_size: int | None = None) -> Image.Image:
            self.loads += 1
            return self.images[index]

    cache = tmp_path / "cache"
    for _ in range(2):
        source = InMemory()
        report = scan_source(source, THRESHOLD, quiet=True, cache_dir=cache)
        assert source.loads == 5 and report.decoded == 5 and report.reused == 0 and len(report.kept) == 5
    assert not cache.exists()


def test_fingerprints_and_identities_of_folders(folder: Path, tmp_path: Path, monkeypatch) -> None:
    source = ImageFolder(folder)
    index = source.paths.index(folder / "chelsea.png")
    stat = (folder / "chelsea.png").stat()
    assert source.fingerprint(index) == ("chelsea.png", stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns)
    assert ImageSource.fingerprint(source, index) is None and ImageSource().cache_identity is None

    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(other / "x" / "a.png")
    monkeypatch.chdir(folder.parent)
    relative = ImageFolder(folder.name)
    assert relative.cache_identity == source.cache_identity == ImageFolder([folder, folder]).cache_identity
    assert ImageFolder([folder, other]).cache_identity == ImageFolder([other, folder]).cache_identity
    assert (
        len({source.cache_identity, ImageFolder(other).cache_identity, ImageFolder([folder, other]).cache_identity})
        == 3
    )
    assert ImageFolder(folder, extensions=(".png",)).cache_identity != source.cache_identity

    cache = tmp_path / "cache"
    scan_source(source, THRESHOLD, quiet=True, cache_dir=cache)
    assert scan_source(relative, THRESHOLD, quiet=True, cache_dir=cache).decoded == 0  # one cache for both
    assert scan_source(ImageFolder(other), THRESHOLD, quiet=True, cache_dir=cache).decoded == 1
    assert len(cache_files(cache)) == 2


def test_the_default_cache_folder(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("COLORIZATION_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_scan_cache() == tmp_path / "home" / ".cache" / "colorization" / "scans"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_scan_cache() == tmp_path / "xdg" / "colorization" / "scans"
    monkeypatch.setenv("COLORIZATION_CACHE", str(tmp_path / "mine"))
    assert default_scan_cache() == tmp_path / "mine"
    assert resolve_scan_cache("auto") == tmp_path / "mine" and resolve_scan_cache(None) is None
    assert resolve_scan_cache(str(tmp_path / "there")) == tmp_path / "there"


def test_auto_scans_into_the_default_folder(folder: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLORIZATION_CACHE", str(tmp_path / "mine"))
    assert scan(folder, "auto")[0].decoded == 7
    assert len(cache_files(tmp_path / "mine")) == 1
    assert scan(folder, "auto")[0].decoded == 0


def test_a_score_that_is_not_a_number_is_not_cached(folder: Path, tmp_path: Path, monkeypatch) -> None:
    measure = scan_module.colorfulness

    def nan_for_chelsea(rgb: np.ndarray) -> float:
        score = measure(rgb)
        return float("nan") if abs(score - chelsea) < 1e-9 else score

    cache = tmp_path / "cache"
    scan(folder, cache)
    source = ImageFolder(folder)
    fingerprint = source.fingerprint(source.paths.index(folder / "chelsea.png"))
    chelsea = {tuple(e[0]): e[2] for e in entries(cache)}[fingerprint]
    cache = tmp_path / "another cache"
    monkeypatch.setattr(scan_module, "colorfulness", nan_for_chelsea)
    first, _, warned = scan(folder, cache)
    assert not warned and "chelsea.png" in first.colorless  # NaN >= 5 is false, as without a cache
    assert len(entries(cache)) == 6
    second, source, warned = scan(folder, cache)
    assert not warned and source.decoded == ["chelsea.png"]


def test_writing_the_cache_removes_temporary_files_a_killed_writer_left(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / ".abc.json.x1y2z3.999999999.partial"  # no such process
    stale.write_text("{")
    os.utime(stale, (0, 0))
    scan(folder, cache)
    assert not stale.exists() and len(cache_files(cache)) == 1


def test_the_datamodule_scans_through_its_cache(photo_dir, tmp_path):
    def dm(**kw):
        return LabDataModule(ImageFolder(photo_dir), image_size=32, num_workers=0, min_colorfulness=5.0, **kw)

    first = dm(scan_cache=str(tmp_path / "scans"))
    first.prepare_data(), first.setup()
    assert first.report.decoded == 5 and first.report.reused == 0
    second = dm(scan_cache=str(tmp_path / "scans"))
    second.setup()
    assert second.report.decoded == 0 and second.report.reused == 5 and second.splits == first.splits
    off = dm(scan_cache=None)
    off.prepare_data(), off.setup()
    assert off.report.decoded == 5 and off.splits == first.splits
