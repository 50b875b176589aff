"""Data at ImageNet scale: time to the first training step with ``data=folder`` (cold, and with
the scan cache warm) and with ``data=shards``, the cost of packing, the training loader's
throughput from each, and per-photo costs projected to ImageNet-1k and Places365.

    .venv/bin/python experiments/scale/run.py             # 100,000 photos (work folder in /tmp)
    .venv/bin/python experiments/scale/run.py --quick     # 2,000 photos, fewer batches: a smoke run
    .venv/bin/python experiments/scale/run.py --photos 20000 --work /data/scale --pack-size 256

Steps (what each number means: ``experiments/scale/README.md``):

1. corpus: ``--photos`` JPEGs generated from the real photos of ``../shared/data``
   (landscapes, BSDS500 and Caltech-101 training photos: seeded random crops and flips,
   shorter side 150-200 px, quality 90, at most 1,000 per sub-folder), with every core; kept
   in ``--work`` and reused by a later run that asks for the same corpus;
2. time to the first training step: three fresh ``train.py`` processes (skip-CAE, 150 px
   crops, CPU), each timed from its launch to ``on_train_batch_start`` of batch 0, with the
   data set-up (``LabDataModule.prepare_data`` + ``setup``) timed inside the run
   (``experiments/scale/first_step.py``): (a) ``data=folder`` with an empty scan cache,
   (b) the same again (the cache now warm), (c) ``data=shards`` on the pack of step 3
   (which therefore runs first); 3 rounds of (a, b, c), medians (``--quick``: 1 round);
3. pack: ``colorization.data.pack.pack`` of the corpus at ``--pack-size`` px, from scratch
   (an empty scan cache);
4. loader: steady-state photos/s of ``LabDataModule.train_dataloader()`` at 150 px, batch 16,
   ``num_workers=auto``, the configured device augmentation (its matrices are drawn in the
   workers), for ``data=folder`` (warm scan cache) and ``data=shards``;
5. per-photo costs on ImageNet-sized photos (BSDS500 train + test, 481x321 JPEG): the data
   set-up with an empty and with a warm scan cache, encoding for the pack, packed bytes; and
   from them, on paper, ImageNet-1k's and Places365-Standard's set-up, pack time and size.

Results: ``experiments/scale/output/results.json`` (``--quick``: ``results_quick.json``) and
a Markdown summary on stdout (also ``results.md`` / ``results_quick.md`` next to it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED = ROOT.parent / "shared" / "data"
#: the photos the corpus is made from (sub-folders of ../shared/data)
CORPUS_SOURCES = ("landscapes/train", "bsds500/train", "caltech101/train")
#: ImageNet-sized photos (481x321 JPEG, ~75 KB; ImageNet's training photos average ~400x350, ~110 KB)
IMAGENET_SIZED = ("bsds500/train", "bsds500/test")
#: training photos of the data sets the README projects to
PROJECTED = {"ImageNet-1k": 1_281_167, "Places365-Standard": 1_803_460}
NODE_CORES = 32
#: a change to how the corpus is made: an older corpus is made again
CORPUS_VERSION = 1
CORPUS_SEED = 0
PER_FOLDER = 1000
MARKER = ".colorization-scale"
#: every train.py run: skip-CAE at 150 px on the CPU, one training step, nothing after it
TRAIN_ARGS = [
    "model=skip_cae",
    "data.image_size=150",
    "trainer.accelerator=cpu",
    "logger=csv",
    "callbacks.progress_bar=null",
    # one step: no validation at the end of the "epoch", so nothing for early stopping to read
    "callbacks.early_stopping=null",
    "test=false",
    "compare_gray=false",
    "++trainer.max_steps=1",
    "++callbacks.first_step._target_=experiments.scale.first_step.FirstStep",
]


def _q(path: Path) -> str:
    """A path as a Hydra override value (quoted where it holds more than plain characters)."""
    text = str(path)
    return text if re.fullmatch(r"[\w/.\-]+", text) else "'" + text + "'"


def _fresh(folder: Path) -> Path:
    """An empty folder (inside the work folder: removed first if it exists)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _size(nbytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes:.0f} B"


