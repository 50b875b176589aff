"""Time and peak memory of `colorize` on one 24-megapixel photo, on this machine's CPU.

    .venv/bin/python experiments/colorize_24mp/run.py                 # a fresh default skip_cae
    .venv/bin/python experiments/colorize_24mp/run.py --ckpt last.ckpt

Makes a 6000 x 4000 JPEG from a bundled photo (upscaled, with film grain so it does not
compress to nothing), then runs the real command line in a child process, once on a tiny
photo (start-up: imports and model) and once on the 24 MP one, for each output format.
Peak memory is the child's maximum resident set size (``wait4``), wall time is measured
around the process. The measuring process imports nothing heavy (Linux counts a parent's
memory at fork time in its child's peak): photo and checkpoint are made in a child too.
Weights change neither number, so without ``--ckpt`` a freshly initialised model of the
default config (``model=skip_cae``) is saved as a checkpoint.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def make_photo(path: Path, width: int = 6000, height: int = 4000) -> Path:
    import numpy as np
    import skimage.data
    from PIL import Image

    if not path.exists():
        base = Image.fromarray(skimage.data.coffee()).resize((width, height), Image.Resampling.BICUBIC)
        grain = np.random.default_rng(0).normal(0, 6, (height, width, 1))
        array = np.clip(np.asarray(base, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path, quality=92)
    return path


def default_checkpoint(path: Path) -> Path:
    import torch
    from omegaconf import OmegaConf

    sys.path.insert(0, str(ROOT))
    from colorization.compose import compose_config
    from colorization.train import build_model

    cfg = compose_config("train", [], path.parent)
    model = build_model(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    checkpoint = {"state_dict": model.state_dict(), "colorization_config": config, "inference": model.inference_spec()}
    torch.save(checkpoint, path)
    return path


def run_child(args: list[str]) -> tuple[float, float]:
    """-> (wall seconds, peak RSS in MiB) of ``python -m colorization.colorize ARGS``."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "colorization.colorize", *args], cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"colorize failed ({status}): {args}")
    return seconds, usage.ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=HERE / "output")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)  # the child that makes inputs
    args = parser.parse_args()
    big, tiny = args.work / "photo_24mp.jpg", args.work / "photo_tiny.jpg"
    ckpt = args.ckpt or args.work / "skip_cae_default.ckpt"
    if args.prepare:
        make_photo(big), make_photo(tiny, 64, 48)
        if not ckpt.exists():
            default_checkpoint(ckpt)
        return
    subprocess.run([sys.executable, __file__, "--prepare", "--work", str(args.work), "--ckpt", str(ckpt)], check=True)
    rows = []
    for fmt in ("jpg", "png"):
        common = ["--ckpt", str(ckpt), "-o", str(args.work / "colorized"), "--device", args.device]
        common += ["--format", fmt, "--overwrite"]
        start_s, start_mib = run_child([str(tiny), *common])
        big_s, big_mib = run_child([str(big), *common])
        rows.append((fmt, start_s, start_mib, big_s, big_mib))
    size = (6000, 4000)
    print(f"\n`colorize` on a {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.0f} MP) JPEG; device {args.device}, ")
    print(f"{os.cpu_count()} CPU cores ({platform.machine()}); checkpoint {ckpt.name}\n")
    print("| output | start-up only (64x48 photo) | 24 MP photo | peak RSS, start-up | peak RSS, 24 MP |")
    print("| --- | --- | --- | --- | --- |")
    for fmt, start_s, start_mib, big_s, big_mib in rows:
        print(f"| {fmt} | {start_s:.1f} s | {big_s:.1f} s | {start_mib:.0f} MiB | {big_mib:.0f} MiB |")


if __name__ == "__main__":
    main()
