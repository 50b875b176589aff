"""Colour quality against the number of revealed points: a hint model (``model.hints=true``)
and the same architecture trained without hints, as in Zhang et al. 2017's Figure 4.

    python experiments/hints/run.py --train        # train both (~2 x 13 min on 2 CPU cores), then score
    python experiments/hints/run.py --train hints  # train only the hint model again, then score
    python experiments/hints/run.py                 # score the checkpoints in experiments/hints/runs

1. ``--train``: ``train.py experiment=hints`` (U-Net over the pretrained EfficientNet-Lite0,
   96 px crops of landscapes/train, bsds500/train, caltech101/train, 4 epochs) into
   ``runs/hints``, and the same with ``model.hints=false`` into ``runs/plain``.
2. Scoring, on the hint model's **test split** (the photos neither model trained on: both runs
   split the same folders with the same seed), centre crops at the training size: for 0, 1,
   2, 5, 10, 20, 50 and 100 revealed points per photo, placed uniformly at random (seeded: the
   same points for both models), each revealing the mean true ab of a 3 x 3 patch (training
   draws 1 to 9 px patches), PSNR over all pixels of the split (RGB, data range 1) and mean
   CIEDE2000 of the RGB rebuilt from the true L and the predicted ab. The hint model is scored
   as ``colorize`` runs it (the revealed patches keep the given colour: at 100 points that is
   900 of 9,216 pixels, at 10 points 90); the plain model cannot see hints, so its line is flat.
3. ``output/results.json``, ``output/results.md`` and ``output/hints.png`` (the plot).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
POINTS = (0, 1, 2, 5, 10, 20, 50, 100)
PATCH = 3
SEED = 2017


def train(name: str, *overrides: str) -> float:
    start = time.perf_counter()
    command = [sys.executable, str(ROOT / "train.py"), "experiment=hints", *overrides,
               f"hydra.run.dir={HERE / 'runs' / name}"]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True)
    return time.perf_counter() - start


@torch.no_grad()
def score(ckpts: dict[str, Path], limit: int | None) -> dict[str, dict[int, dict[str, float]]]:
    from torchmetrics.image import PeakSignalNoiseRatio

    from colorization.checkpoint import datamodule_from_checkpoint, load_checkpoint
    from colorization.color import lab_norm_to_rgb
    from colorization.hints import points_hints
    from colorization.inference.model import load_colorizer
    from colorization.metrics import DeltaE2000

    checkpoint = load_checkpoint(ckpts["hints"])  # trained by this script: its photo folders are ours
    datamodule = datamodule_from_checkpoint(checkpoint, checkpoint["colorization_config"]["data"].get("root"))
    datamodule.setup("test")
    models = {name: load_colorizer(path, torch.device("cpu"))[0] for name, path in ckpts.items()}
    results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in ckpts}
    for points in POINTS:
        psnr = {name: PeakSignalNoiseRatio(data_range=1.0) for name in models}
        delta = {name: DeltaE2000() for name in models}
        generator = torch.Generator().manual_seed(SEED + points)
        seen = 0
        for batch in datamodule.device_batches("test", torch.device("cpu")):
            if limit is not None and seen >= limit:
                break
            hints = points_hints(batch["ab"], points, generator, patch=PATCH)
            for name, colorizer in models.items():
                ab = colorizer(batch["L"], hints=hints) if colorizer.takes_hints else colorizer(batch["L"])
                rgb = lab_norm_to_rgb(batch["L"], ab)
                psnr[name].update(rgb, batch["rgb"])
                delta[name].update(rgb, batch["rgb"])
            seen += len(batch["L"])
        for name in models:
            results[name][points] = {"psnr": float(psnr[name].compute()), "delta_e": float(delta[name].compute())}
        line = "  ".join(f"{n}: {r[points]['psnr']:.2f} dB, dE {r[points]['delta_e']:.2f}" for n, r in results.items())
        print(f"{points:3d} points  {line}  ({seen} photos)", flush=True)
    results["photos"] = seen  # type: ignore[assignment]
    return results


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = [max(p, 0.5) for p in POINTS]  # 0 points drawn at 0.5 on the log axis
    for name, label in (("hints", "hint model"), ("plain", "same net, no hints")):
        for axis, key in zip(axes, ("psnr", "delta_e"), strict=True):
            axis.plot(xs, [results[name][p][key] for p in POINTS], "o-", label=label)
    for axis, title in zip(axes, ("PSNR (dB, higher is better)", "dE2000 (lower is better)"), strict=True):
        axis.set_xscale("log")
        axis.set_xticks(xs, [str(p) for p in POINTS])
        axis.set_xlabel("revealed points per photo")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--train", nargs="*", choices=("hints", "plain"), default=None, help="train these models first (no name: both)"
    )
    parser.add_argument("--limit", type=int, default=None, help="score at most this many test photos")
    parser.add_argument("--out", type=Path, default=HERE / "output")
    args = parser.parse_args()
    seconds = {}
    if args.train is not None:
        for name in args.train or ("hints", "plain"):
            seconds[name] = train(name, *(() if name == "hints" else ("model.hints=false",)))
    ckpts = {name: HERE / "runs" / name / "checkpoints" / "last.ckpt" for name in ("hints", "plain")}
    missing = [str(p) for p in ckpts.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"hints: no checkpoint {missing[0]}; run with --train first")
    from colorization.io import write_text_atomic

    results = score(ckpts, args.limit)
    args.out.mkdir(parents=True, exist_ok=True)
    hints, plain = results["hints"], results["plain"]
    summary = {
        "gain_10_points_db": hints[10]["psnr"] - hints[0]["psnr"],
        "no_hint_gap_db": hints[0]["psnr"] - plain[0]["psnr"],
    }
    rows = ["| points | hint model PSNR | dE2000 | no-hint model PSNR | dE2000 |", "| --- | --- | --- | --- | --- |"]
    for p in POINTS:
        rows.append(
            f"| {p} | {hints[p]['psnr']:.2f} | {hints[p]['delta_e']:.2f} | "
            f"{plain[p]['psnr']:.2f} | {plain[p]['delta_e']:.2f} |"
        )
    text = "\n".join(
        [
            f"# Hints vs quality ({time.strftime('%Y-%m-%d %H:%M')})",
            "",
            f"`python experiments/hints/run.py{' --train ' + ' '.join(seconds) if seconds else ''}`; "
            f"{results['photos']} test photos, "
            f"{PATCH} x {PATCH} px patches, seed {SEED}."
            + (" Training: " + ", ".join(f"{n} {t / 60:.1f} min" for n, t in seconds.items()) if seconds else ""),
            "",
            *rows,
            "",
            f"10 points vs none (hint model): {summary['gain_10_points_db']:+.2f} dB (acceptance: >= +2 dB). "
            f"No hints, hint model vs no-hint model: {summary['no_hint_gap_db']:+.2f} dB (acceptance: within 0.5 dB).",
            "",
        ]
    )
    write_text_atomic(args.out / "results.md", text)
    record = {"results": results, "summary": summary, "train_seconds": seconds, "patch": PATCH, "seed": SEED}
    write_text_atomic(args.out / "results.json", json.dumps(record, indent=1))
    plot(results, args.out / "hints.png")
    print(text)


if __name__ == "__main__":
    main()
