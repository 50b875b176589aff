"""The recommended recipe, ``experiment=natural_photos``: train it (or take a checkpoint), pick
its decoding on the validation split, colour photos it never saw, check the chroma for bands.

    python experiments/natural_photos/run.py --train                # ~43 min on 2 CPU cores, then ~5 min more
    python experiments/natural_photos/run.py --ckpt runs/recipe/checkpoints/last.ckpt

1. ``--train``: ``train.py experiment=natural_photos`` into ``experiments/natural_photos/runs/recipe``.
2. Decoding: the bins head's dE2000 and colourfulness on the *validation* split (in-domain,
   never the test sets) for every temperature and mix; the choice is the lowest dE2000 among
   decodings whose colourfulness is 90-110 % of the truth's (``cross_domain.choose_decoding``).
3. ``colorize --compare`` at full resolution on photos of bsds500/test, mcmaster18 and
   caltech101/test (never in training) -> ``grid.jpg`` (rows: photos; gray | recipe | truth).
4. Bands: blocky chroma shows as jumps in the predicted ab at the network's cell borders. On
   the chroma the net predicts (at 1/4 of the working size, before the bilinear upsampling
   that would smooth any jump away), for each photo: the mean |ab(y) - ab(y - 1)| between rows
   at multiples of 2, 4 and 8 cells (8, 16, 32 px: the encoder's strides) over that at all other
   rows, and the same along columns: about 1 without bands, well above 1 with them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "benchmark"))

PHOTOS = [  # never in training: other sets than the recipe's training folders
    "bsds500/test/100007.jpg",
    "bsds500/test/16068.jpg",
    "bsds500/test/196062.jpg",
    "mcmaster18/1.tif",
    "mcmaster18/8.tif",
    "caltech101/test/sunflower",
    "caltech101/test/butterfly",
]


def pick_photos(shared: Path, count: int = 6) -> list[Path]:
    found = []
    for entry in PHOTOS:
        path = shared / entry
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:1]
        elif path.is_file():
            found.append(path)
    return found[:count] if len(found) >= count else found


def band_ratio(ab: np.ndarray, periods=(4, 8, 16, 32)) -> dict[int, float]:
    """ab (2, H, W) -> {period: max over axes of mean |step| at multiples of period / elsewhere}."""
    ratios = {}
    for period in periods:
        worst = 0.0
        for axis in (1, 2):
            steps = np.abs(np.diff(ab, axis=axis)).sum(axis=0)  # (H-1, W) or (H, W-1)
            steps = steps.mean(axis=1) if axis == 1 else steps.mean(axis=0)  # per row / per column border
            index = np.arange(1, len(steps) + 1)
            on = steps[index % period == 0].mean()
            off = steps[index % period != 0].mean()
            worst = max(worst, float(on / max(off, 1e-9)))
        ratios[period] = round(worst, 2)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train the recipe first")
    parser.add_argument("--ckpt", type=Path, default=HERE / "runs" / "recipe" / "checkpoints" / "last.ckpt")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=HERE / "output")
    args = parser.parse_args()
    if args.train:
        command = [sys.executable, str(ROOT / "train.py"), "experiment=natural_photos",
                   f"hydra.run.dir={HERE / 'runs' / 'recipe'}"]  # fmt: skip
        subprocess.run(command, cwd=ROOT, check=True)
    import cross_domain

    from colorization.colorize import main as colorize
    from colorization.data.images import open_rgb
    from colorization.inference.fullres import working_input
    from colorization.inference.model import load_colorizer
    from colorization.outputs import BinsSpace

    sweep = cross_domain.decode_sweep(args.ckpt, cross_domain.own_data(args.ckpt, 160), "val")
    chosen = cross_domain.choose_decoding(sweep)
    print(f"decoding chosen on the validation split: {chosen}")
    photos = pick_photos(args.shared)
    out = args.out / "colorized"
    options = ["--temperature", str(chosen["temperature"]), "--mix", str(chosen["mix"]), "--compare", "--overwrite"]
    if colorize([*map(str, photos), "--ckpt", str(args.ckpt), "-o", str(out), *options]) != 0:
        raise SystemExit("natural_photos: colorize failed on a photo (see above)")
    rows = [np.asarray(Image.open(out / f"{p.stem}_compare.png").convert("RGB")) for p in photos]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    grid = args.out / "grid.jpg"
    Image.fromarray(np.concatenate(rows)).save(grid, quality=88)
    colorizer, size = load_colorizer(args.ckpt, torch.device("cpu"))
    colorizer.decoding(chosen["temperature"], chosen["mix"])
    bands = {}
    with torch.no_grad():
        for photo in photos:
            l_norm = working_input(np.asarray(open_rgb(photo)), size)[None]
            pred, space = colorizer.net(l_norm), colorizer.space
            # the chroma at the net's own resolution, before the bilinear upsampling that smooths jumps away
            small = space.decode(pred) if isinstance(space, BinsSpace) else space.to_ab(pred)
            cells = (2, 4, 8) if isinstance(space, BinsSpace) else (8, 16, 32)  # 8, 16, 32 px either way
            bands[photo.name] = band_ratio(small[0].numpy(), periods=cells)
    ckpt = args.ckpt.resolve()
    report = {
        "checkpoint": str(ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT) else ckpt),
        "chosen": chosen,
        "sweep": sweep,
        "bands": bands,
        "photos": [str(p.relative_to(args.shared)) for p in photos],
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({"chosen": chosen, "bands": bands}, indent=1))
    print(f"grid: {grid}")


if __name__ == "__main__":
    main()