def _work_folder(work: Path) -> Path:
    """``work``, created and marked as this script's; a non-empty folder without the mark is
    refused (the script removes and rewrites sub-folders of it)."""
    work = work.expanduser().resolve()
    if work.exists() and any(work.iterdir()) and not (work / MARKER).is_file():
        raise SystemExit(f"--work {work} is not empty and was not made by this script: choose another folder")
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("work folder of experiments/scale/run.py: safe to delete\n")
    return work


# -- 1. corpus ------------------------------------------------------------------------------

_SOURCES: list[str] = []  # the source photos, in each generating process


def _init_generator(sources: list[str]) -> None:
    _SOURCES[:] = sources


def _photo_path(corpus: Path, i: int) -> Path:
    return corpus / f"{i // PER_FOLDER:04d}" / f"{i:07d}.jpg"


def _make_photos(task: tuple[str, int, int, int]) -> int:
    """Photos ``start..end-1`` of the corpus in ``folder``; returns the bytes written. Photo
    ``i`` depends on ``(seed, i)`` alone, whichever process makes it."""
    from PIL import Image, ImageOps

    folder, start, end, seed = task
    written = 0
    for i in range(start, end):
        rng = random.Random(seed * 1_000_003 + i)
        with Image.open(_SOURCES[rng.randrange(len(_SOURCES))]) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        w, h = image.size
        cw, ch = max(1, round(w * rng.uniform(0.7, 1.0))), max(1, round(h * rng.uniform(0.7, 1.0)))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        image = image.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        shorter = rng.randint(150, 200)
        scale = shorter / min(cw, ch)
        size = (max(shorter, round(cw * scale)), max(shorter, round(ch * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0 if scale < 0.5 else None)
        path = _photo_path(Path(folder), i)
        path.parent.mkdir(exist_ok=True)
        image.save(path, format="JPEG", quality=90)
        written += path.stat().st_size
    return written


def make_corpus(work: Path, photos: int) -> tuple[Path, dict]:
    """The corpus folder and its record (``work/corpus.json``), made unless ``work`` holds it."""
    import multiprocessing

    from colorization.data.sources import ImageFolder
    from colorization.io import write_text_atomic

    folder, record_file = work / "corpus", work / "corpus.json"
    sources = [str(p) for p in ImageFolder([str(SHARED / s) for s in CORPUS_SOURCES]).paths]
    wanted = {
        "version": CORPUS_VERSION,
        "photos": photos,
        "seed": CORPUS_SEED,
        "sources": list(CORPUS_SOURCES),
        "source_photos": len(sources),
    }
    if record_file.is_file() and folder.is_dir():
        record = json.loads(record_file.read_text())
        if {key: record.get(key) for key in wanted} == wanted:
            print(f"corpus: reusing {photos} photos in {folder} (made in {record['seconds']:.0f} s)", flush=True)
            return folder, {**record, "reused": True}
    record_file.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    partial = _fresh(work / "corpus.partial")
    cores = _cores()
    print(f"corpus: making {photos} photos from {len(sources)} in {folder} with {cores} processes ...", flush=True)
    step = 250  # divides PER_FOLDER: a task writes into one sub-folder
    tasks = [(str(partial), a, min(a + step, photos), CORPUS_SEED) for a in range(0, photos, step)]
    start = time.perf_counter()
    with multiprocessing.Pool(cores, initializer=_init_generator, initargs=(sources,)) as pool:
        written = sum(pool.imap_unordered(_make_photos, tasks))
    seconds = time.perf_counter() - start
    partial.rename(folder)
    record = {
        **wanted,
        "bytes": written,
        "folders": -(-photos // PER_FOLDER),
        "seconds": round(seconds, 1),
        "photos_per_second": round(photos / seconds, 1),
        "processes": cores,
    }
    write_text_atomic(record_file, json.dumps(record, indent=2) + "\n")
    print(f"corpus: {photos} photos, {_size(written)}, {seconds:.0f} s ({record['photos_per_second']} photos/s)")
    return folder, {**record, "reused": False}


# -- 2. time to the first training step --------------------------------------------------------


def time_to_first_step(case: str, overrides: list[str], work: Path, timeout: float) -> dict:
    """One fresh ``train.py`` process; times from its launch (taken here, just before it
    starts) and the phases :class:`first_step.FirstStep` records inside it."""
    from first_step import STAMPS_ENV  # this folder is on sys.path

    runs = work / "runs"
    runs.mkdir(exist_ok=True)
    run_dir, stamps_file, log_file = runs / case, runs / f"{case}.stamps.json", runs / f"{case}.log"
    shutil.rmtree(run_dir, ignore_errors=True)
    stamps_file.unlink(missing_ok=True)
    command = [sys.executable, "train.py", *TRAIN_ARGS, *overrides, f"hydra.run.dir={_q(run_dir)}"]
    # the default scan cache of anything that does not name one: inside the work folder
    env = {**os.environ, STAMPS_ENV: str(stamps_file), "COLORIZATION_CACHE": str(work / "cache_default")}
    print(f"first step, {case}: {shlex.join(command[1:])}", flush=True)
    with open(log_file, "w") as log:
        launched = time.time()
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        ended = time.time()
    if result.returncode != 0 or not stamps_file.is_file():
        tail = log_file.read_text()[-4000:]
        raise RuntimeError(f"train.py ({case}) exited with {result.returncode}; {log_file} ends:\n{tail}")
    s = json.loads(stamps_file.read_text())
    prepare = s["prepare_data_end"] - s["prepare_data_start"]
    setup = s["setup_end"] - s["setup_start"]
    row = {
        "command": shlex.join(command[1:]),
        "first_step_s": round(s["first_batch"] - launched, 2),
        "data_setup_s": round(prepare + setup, 3),
        "phases_s": {
            "launch_to_fit": round(s["callback_built"] - launched, 2),
            "prepare_data": round(prepare, 3),
            "setup": round(setup, 3),
            "sanity_check": round(s["sanity_check_end"] - s["sanity_check_start"], 2),
            "train_start_to_first_batch": round(s["first_batch"] - s["train_start"], 2),
        },
        "process_s": round(ended - launched, 1),
        "log": str(log_file),
    }
    print(f"first step, {case}: {row['first_step_s']:.1f} s (data set-up {row['data_setup_s']:.3f} s)", flush=True)
    return row


def first_step_cases(corpus: Path, packed: Path, work: Path, repeats: int, timeout: float) -> dict:
    """Cases (a) ``data=folder`` with an empty scan cache, (b) the same again (the cache now
    warm) and (c) ``data=shards``, ``repeats`` rounds of the three; medians, and every run."""
    cache = work / "cache_folder"
    folder = ["data=folder", f"data.root={_q(corpus)}", f"data.scan_cache={_q(cache)}"]
    cases = {"folder_cold": folder, "folder_warm": folder, "shards": ["data=shards", f"data.root={_q(packed)}"]}
    runs: dict[str, list[dict]] = {case: [] for case in cases}
    for r in range(repeats):
        _fresh(cache)
        for case, overrides in cases.items():
            runs[case].append(time_to_first_step(f"{case}_{r + 1}", overrides, work, timeout))
    rows = {}
    for case, rounds in runs.items():
        phases = {k: round(statistics.median(run["phases_s"][k] for run in rounds), 3) for k in rounds[0]["phases_s"]}
        rows[case] = {
            "first_step_s": round(statistics.median(run["first_step_s"] for run in rounds), 2),
            "data_setup_s": round(statistics.median(run["data_setup_s"] for run in rounds), 3),
            "phases_s": phases,
            "runs": rounds,
        }
    a = rows["folder_cold"]
    rows["ratios"] = {
        f"{case}_over_folder_cold": {
            "first_step": round(rows[case]["first_step_s"] / a["first_step_s"], 3),
            "data_setup": round(rows[case]["data_setup_s"] / a["data_setup_s"], 4),
        }
        for case in ("folder_warm", "shards")
    }
    return rows


# -- 3. pack ------------------------------------------------------------------------------------


def pack_corpus(corpus: Path, packed: Path, size: int, cache: Path) -> dict:
    from colorization.data.pack import pack

    shutil.rmtree(packed, ignore_errors=True)
    print(f"pack: {corpus} -> {packed} at {size} px (empty scan cache) ...", flush=True)
    start = time.perf_counter()
    manifest = pack([corpus], packed, size=size, scan_cache=_fresh(cache), verbose=False)
    seconds = time.perf_counter() - start
    photos = sum(manifest["counts"].values())
    row = {
        "photos": photos,
        "counts": manifest["counts"],
        "skipped": {k: v for k, v in manifest["skipped"].items() if k != "examples"},
        "size": size,
        "seconds": round(seconds, 1),
        "photos_per_second": round(photos / seconds, 1),
        "bytes": manifest["bytes"],
        "bytes_per_photo": round(manifest["bytes"] / max(photos, 1)),
    }
    print(f"pack: {photos} photos in {seconds:.1f} s ({row['photos_per_second']} photos/s), {_size(row['bytes'])}")
    return row


def shards_setup_seconds(packed: Path, work: Path, repeats: int) -> float:
    """Median seconds of ``prepare_data`` + ``setup`` of ``data=shards`` on ``packed``, in
    this process (LitData already imported)."""
    times = []
    for _ in range(repeats):
        module = data_module(["data=shards", f"data.root={_q(packed)}"], work)
        start = time.perf_counter()
        module.prepare_data()
        module.setup("fit")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# -- 4. loader throughput ---------------------------------------------------------------------


def data_module(overrides: list[str], work: Path):
    """``data`` of ``python train.py OVERRIDES``, built as train.py builds it."""
    import hydra

    from colorization.compose import compose_config

    cfg = compose_config("train", overrides, work / "compose")
    return hydra.utils.instantiate(cfg.data)


def _endless(loader):
    while True:
        yield from loader


def loader_throughput(cases: dict[str, tuple[list[str], dict]], work: Path, warmup: int, batches: int, window: int):
    """Photos/s of the training loader of each case (``name: (overrides, environment of its
    worker processes)``): all loaders started and warmed up (``warmup`` batches), then
    ``batches`` of each timed in windows of ``window``, the cases taking turns window by
    window (the machine is shared: a change in its load falls on every case alike). Before
    each window, the batches its idle workers prefetched are taken untimed."""
    from colorization.runtime import environment

    streams = {}
    for name, (overrides, env) in cases.items():
        module = data_module(overrides, work)
        start = time.perf_counter()
        module.prepare_data()
        module.setup("fit")
        setup_seconds = time.perf_counter() - start
        with environment(env):  # the workers start (fork) at the first batch
            batch_iter = _endless(module.train_dataloader())
            first = next(batch_iter)
        for _ in range(warmup - 1):
            next(batch_iter)
        streams[name] = (module, batch_iter, first, setup_seconds)
    rates: dict[str, list[float]] = {name: [] for name in cases}
    seconds = dict.fromkeys(cases, 0.0)
    for _ in range(max(1, batches // window)):
        for name, (module, batch_iter, _, _) in streams.items():
            for _ in range(2 * max(1, module.num_workers) + 1):  # prefetch_factor 2 per worker
                next(batch_iter)
            start = time.perf_counter()
            for _ in range(window):
                next(batch_iter)
            elapsed = time.perf_counter() - start
            rates[name].append(window * module.batch_size / elapsed)
            seconds[name] += elapsed
    rows = {}
    for name, (module, batch_iter, first, setup_seconds) in streams.items():
        images = first[0] if isinstance(first, (list, tuple)) else first
        timed = window * len(rates[name])
        rows[name] = {
            "photos_per_second": round(timed * module.batch_size / seconds[name], 1),
            "windows_photos_per_second": [round(r, 1) for r in rates[name]],
            "batches_timed": timed,
            "warmup_batches": warmup,
            "batch_size": module.batch_size,
            "num_workers": module.num_workers,
            "batch": f"{tuple(images.shape)} {images.dtype}"
            + (" + augmentation matrices" if isinstance(first, (list, tuple)) else ""),
            "augment": type(module.augment).__name__ if module.augment is not None else None,
            "train_photos": len(module.splits["train"]),
            "setup_s": round(setup_seconds, 2),
            "overrides": cases[name][0],
            "env": cases[name][1],
        }
        batch_iter.close()
        print(f"loader, {name}: {rows[name]['photos_per_second']} photos/s ({rows[name]['windows_photos_per_second']})")
    streams.clear()
    gc.collect()  # the loaders, and with them their persistent workers
    return rows


# -- 5. per-photo costs on ImageNet-sized photos, and projections ---------------------------------


def per_photo_costs(work: Path, pack_size: int, repeats: int) -> dict:
    """Data set-up (empty / warm scan cache), pack encoding and packed bytes per photo on
    BSDS500's 481x321 photos; medians of ``repeats``."""
    import multiprocessing

    from PIL import Image

    from colorization.data.pack import _Encoder, pack

    roots = [SHARED / r for r in IMAGENET_SIZED]
    base = work / "imagenet_sized"
    overrides = ["data=folder", f"data.root=[{','.join(_q(r) for r in roots)}]", "data.image_size=150"]

    def set_up(cache: Path):
        module = data_module([*overrides, f"data.scan_cache={_q(cache)}"], work)
        start = time.perf_counter()
        module.prepare_data()
        module.setup("fit")
        return time.perf_counter() - start, module

    cold, warm = [], []
    for _ in range(repeats):
        seconds, module = set_up(_fresh(base / "cache"))
        assert module.report.decoded == len(module.source), module.report
        cold.append(seconds)
    for _ in range(repeats):
        seconds, module = set_up(base / "cache")
        assert module.report.reused == len(module.source), module.report
        warm.append(seconds)
    source = module.source
    photos = len(source)
    paths = [str(p) for p in source.paths]
    sizes = []
    for path in paths:
        with Image.open(path) as image:
            sizes.append(image.size)

    cores = _cores()
    encoder = _Encoder(paths, [source.name(i) for i in range(photos)], pack_size, 90)
    encode = []
    with multiprocessing.Pool(cores) as pool:
        pool.map(encoder, range(cores))  # the processes started
        for _ in range(repeats):
            start = time.perf_counter()
            pool.map(encoder, range(photos), chunksize=max(1, photos // (4 * cores)))
            encode.append(time.perf_counter() - start)

    start = time.perf_counter()
    manifest = pack(roots, base / "packed", size=pack_size, scan_cache=base / "cache", overwrite=True, verbose=False)
    pack_seconds = time.perf_counter() - start
    packed = sum(manifest["counts"].values())
    row = {
        "folders": [str(r) for r in roots],
        "photos": photos,
        "mean_width": round(statistics.mean(w for w, _ in sizes)),
        "mean_height": round(statistics.mean(h for _, h in sizes)),
        "mean_file_bytes": round(statistics.mean(os.path.getsize(p) for p in paths)),
        "setup_cold_s": [round(s, 3) for s in cold],
        "setup_warm_s": [round(s, 4) for s in warm],
        "encode_s": [round(s, 3) for s in encode],
        "cold_setup_ms_per_photo": round(1000 * statistics.median(cold) / photos, 3),
        "warm_setup_ms_per_photo": round(1000 * statistics.median(warm) / photos, 4),
        "encode_ms_per_photo": round(1000 * statistics.median(encode) / photos, 3),
        "encode_processes": cores,
        "pack": {
            "size": pack_size,
            "photos": packed,
            "seconds": round(pack_seconds, 2),
            "photos_per_second": round(packed / pack_seconds, 1),
            "bytes": manifest["bytes"],
            "note": "warm scan cache; includes LitData's fixed start-up per split",
        },
        "packed_bytes_per_photo": round(manifest["bytes"] / max(packed, 1)),
        "shards_setup_s": round(shards_setup_seconds(base / "packed", work, max(3, repeats)), 4),
    }
    print(
        f"ImageNet-sized ({photos} photos, mean {row['mean_width']}x{row['mean_height']}): set-up "
        f"{row['cold_setup_ms_per_photo']} ms/photo cold, {row['warm_setup_ms_per_photo']} ms/photo warm; "
        f"encoding {row['encode_ms_per_photo']} ms/photo ({cores} processes); "
        f"{_size(row['packed_bytes_per_photo'])}/photo packed at {pack_size} px"
    )
    return row


def projections(costs: dict, shards: dict, cores: int) -> dict:
    """Seconds and bytes for each data set of :data:`PROJECTED`, from the per-photo costs
    (``shards``: the set-up of ``data=shards`` in train.py at the corpus's size and its
    growth per photo)."""
    cold, warm = costs["cold_setup_ms_per_photo"] / 1000, costs["warm_setup_ms_per_photo"] / 1000
    encode = costs["encode_ms_per_photo"] / 1000
    rows = {}
    for name, photos in PROJECTED.items():
        pack_here = photos * (cold + encode)  # the pack's scan (empty cache) and its encoding
        grown = shards["train_py_s"] + shards["per_photo_s"] * max(0, photos - shards["corpus_photos"])
        rows[name] = {
            "photos": photos,
            "setup_folder_empty_cache_s": round(photos * cold, 1),
            "setup_folder_warm_cache_s": round(photos * warm, 1),
            "setup_shards_s": round(grown, 2),
            "pack_here_s": round(pack_here, 1),
            f"pack_{NODE_CORES}_cores_s": round(pack_here * cores / NODE_CORES, 1),
            "shards_bytes": round(photos * costs["packed_bytes_per_photo"]),
        }
    return rows


# -- summary --------------------------------------------------------------------------------------


def summary(results: dict) -> str:
    corpus, first, pack_row = results["corpus"], results["first_step"], results["pack"]
    loader, costs, machine = results["loader"], results["imagenet_sized"], results["machine"]
    a = first["folder_cold"]
    repeats = len(a["runs"])
    lines = [
        f"## Data at scale: {corpus['photos']} photos, {machine['cores']} cores ({results['date']}; "
        f"load average {machine['load_average_start'][0]} at the start, {machine['load_average_end'][0]} at the end)",
        "",
        f"Corpus: {corpus['photos']} photos ({_size(corpus['bytes'])}, {corpus['folders']} folders), made at "
        f"{corpus['photos_per_second']} photos/s{' (reused)' if corpus['reused'] else ''}; "
        f"{pack_row['photos']} kept by the set-up scan.",
        "",
        f"| time to the first training step (fresh train.py, median of {repeats}) | to first step | ratio to (a) "
        "| data set-up | ratio to (a) | launch to fit | sanity check | train start to first batch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    labels = {
        "folder_cold": "(a) data=folder, empty scan cache",
        "folder_warm": "(b) data=folder, warm scan cache",
        "shards": "(c) data=shards",
    }
    for case, label in labels.items():
        row, p = first[case], first[case]["phases_s"]
        lines.append(
            f"| {label} | {row['first_step_s']:.1f} s | {row['first_step_s'] / a['first_step_s']:.2f} "
            f"| {row['data_setup_s']:.3f} s | {row['data_setup_s'] / a['data_setup_s']:.4f} "
            f"| {p['launch_to_fit']:.1f} s | {p['sanity_check']:.1f} s | {p['train_start_to_first_batch']:.1f} s |"
        )
    folder_rate = loader["folder"]["photos_per_second"]
    lines += [
        "",
        "| pack / training loader | value |",
        "| --- | --- |",
        f"| pack at {pack_row['size']} px, from scratch | {pack_row['seconds']:.1f} s, "
        f"{pack_row['photos_per_second']} photos/s |",
        f"| pack on disk (source corpus) | {_size(pack_row['bytes'])} ({_size(corpus['bytes'])}) |",
        f"| loader, data=folder (150 px, batch 16, {loader['folder']['num_workers']} workers) "
        f"| {folder_rate} photos/s |",
        f"| loader, data=shards | {loader['shards']['photos_per_second']} photos/s "
        f"({loader['shards_over_folder']:.2f}x folder) |",
    ]
    lines += [
        "",
        f"Per photo, ImageNet-sized ({costs['photos']} BSDS500 photos, mean {costs['mean_width']}x"
        f"{costs['mean_height']}, {_size(costs['mean_file_bytes'])}): data set-up "
        f"{costs['cold_setup_ms_per_photo']} ms (empty scan cache), {costs['warm_setup_ms_per_photo']} ms (warm); "
        "pack encoding "
        f"{costs['encode_ms_per_photo']} ms ({costs['encode_processes']} processes); "
        f"{_size(costs['packed_bytes_per_photo'])} packed at {costs['pack']['size']} px.",
        "",
        f"| projection | photos | set-up, folder, empty scan cache | set-up, folder, warm scan cache "
        f"| set-up, shards | pack, {machine['cores']} cores | pack, {NODE_CORES}-core node | shards on disk |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in results["projections"].items():
        lines.append(
            f"| {name} | {row['photos']:,} | {_duration(row['setup_folder_empty_cache_s'])} "
            f"| {_duration(row['setup_folder_warm_cache_s'])} | {_duration(row['setup_shards_s'])} "
            f"| {_duration(row['pack_here_s'])} | {_duration(row[f'pack_{NODE_CORES}_cores_s'])} "
            f"| {_size(row['shards_bytes'])} |"
        )
    lines.append(f"\nTotal time {results['total_seconds']:.0f} s.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=None, help="corpus size (default 100000; --quick 2000)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: TMPDIR/colorization-scale-N)")
    parser.add_argument("--pack-size", type=int, default=256, help="shorter side of packed photos, px")
    parser.add_argument("--quick", action="store_true", help="2,000 photos, fewer batches and repeats")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds allowed to one train.py run")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} is absent (this benchmark makes its photos from ../shared/data)")
        return
    missing = sorted(s for s in {*CORPUS_SOURCES, *IMAGENET_SIZED} if not (SHARED / s).is_dir())
    if missing:
        print(f"skipped: {', '.join(str(SHARED / s) for s in missing)} absent")
        return
    photos = args.photos or (2000 if args.quick else 100_000)
    warmup, batches, window, repeats = (5, 40, 20, 1) if args.quick else (20, 200, 50, 3)
    work = _work_folder(args.work or Path(tempfile.gettempdir()) / f"colorization-scale-{photos}")
    out = HERE / "output" / ("results_quick" if args.quick else "results")

    import lightning
    import litdata
    import PIL
    import torch

    from colorization.io import write_text_atomic

    cores = _cores()
    started = time.perf_counter()
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cores": cores,
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "litdata": litdata.__version__,
            "pillow": PIL.__version__,
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "photos": photos,
            "work": str(work),
            "pack_size": args.pack_size,
            "train_args": TRAIN_ARGS,
            "loader": {"warmup": warmup, "batches": batches, "window": window},
            "repeats": repeats,
        },
    }

    # 1. corpus; 3. its pack (case (c) reads it)
    corpus, results["corpus"] = make_corpus(work, photos)
    packed = work / "packed"
    results["pack"] = pack_corpus(corpus, packed, args.pack_size, work / "cache_pack")
    results["corpus"]["kept"] = results["pack"]["photos"]

    # 2. time to the first training step: (a), (b), (c)
    first = results["first_step"] = first_step_cases(corpus, packed, work, repeats, args.timeout)

    # 4. training loader throughput
    common = ["data.image_size=150", "data.batch_size=16", "data.num_workers=auto"]
    folder = ["data=folder", f"data.root={_q(corpus)}", f"data.scan_cache={_q(work / 'cache_folder')}", *common]
    shards = ["data=shards", f"data.root={_q(packed)}", *common]
    loader = results["loader"] = loader_throughput(
        {
            "folder": (folder, {}),
            "shards": (shards, {}),
        },
        work,
        warmup,
        batches,
        window,
    )
    loader["shards_over_folder"] = round(
        loader["shards"]["photos_per_second"] / loader["folder"]["photos_per_second"], 3
    )

    # 5. per-photo costs, projections
    costs = results["imagenet_sized"] = per_photo_costs(work, args.pack_size, repeats)
    corpus_shards_s = shards_setup_seconds(packed, work, max(3, repeats))
    kept = results["pack"]["photos"]
    results["shards_setup"] = shards_fit = {
        "train_py_s": first["shards"]["data_setup_s"],
        "corpus_photos": kept,
        "corpus_in_process_s": round(corpus_shards_s, 4),
        "small_photos": costs["pack"]["photos"],
        "small_in_process_s": costs["shards_setup_s"],
        "per_photo_s": max(0.0, (corpus_shards_s - costs["shards_setup_s"]) / max(1, kept - costs["pack"]["photos"])),
    }
    results["projections"] = projections(costs, shards_fit, cores)
    results["projection_method"] = (
        "photos x per-photo cost measured here on BSDS500 (481x321 JPEG): data=folder set-up with an empty scan "
        "cache (the first run; every run with data.scan_cache=null) and with a warm one (later runs); packing = "
        "set-up with an empty cache + encoding, on this machine's cores, and on a 32-core node in proportion to "
        "the cores (linear in cores, I/O not limiting); data=shards set-up = case (c)'s + its growth per photo "
        "(in-process set-up of the corpus's pack minus BSDS500's, per photo of difference); shards on disk = "
        "packed bytes per photo x photos"
    )

    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    text = summary(results)
    write_text_atomic(out.with_suffix(".json"), json.dumps(results, indent=2) + "\n")
    write_text_atomic(out.with_suffix(".md"), text + "\n")
    print()
    print(text)


if __name__ == "__main__":
    main()
