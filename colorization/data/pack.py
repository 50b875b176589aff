"""Pack folder trees of photos into streaming shards, once: ``python -m colorization.data.pack``.

    python -m colorization.data.pack ../shared/data/landscapes/train ~/photos OUT --size 256
    python train.py data=shards data.root=OUT

Every photo is read with the rules training uses (EXIF rotation, any mode to 8-bit sRGB,
colour profiles converted); unreadable and (almost) colourless photos are skipped and counted,
as ``data=folder`` does (the same scan, so the same scan cache). The kept photos are split by
photo into train / val / test with ``data=folder``'s rule, fractions and seed (the same
split ``data=folder`` would make of these folders), each resized so its shorter side is at
most ``--size`` px, stored as JPEG (``--quality``, ``--chroma``) in LitData chunks, in a seeded shuffled
order (so a chunk is a random sample of its split, and chunk-wise streaming still mixes
photos of every folder in each batch).

Why LitData: it is Lightning AI's format for exactly this (``litdata.optimize`` writes with
every core, ``StreamingDataset`` reads local folders or s3/gcs/azure URLs, downloading
chunks on demand into a bounded cache), it gives random access by index, which the
framework's resumable, DDP-sharded sampler needs, and it is one dependency on Lightning's
release train. WebDataset's tar shards are sequential-only; its reader would replace, not
feed, the sampler that makes resume exact.

Writing is atomic at the folder level: everything goes to ``OUT.partial`` first, the manifest
is written last, and the folder is renamed to ``OUT`` only when complete. An interrupted
pack leaves ``OUT.partial``, which no reader takes for a pack (no manifest, not ``OUT``);
running the same command again removes it and packs from the start. An existing pack is
replaced only with ``--overwrite`` (and stays readable until the new one is complete); a
folder that is not a pack is never touched.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from colorization.data.images import DataSourceError, UnreadableImage, open_rgb
from colorization.data.scan import scan_source, split_by_photo
from colorization.data.shards import FORMAT, MANIFEST, SPLITS, VERSION, read_index, read_manifest
from colorization.data.sources import ImageFolder
from colorization.io import process_running

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)  # conf/base/data.yaml's
DEFAULT_SEED = 42  # conf/config.yaml's
DEFAULT_MIN_COLORFULNESS = 5.0
#: JPEG chroma subsampling -> Pillow's ``subsampling``
CHROMA = {"4:2:0": 2, "4:4:4": 0}


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass
class _Encoder:
    """Run in LitData's worker processes: photo ``i`` -> ``{"name", "jpeg"}``, or ``None``
    (skipped) when it cannot be read any more (changed since the scan)."""

    paths: list[str]
    names: list[str]
    size: int
    quality: int
    chroma: str = "4:2:0"

    def __call__(self, i: int) -> dict | None:
        from colorization.data.datamodule import resize_shorter_side

        try:
            image = open_rgb(self.paths[i], draft_size=self.size)
        except UnreadableImage as error:
            print(f"skipped at packing: {error}", file=sys.stderr, flush=True)
            return None
        if min(image.size) > self.size:
            image = resize_shorter_side(image, self.size)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=self.quality, subsampling=CHROMA[self.chroma])
        return {"name": self.names[i], "jpeg": buffer.getvalue()}


class _Progress:
    """``progress(done, total)``: a line every 5 % (and at the end)."""

    def __init__(self, what: str) -> None:
        self.what, self.start, self.shown = what, time.perf_counter(), -1

    def __call__(self, done: int, total: int) -> None:
        step = done * 20 // max(total, 1)
        if step != self.shown:
            self.shown = step
            rate = done / max(time.perf_counter() - self.start, 1e-9)
            print(f"  {self.what} {done}/{total} ({rate:.0f} photos/s)", flush=True)


#: in ``OUT.partial`` while a pack writes it (the writer's process id): what makes a folder
#: one this program may delete or finish
MARKER = ".colorization-pack"
_PACK_ENTRIES = {MANIFEST, *SPLITS, MARKER}


@contextlib.contextmanager
def _litdata_scratch(folder: Path):
    """LitData's optimize empties its scratch folders (``$TMPDIR/chunks``, ``/data``) when it
    starts: give it ones inside this pack's own ``OUT.partial``, so two packs at once cannot
    delete each other's chunks; removed after."""
    from colorization.runtime import environment

    scratch = {
        "DATA_OPTIMIZER_CACHE_FOLDER": str(folder / "chunks"),
        "DATA_OPTIMIZER_DATA_CACHE_FOLDER": str(folder / "data"),
    }
    try:
        with environment(scratch):
            yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _complete(path: Path) -> bool:
    """Whether ``path`` holds a whole pack: its manifest and every index check."""
    try:
        manifest = read_manifest(path)
        for split in SPLITS:
            if manifest["counts"][split]:
                read_index(path, split, manifest["counts"][split])
        return True
    except DataSourceError:
        return False


