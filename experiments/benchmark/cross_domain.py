"""Cross-domain benchmark (``run.py --full``): every colorizer and baseline trained at one
budget on the natural-photos training set (landscapes, bsds500/train, caltech101/train), then
scored by ``eval.py`` on the in-domain test split and on three sets of another kind it never
saw (bsds500/test, mcmaster18, caltech101/test).

    python experiments/benchmark/run.py --full                       # ../shared/data beside the checkout
    python experiments/benchmark/run.py --full --steps 1000 --recipe logs/.../last.ckpt
    python experiments/benchmark/run.py --tune-decoding CKPT         # pick a bins model's T and mix on val

Writes into ``--out`` (default ``experiments/benchmark/output/full``): ``results.md`` /
``results.json`` (one table per set), ``grid_<set>.png`` (rows: photos; columns: gray | each
model | truth), ``tradeoff_<set>.png`` (dE2000 against colourfulness as a share of the truth's,
one point per row, the bins heads across decoding temperatures and mixes), and the summaries of
the two studies (``experiments/rebalance/benchmark_summary.md``,
``experiments/pretrained/benchmark_summary.md``). Rows whose
run folder holds a finished run (``last.ckpt`` and ``train_seconds.txt``) are not trained again
(delete the folder to retrain); a run killed part-way is trained again from the start.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from colorization.checkpoint import load_checkpoint, model_from_checkpoint
from colorization.color import gray_rgb, lab_norm_to_rgb
from colorization.compose import PROJECT_ROOT, compose_config
from colorization.evaluate import evaluate
from colorization.io import save_image_atomic, write_text_atomic
from colorization.metrics import Colorfulness, DeltaE2000
from colorization.outputs import BinsSpace, output_space
from colorization.train import train

HERE = Path(__file__).resolve().parent
SHARED = PROJECT_ROOT.parent / "shared" / "data"
TRAIN_ROOTS = ["landscapes/train", "bsds500/train", "caltech101/train"]
FRACTIONS = "[0.9,0.05,0.05]"
UNSEEN = {"bsds500/test": "bsds500/test", "mcmaster18": "mcmaster18", "caltech101/test": "caltech101/test"}
UNET = ["model=unet"]
BINS = [*UNET, "model.output=bins", "model.mix=0.0"]
#: row -> train.py overrides (on top of the training data); "recipe" is experiment=natural_photos
ROWS: dict[str, list[str]] = {
    "gray": ["model=gray"],
    "mean_ab": ["model=mean_ab"],
    "skip_cae": ["model=skip_cae"],
    "fusion": ["model=fusion"],
    "unet (random init)": ["model=unet_scratch"],
    "unet (pretrained)": UNET,
    "unet + bins (no rebalancing, lambda 1)": [*BINS, "model.rebalance_lambda=1.0"],
    "unet + bins (lambda 0.5)": [*BINS, "model.rebalance_lambda=0.5"],
    "unet + bins (lambda 0.5) + global context": [*BINS, "model.rebalance_lambda=0.5", "model.net.global_context=true"],
    "unet + colourfulness objective": [*UNET, "model.colorfulness_weight=0.5"],
    # the objective with its spread as mean absolute deviation (no streaks along edges)
    "unet + colourfulness objective (mad)": [*UNET, "model.colorfulness_weight=0.5", "model.colorfulness_spread=mad"],
    "recipe": ["experiment=natural_photos"],
}
FIXED = {"gray", "mean_ab"}  # nothing to train by gradient: one step (mean_ab is fitted in closed form)
TEMPERATURES = [1.0, 0.7, 0.5, 0.38, 0.25, 0.1]
MIXES = [0.0, 0.25, 0.5, 0.75]
COLUMNS = [("psnr", "PSNR"), ("ssim", "SSIM"), ("delta_e", "dE2000"), ("colorfulness", "colourf."),
           ("colorfulness_true", "truth's"), ("share", "share %"), ("fid_effnet_lite0", "FID (EffNet-L0)")]  # fmt: skip


def step_budget(steps: int, cpu: bool) -> list[str]:
    """train.py overrides for a run of exactly ``steps`` steps, quietly, without test or gray
    comparison (run.py's quick mode uses them too)."""
    return [
        f"+trainer.max_steps={steps}",
        "trainer.max_epochs=-1",
        "scheduler=none",  # a step budget: the epoch-based cosine decay would need max_epochs
        "trainer.accelerator=cpu" if cpu else "trainer.accelerator=auto",
        "callbacks.progress_bar=null",
        "callbacks.early_stopping=null",
        "test=false",
        "compare_gray=false",
    ]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").replace("__", "_")


def train_data(args: argparse.Namespace) -> list[str]:
    roots = ",".join(str(args.shared / r) for r in TRAIN_ROOTS)
    return ["data=folder", f"data.root=[{roots}]", f"data.fractions={FRACTIONS}", f"seed={args.seed}"]


def eval_sets(args: argparse.Namespace) -> dict[str, list[str]]:
    """Set name -> eval.py data overrides (all scored at ``--eval-size`` px centre crops)."""
    size = [f"data.image_size={args.eval_size}", "data.batch_size=16"]
    sets = {"in-domain test": [*train_data(args), *size]}
    for name, folder in UNSEEN.items():  # every photo of the set is a test photo
        sets[name] = ["data=folder", f"data.root={args.shared / folder}", "data.fractions=[0,0,1]", *size]
    return sets


def train_row(name: str, args: argparse.Namespace) -> tuple[Path, float | None]:
    run = args.out / "runs" / slug(name)
    ckpt = run / "checkpoints" / "last.ckpt"
    if ckpt.is_file() and (run / "train_seconds.txt").is_file():  # trained to the end before
        return ckpt, None
    if run.is_dir():  # a run killed part-way (its last.ckpt is mid-training): train it again
        shutil.rmtree(run)
    fixed = ["+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1"] if name in FIXED else []
    overrides = [
        *fixed,
        *train_data(args),
        *ROWS[name],
        f"data.image_size={args.image_size}",
        "data.batch_size=16",
        *step_budget(args.steps, args.cpu),
    ]
    if name == "recipe":  # the recipe's own data and model, at the benchmark's budget
        overrides = [o for o in overrides if not o.startswith(("data=", "data.root", "data.fractions"))]
    start = time.perf_counter()
    train(compose_config("train", overrides, run))
    seconds = time.perf_counter() - start
    write_text_atomic(run / "train_seconds.txt", f"{seconds:.1f}\n")
    return ckpt, seconds


def parameters(ckpt: Path) -> tuple[int, int]:
    model = model_from_checkpoint(load_checkpoint(ckpt))
    total = sum(p.numel() for p in model.net.parameters())
    buffers_only = sum(p.numel() for p in model.net.parameters() if not p.requires_grad)
    return total, total - buffers_only


def score(ckpt: Path, name: str, set_name: str, overrides: list[str], args: argparse.Namespace) -> dict:
    out = args.out / "eval" / slug(name) / slug(set_name)
    metrics = evaluate(compose_config("eval", [f"ckpt_path={ckpt}", *overrides, "split=test"], out))
    metrics["share"] = 100 * metrics["colorfulness"] / max(metrics["colorfulness_true"], 1e-9)
    return metrics


def datamodule_for(overrides: list[str], args: argparse.Namespace):
    from hydra.utils import instantiate

    datamodule = instantiate(compose_config("train", overrides, args.out / "scratch").data)
    datamodule.setup("test")
    return datamodule


def own_data(ckpt: Path, size: int):
    """The data a checkpoint was trained on (its stored config: same folders, fractions and seed,
    so its validation split is the one it never trained on), cropped at ``size`` px."""
    from colorization.checkpoint import datamodule_from_checkpoint

    checkpoint = load_checkpoint(ckpt)  # trained by this benchmark: its photo folders are ours
    datamodule = datamodule_from_checkpoint(checkpoint, checkpoint["colorization_config"]["data"].get("root"))
    datamodule.image_size = datamodule.resize = size
    datamodule.setup("fit")
    return datamodule


@torch.no_grad()
def decode_sweep(ckpt: Path, datamodule, split: str, temperatures=TEMPERATURES, mixes=MIXES) -> dict:
    """A bins checkpoint's dE2000 and colourfulness (and the truth's) on ``split`` for every
    decoding (temperature, mix): the net runs once per batch."""
    model = model_from_checkpoint(load_checkpoint(ckpt)).eval()
    if not isinstance(model.space, BinsSpace):
        raise ValueError(f"{ckpt}: not a bins model")
    keys = [(t, m) for m in mixes for t in temperatures]
    delta = {k: DeltaE2000() for k in keys}
    colour = {k: Colorfulness() for k in keys}
    truth = Colorfulness("target")
    for batch in datamodule.device_batches(split, torch.device("cpu")):
        pred = model(batch["L"])
        truth.update(batch["rgb"], batch["rgb"])
        for t, m in keys:
            rgb = lab_norm_to_rgb(batch["L"], output_space("bins", t, m).to_ab(pred, batch["L"].shape[-2:]))
            delta[t, m].update(rgb, batch["rgb"])
            colour[t, m].update(rgb, batch["rgb"])
    true = float(truth.compute())
    return {
        "truth_colorfulness": true,
        "points": [
            {
                "temperature": t,
                "mix": m,
                "delta_e": float(delta[t, m].compute()),
                "share": 100 * float(colour[t, m].compute()) / true,
            }  # fmt: skip
            for t, m in keys
        ],
    }


def choose_decoding(sweep: dict, low: float = 90.0, high: float = 110.0) -> dict:
    """The decoding with the lowest dE2000 among those whose colourfulness is ``low``..``high``
    % of the truth's (the trade-off plot's best corner); the closest share if none is."""
    inside = [p for p in sweep["points"] if low <= p["share"] <= high]
    if inside:
        return min(inside, key=lambda p: p["delta_e"])
    return min(sweep["points"], key=lambda p: abs(p["share"] - 100))


@torch.no_grad()
def figure(checkpoints: dict[str, Path], datamodule, out: Path, decodings: dict, n: int = 4) -> Path:
    """Rows: the first ``n`` test photos; columns: gray | each model | truth, labelled (bins
    models decoded as ``decodings[name]`` = (temperature, mix) where given)."""
    raw = next(iter(datamodule.test_dataloader()))[:n]
    batch = datamodule.device_batch(raw, torch.device("cpu"))
    columns = [("gray", gray_rgb(batch["L"]))]
    for name, path in checkpoints.items():
        if name == "gray":  # the first column already
            continue
        model = model_from_checkpoint(load_checkpoint(path)).eval()
        if name in decodings:
            model.set_decoding(*decodings[name])
        columns.append((name, model.to_rgb(batch["L"], model.model_step(batch)[1])))
    columns.append(("truth", batch["rgb"]))
    size, pad, label = batch["rgb"].shape[-1], 4, 28
    width = len(columns) * (size + pad)
    canvas = Image.new("RGB", (width, label + len(raw) * (size + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, (name, images) in enumerate(columns):
        x = c * (size + pad)
        for i, line in enumerate([name[: size // 6], name[size // 6 : size // 3]]):
            draw.text((x + 2, 2 + 12 * i), line, fill="black")
        for r in range(len(raw)):
            tile = (images[r].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            canvas.paste(Image.fromarray(tile), (x, label + r * (size + pad)))
    return save_image_atomic(np.asarray(canvas), out)


def tradeoff_plot(set_name: str, rows: dict, sweeps: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for name, sweep in sweeps.items():
        for mix in MIXES:
            points = [p for p in sweep["points"] if p["mix"] == mix]
            ax.plot([p["share"] for p in points], [p["delta_e"] for p in points], "-", marker=".", alpha=0.6,
                    label=f"{name}: T {TEMPERATURES[0]}..{TEMPERATURES[-1]}, mix {mix}")  # fmt: skip
    for name, row in rows.items():
        metrics = row["sets"][set_name]
        marker = "s" if name == "gray" else ("*" if name == "recipe" else "o")
        ax.scatter(metrics["share"], metrics["delta_e"], marker=marker, s=90 if marker == "*" else 40, zorder=3)
        ax.annotate(name, (metrics["share"], metrics["delta_e"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.scatter([100], [0], marker="X", color="black", s=60, zorder=3)
    ax.annotate("truth", (100, 0), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.axvspan(80, 120, color="green", alpha=0.06)
    ax.set_xlabel("colourfulness, % of the truth's")
    ax.set_ylabel("dE2000 (lower is better)")
    ax.set_title(f"{set_name}: vivid vs faithful (bottom right of gray and near 100 % is best)")
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def memory_probe(output: str, size: int = 256, batch: int = 16) -> float:
    """Peak resident memory (MiB) of one training step of the unet (``ab`` or ``bins``) on a
    ``batch`` of ``size`` px crops, above the process before the step (run in a fresh process)."""
    from colorization.models import EffNetUNet

    net = EffNetUNet(output, pretrained=False)
    x = torch.randn(batch, 1, size, size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    net(x).float().square().mean().backward()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def memory_report() -> dict[str, float]:
    found = {}
    for output in ("ab", "bins"):
        code = (
            f"import sys; sys.path.insert(0, {str(HERE)!r}); import cross_domain; "
            f"print(cross_domain.memory_probe({output!r}))"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT)
        found[output] = float(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else float("nan")
    return found


def tables(rows: dict, sets: list[str], args: argparse.Namespace, memory: dict) -> str:
    text = [
        "# Cross-domain benchmark\n",
        f"Training set: {', '.join(TRAIN_ROOTS)} of ../shared/data (6,854 photos, 6,706 with colour; split by photo "
        f"{FRACTIONS}, seed {args.seed}). Budget per model: {args.steps} steps of batch 16 at {args.image_size} px "
        "crops on this machine's CPU, Adam 1e-3 without a schedule (gray / mean_ab: none / closed form); the recipe "
        "row is the recipe's own run (8 epochs, cosine schedule), decoded as chosen on the validation split. "
        "Scored by eval.py on "
        f"{args.eval_size} px centre crops (the whole shorter side). 'share %': colourfulness as a share of the "
        "truth's. FID on EfficientNet-Lite0 features (not comparable with Inception FIDs). Params: all / trained.\n",
        "Memory of one training step, 256 px, batch 16 (peak RSS above the idle process, CPU): unet ab "
        f"{memory.get('ab', float('nan')):.0f} MiB, unet bins (at 1/4 resolution) "
        f"{memory.get('bins', float('nan')):.0f} MiB.\n",
    ]
    for set_name in sets:
        head = "| model | " + " | ".join(c[1] for c in COLUMNS) + " | train s | params |"
        lines = [f"\n## {set_name}\n", head, "|" + " --- |" * (len(COLUMNS) + 3)]
        for name, row in rows.items():
            m = row["sets"][set_name]
            values = " | ".join(f"{m[c]:.3f}" if c in ("ssim",) else f"{m[c]:.2f}" for c, _ in COLUMNS)
            lines.append(f"| {name} | {values} | {row['seconds']} | {row['params']} |")
        text.append("\n".join(lines) + "\n")
    return "\n".join(text)


def study_summary(title: str, rows: dict, names: list[str], sets: list[str], out: Path, note: str) -> None:
    lines = [f"# {title}\n", note + "\n", "| set | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
    for set_name in sets:
        for metric, label in (("delta_e", "dE2000"), ("share", "colourfulness % of truth"), ("psnr", "PSNR")):
            values = " | ".join(f"{rows[n]['sets'][set_name][metric]:.2f}" for n in names)
            lines.append(f"| {set_name}: {label} | {values} |")
    write_text_atomic(out / "benchmark_summary.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the photo sets (default ../shared/data)")
    parser.add_argument("--steps", type=int, default=500, help="training steps per model (batch 16)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--eval-size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), help="a subset of the rows")
    parser.add_argument("--sets", nargs="+", default=None, help="a subset of the test sets (default: all four)")
    parser.add_argument("--recipe", type=Path, default=None, help="score this checkpoint as the recipe row")
    parser.add_argument("--tune-decoding", type=Path, default=None, metavar="CKPT")
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "output" / "full")
    args = parser.parse_args(argv)
    for folder in [*TRAIN_ROOTS, *UNSEEN.values()]:
        if not (args.shared / folder).is_dir():
            raise SystemExit(f"benchmark: {args.shared / folder} is missing (the photo sets of ../shared/data)")
    if args.tune_decoding:
        sweep = decode_sweep(args.tune_decoding, own_data(args.tune_decoding, args.eval_size), "val")
        print(json.dumps({"chosen": choose_decoding(sweep), **sweep}, indent=1))
        return
    sets = eval_sets(args)
    sets = {k: v for k, v in sets.items() if args.sets is None or k in args.sets}
    rows, checkpoints = {}, {}
    saved = args.out / "results.json"
    previous = json.loads(saved.read_text())["rows"] if saved.is_file() else {}
    for name in args.rows:
        if name == "recipe" and args.recipe:
            ckpt, seconds = args.recipe, None
        else:
            ckpt, seconds = train_row(name, args)
        if seconds is None:
            seconds_file = ckpt.parent.parent / "train_seconds.txt"
            seconds = previous.get(name, {}).get("seconds")
            if seconds_file.is_file():
                seconds = float(seconds_file.read_text())
        checkpoints[name] = ckpt
        total, trained = parameters(ckpt)
        decoding: list[str] = []
        if name == "recipe":  # its decoding is part of the recipe: chosen on the validation split
            chosen = choose_decoding(decode_sweep(ckpt, own_data(ckpt, args.eval_size), "val"))
            decoding = [f"temperature={chosen['temperature']}", f"mix={chosen['mix']}"]
            print(f"recipe decoding chosen on the validation split: {chosen}", flush=True)
        rows[name] = {
            "checkpoint": str(ckpt),
            "checkpoint_mtime": ckpt.stat().st_mtime,
            "seconds": round(seconds) if seconds else "-",
            "params": f"{total / 1e6:.2f} M / {trained / 1e6:.2f} M",
            "sets": {},
        }
        for set_name, overrides in sets.items():
            cached = previous.get(name, {}).get("sets", {}).get(set_name)
            same = previous.get(name, {}).get("checkpoint_mtime") == ckpt.stat().st_mtime
            fresh = cached is None or not same
            rows[name]["sets"][set_name] = (
                score(ckpt, name, set_name, [*overrides, *decoding], args) if fresh else cached
            )
        if decoding:
            rows[name]["decoding"] = decoding
        write_text_atomic(saved, json.dumps({"rows": {**previous, **rows}}, indent=1))
    sweeps: dict[str, dict] = {}
    for set_name, overrides in sets.items():
        datamodule = datamodule_for(overrides, args)
        sweeps[set_name] = {
            name: decode_sweep(checkpoints[name], datamodule, "test")
            for name in checkpoints
            if name.startswith("unet + bins (lambda 0.5)") or name == "recipe"
        }
        tradeoff_plot(set_name, rows, sweeps[set_name], args.out / f"tradeoff_{slug(set_name)}.png")
        decodings = {n: (float(r["decoding"][0].split("=")[1]), float(r["decoding"][1].split("=")[1]))
                     for n, r in rows.items() if r.get("decoding")}  # fmt: skip
        figure(checkpoints, datamodule, args.out / f"grid_{slug(set_name)}.png", decodings)
    memory = memory_report()
    text = tables(rows, list(sets), args, memory)
    write_text_atomic(args.out / "results.md", text)
    everything = {"rows": rows, "sweeps": sweeps, "memory": memory}
    write_text_atomic(args.out / "results.json", json.dumps(everything, indent=1))
    print(text)
    budget = (
        f"Equal budget: {args.steps} steps of batch 16 at {args.image_size} px, Adam 1e-3 without a schedule, on the "
        f"training split of {' + '.join(TRAIN_ROOTS)} (experiments/benchmark/run.py --full, "
        f"{time.strftime('%Y-%m-%d')}); scored by eval.py on 160 px centre crops."
    )
    pairs = {  # experiments/<name>/, beside what `experiments/study.py <name>` writes there
        "rebalance": ("Study: class rebalancing of the bins head",
                            ["unet + bins (no rebalancing, lambda 1)", "unet + bins (lambda 0.5)"]),
        "pretrained": ("Study: pretrained vs random-init encoder",
                             ["unet (random init)", "unet (pretrained)"]),
    }  # fmt: skip
    for folder, (title, names) in pairs.items():
        if all(n in rows for n in names):
            study_summary(title, rows, names, list(sets), PROJECT_ROOT / "experiments" / folder, budget)


if __name__ == "__main__":
    main()
