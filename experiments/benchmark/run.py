"""Benchmark: every model trained at one fixed budget, every model and baseline scored on
the same held-out photos; one markdown table and one figure grid.

    python experiments/benchmark/run.py --quick                     # bundled photos, minutes
    python experiments/benchmark/run.py --root DIR --steps 3000     # any photo folder
    python experiments/benchmark/run.py --full                      # cross-domain: cross_domain.py

Writes ``results.md`` (all metrics, parameters, training time) and ``grid.png`` (rows: test
photos; columns: gray | each model | truth) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from cross_domain import step_budget
from torchvision.utils import make_grid

from colorization.checkpoint import load_checkpoint, model_from_checkpoint
from colorization.color import gray_rgb
from colorization.compose import compose_config
from colorization.evaluate import evaluate
from colorization.io import save_image_atomic, write_text_atomic
from colorization.train import train

MODELS = ["skip_cae", "cae", "fusion", "vae", "dae"]
BASELINES = ["gray", "mean_ab", "pca", "linear", "mlp"]
COLUMNS = [
    "psnr",
    "ssim",
    "ab_l1",
    "delta_e",
    "ab_auc",
    "ab_r2",
    "colorfulness",
    "colorfulness_gap",
    "fid_effnet_lite0",
]


def data_overrides(args: argparse.Namespace) -> list[str]:
    data = ["data=sample"] if args.root is None else ["data=folder", f"data.root={args.root}"]
    return [*data, f"data.image_size={args.image_size}", f"data.batch_size={args.batch_size}", f"seed={args.seed}"]


def train_model(name: str, args: argparse.Namespace, out: Path) -> tuple[Path, float]:
    overrides = [
        f"model={name}",
        *data_overrides(args),
        *step_budget(args.steps, args.cpu),
        "logger=csv",
    ]
    start = time.perf_counter()
    train(compose_config("train", overrides, out / "runs" / name))
    return out / "runs" / name / "checkpoints" / "last.ckpt", time.perf_counter() - start


def score(args: argparse.Namespace, out: Path, name: str, ckpt: Path | None) -> dict[str, float]:
    target = [f"ckpt_path={ckpt}", *data_overrides(args)] if ckpt else [f"model={name}", *data_overrides(args)]
    return evaluate(compose_config("eval", [*target, "split=test"], out / "eval" / name))


@torch.no_grad()
def figure(checkpoints: dict[str, Path], args: argparse.Namespace, out: Path, n: int = 4) -> Path:
    """Rows: the first ``n`` test crops; columns: gray | each model | truth."""
    from hydra.utils import instantiate

    datamodule = instantiate(compose_config("train", data_overrides(args), out / "figure").data)
    datamodule.setup("test")
    batch = datamodule.device_batch(next(iter(datamodule.test_dataloader()))[:n], torch.device("cpu"))
    columns = [gray_rgb(batch["L"])]
    for path in checkpoints.values():
        model = model_from_checkpoint(load_checkpoint(path)).eval()
        prepared = model.prepare_batch(batch, "test", 0)
        columns.append(model.to_rgb(batch["L"], model.model_step(prepared)[1]))
    columns.append(batch["rgb"])
    grid = make_grid(torch.stack(columns, dim=1).flatten(0, 1), nrow=len(columns), padding=2, pad_value=1.0)
    return save_image_atomic(grid, out / "grid.png")


def table(rows: dict[str, dict], args: argparse.Namespace) -> str:
    head = "| model | trainable params | train s | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + " --- |" * (len(COLUMNS) + 3)]
    for name, row in rows.items():
        values = " | ".join(f"{row['metrics'][c]:.3f}" for c in COLUMNS)
        lines.append(f"| {name} | {row['params']} | {row['seconds']} | {values} |")
    data = "the bundled sample photos" if args.root is None else args.root
    budget = f"{args.steps} steps of batch {args.batch_size} at {args.image_size} px, seed {args.seed}"
    return f"Data: {data}, test split. Budget per model: {budget}.\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    if {"--full", "--tune-decoding"} & set(sys.argv[1:]):  # the cross-domain benchmark (cross_domain.py)
        from cross_domain import main as cross_domain

        return cross_domain()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="bundled photos, 96 px, 120 steps")
    parser.add_argument("--root", default=None, help="a folder of photos (default: the bundled sample photos)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--baselines", nargs="+", default=BASELINES)
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is there")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "output")
    args = parser.parse_args()
    if args.quick:
        args.root, args.steps, args.image_size = None, 120, 96
    rows, checkpoints = {}, {}
    for name in args.models:
        checkpoints[name], seconds = train_model(name, args, args.out)
        model = model_from_checkpoint(load_checkpoint(checkpoints[name]))
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rows[name] = {
            "metrics": score(args, args.out, name, checkpoints[name]),
            "params": params,
            "seconds": round(seconds),
        }
    for name in args.baselines:  # fitted inside eval.py (closed form, or baseline_epochs epochs)
        rows[f"baseline: {name}"] = {"metrics": score(args, args.out, name, None), "params": "-", "seconds": "-"}
    text = table(rows, args)
    write_text_atomic(args.out / "results.md", text)
    write_text_atomic(args.out / "results.json", json.dumps(rows, indent=2, default=str))
    print(text)
    print(f"figure: {figure(checkpoints, args, args.out)}")


if __name__ == "__main__":
    main()