def _is_pack(path: Path) -> bool:
    """A complete pack and nothing else (so ``--overwrite`` never replaces a folder of the
    user's that happens to hold a manifest)."""
    try:
        return _complete(path) and {entry.name for entry in path.iterdir()} <= _PACK_ENTRIES
    except OSError:
        return False


def _writer(work: Path) -> int | None:
    """The process id in ``work``'s marker, or ``None`` when ``work`` is not an unfinished pack."""
    try:
        return int((work / MARKER).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _same_request(manifest: dict, request: dict) -> bool:
    return all(manifest.get(key) == value for key, value in request.items())


def _swap_in(work: Path, out: Path) -> None:
    """Rename the complete ``work`` to ``out``; an old pack at ``out`` (or an empty folder)
    stays readable until then, and is removed after."""
    old = None
    if out.exists():
        if any(out.iterdir()):  # a pack (checked by the caller): aside, under a fresh name
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(old / out.name)
        else:
            out.rmdir()
    work.rename(out)
    (out / MARKER).unlink(missing_ok=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def pack(
    sources: list[str | Path],
    out: str | Path,
    size: int = 256,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = DEFAULT_SEED,
    min_colorfulness: float = DEFAULT_MIN_COLORFULNESS,
    quality: int = 90,
    chroma: str = "4:2:0",
    chunk_bytes: str = "64MB",
    workers: int | None = None,
    scan_cache: str | Path | None = "auto",
    overwrite: bool = False,
    verbose: bool = True,
) -> dict:
    """Pack the photos under ``sources`` into ``out`` (see the module docstring); returns the
    manifest. Raises :class:`DataSourceError` naming the folder for a source that holds no
    photos, an ``out`` that is a pack (without ``overwrite``) or not a pack at all."""

    out = Path(out).expanduser().absolute()
    work = out.with_name(out.name + ".partial")
    if size < 8:
        raise ValueError(f"--size must be at least 8 px, got {size}")
    if not 1 <= quality <= 100:
        raise ValueError(f"--quality must be 1..100, got {quality}")
    if chroma not in CHROMA:
        raise ValueError(f"--chroma must be one of {list(CHROMA)}, got {chroma!r}")
    say = print if verbose else (lambda *a, **k: None)
    for src in sources:  # never pack a folder into itself, nor read what a pack deletes
        where = Path(src).expanduser().resolve()
        for own in (out.resolve(), work.resolve()):
            if where == own or own in where.parents:
                raise DataSourceError(f"source {src} is (inside) the output {own}: choose another OUT")
    if out.exists():
        if _is_pack(out):
            if not overwrite:
                raise DataSourceError(f"{out} is already a pack; pass --overwrite to pack again, or choose another OUT")
        elif not out.is_dir() or any(out.iterdir()):
            raise DataSourceError(f"{out} exists and is not a pack: it is left alone; choose another OUT")
    request = {
        "size": size, "quality": quality, "chroma": chroma, "fractions": list(fractions), "seed": seed,
        "min_colorfulness": min_colorfulness, "sources": [str(Path(s).expanduser().resolve()) for s in sources],
    }  # fmt: skip
    if work.exists():
        writer = _writer(work)
        if writer is None:
            raise DataSourceError(
                f"{work} exists and is not an unfinished pack (no {MARKER} in it): it is left alone; move it away"
            )
        if writer != os.getpid() and process_running(writer):
            raise DataSourceError(f"{work} is being written by another pack (process {writer}); wait for it to end")
        if not out.exists() and _complete(work) and _same_request(read_manifest(work), request):
            _swap_in(work, out)  # killed between finishing and renaming: finish the rename
            say(f"finished the interrupted pack's last step: {work} -> {out}", flush=True)
            return read_manifest(out)
        say(f"removing {work}, left by an interrupted pack; packing from the start", flush=True)
        shutil.rmtree(work)
    try:  # claimed at once (an atomic mkdir), so two packs into one OUT cannot both run
        work.mkdir(parents=True)
    except FileExistsError:
        raise DataSourceError(f"{work} is being written by another pack; wait for it to end") from None
    (work / MARKER).write_text(f"{os.getpid()}\nan unfinished pack of colorization.data.pack: safe to delete\n")
    try:
        manifest = _pack_into(work, sources, request, chunk_bytes, workers or _cores(), scan_cache, say, verbose)
    except (DataSourceError, ValueError):
        shutil.rmtree(work, ignore_errors=True)  # nothing worth keeping: a clear error instead
        raise
    _swap_in(work, out)
    counts = manifest["counts"]
    say(
        f"packed {sum(counts.values())} photos ({', '.join(f'{s} {counts[s]}' for s in SPLITS)}) into {out}: "
        f"{manifest['bytes'] / 2**20:.1f} MiB, {manifest['seconds']:.1f} s, {manifest['photos_per_second']} photos/s",
        flush=True,
    )
    return manifest


def _pack_into(
    work: Path, sources: list, request: dict, chunk_bytes: str, workers: int, scan_cache, say, verbose: bool
) -> dict:
    """Scan, split and encode into the claimed folder ``work``; returns the manifest, written last."""
    import litdata

    size, quality, chroma = request["size"], request["quality"], request["chroma"]
    fractions, seed, min_colorfulness = tuple(request["fractions"]), request["seed"], request["min_colorfulness"]
    start = time.perf_counter()
    source = ImageFolder([str(s) for s in sources] if len(sources) > 1 else str(sources[0]))
    say(f"scanning {len(source)} files under {', '.join(map(str, sources))} ...", flush=True)
    cache = None if scan_cache in (None, "none", "null") else scan_cache
    report = scan_source(
        source,
        min_colorfulness,
        workers=2 * workers,
        cache_dir=cache,
        progress=_Progress("scanned") if verbose else None,
    )
    try:
        splits = split_by_photo(report.kept, fractions, seed)
    except ValueError as error:
        raise DataSourceError(f"too few usable photos under {source.root}: {report.summary()}; {error}") from None
    scan_seconds = time.perf_counter() - start
    say(f"{report.summary()} ({scan_seconds:.1f} s); packing at {size} px with {workers} worker(s)", flush=True)

    paths = [str(p) for p in source.paths]
    names = [source.name(i) for i in range(len(source))]
    encoder = _Encoder(paths, names, size, quality, chroma)
    counts = {}
    for k, split in enumerate(SPLITS):
        indices = splits[split]
        if not indices:
            counts[split] = 0
            continue
        order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed * 31 + k)).tolist()
        with _litdata_scratch(work / ".litdata"):
            litdata.optimize(
                fn=encoder,
                inputs=[indices[i] for i in order],
                output_dir=str(work / split),
                chunk_bytes=chunk_bytes,
                num_workers=min(workers, len(indices)),
                reorder_files=False,
                start_method="fork" if sys.platform.startswith("linux") else None,
                verbose=verbose,
            )
        index = json.loads((work / split / "index.json").read_text())
        counts[split] = sum(int(c["chunk_size"]) for c in index["chunks"])
        read_index(work, split, counts[split])  # what a reader will check
    seconds = time.perf_counter() - start
    packed = sum(counts.values())
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "counts": counts,
        **request,
        "scanned": len(source),
        "skipped": {
            "unreadable": len(report.unreadable),
            "colorless": len(report.colorless),
            "failed_at_packing": len(report.kept) - packed,
            "examples": list(report.unreadable)[:10] + list(report.colorless)[:10],
        },
        "bytes": sum(f.stat().st_size for f in work.rglob("*.bin")),
        "seconds": round(seconds, 1),
        "photos_per_second": round(packed / max(seconds, 1e-9), 1),
        "litdata": litdata.__version__,
    }
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")  # last: now the pack is whole
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m colorization.data.pack",
        description="Pack folder trees of photos into LitData shards for data=shards data.root=OUT.",
    )
    parser.add_argument("paths", nargs="+", metavar="SRC... OUT", help="photo folders, then the output folder")
    parser.add_argument("--size", type=int, default=256, help="shorter side, px (larger photos are downscaled)")
    parser.add_argument(
        "--fractions", type=float, nargs=3, default=list(DEFAULT_FRACTIONS), metavar=("TRAIN", "VAL", "TEST")
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="fixes the split (data=folder's seed)")
    parser.add_argument("--min-colorfulness", type=float, default=DEFAULT_MIN_COLORFULNESS)
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the stored photos")
    parser.add_argument(
        "--chroma", choices=list(CHROMA), default="4:2:0",
        help="JPEG chroma subsampling: 4:2:0 (default: as most photos are stored; smaller, decodes faster) "
        "or 4:4:4 (full-resolution colour, ~10%% slower to decode)",
    )  # fmt: skip
    parser.add_argument("--chunk-bytes", default="64MB", help="size of one shard file")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    parser.add_argument("--scan-cache", default="auto", help="scan cache folder, auto or none")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing pack at OUT")
    args = parser.parse_args(argv)
    if len(args.paths) < 2:
        parser.error("give at least one photo folder and the output folder: SRC... OUT")
    try:
        pack(
            args.paths[:-1], args.paths[-1], size=args.size, fractions=tuple(args.fractions), seed=args.seed,
            min_colorfulness=args.min_colorfulness, quality=args.quality, chroma=args.chroma,
            chunk_bytes=args.chunk_bytes,
            workers=args.workers, scan_cache=args.scan_cache, overwrite=args.overwrite,
        )  # fmt: skip
    except (DataSourceError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
