"""A sweep's runs in one table and one plot.

    python -m colorization.aggregate logs/train/multiruns/<time>

Reads each run folder of the multirun (``<n>/.hydra/overrides.yaml``, ``<n>/metrics.json``
written by train.py, ``<n>/FAILED`` for jobs that failed) and writes ``summary.md`` (one row
per run: its overrides and final metrics) and ``summary.png`` (the best validation loss per
run, and the validation-loss curves overlaid) into the sweep folder.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

#: metrics.json keys shown as columns (when any run has them)
COLUMNS = ("val/loss", "val/psnr", "val/ab_l1", "val/delta_e", "test/psnr", "test/ab_l1", "test/delta_e", "test/ab_auc")


@dataclass
class RunSummary:
    folder: Path
    overrides: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    steps: int | None = None
    failed: str | None = None

    @property
    def name(self) -> str:
        return " ".join(self.overrides) or self.folder.name

    @property
    def best_val_loss(self) -> float:
        values = [v for v in self.history if not math.isnan(v)] or [self.metrics.get("val/loss", math.nan)]
        return min(values)


def sweep_overrides(sweep_dir: Path) -> set[str]:
    """Override keys shared by every run (the command line's constants), to leave out of names."""
    per_run = [set(load_overrides(d)) for d in run_folders(sweep_dir)]
    return set.intersection(*per_run) if per_run else set()


def load_overrides(folder: Path) -> list[str]:
    path = folder / ".hydra" / "overrides.yaml"
    return [str(o) for o in yaml.safe_load(path.read_text()) or []] if path.is_file() else []


def run_folders(sweep_dir: Path) -> list[Path]:
    folders = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    return sorted(folders, key=lambda p: (int(p.name) if p.name.isdigit() else math.inf, p.name))


def collect(sweep_dir: str | Path) -> list[RunSummary]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep folder at {sweep_dir}")
    common = sweep_overrides(sweep_dir)
    runs = []
    for folder in run_folders(sweep_dir):
        run = RunSummary(folder, [o for o in load_overrides(folder) if o not in common])
        if (folder / "FAILED").is_file():
            run.failed = (folder / "FAILED").read_text().strip().splitlines()[-1][:200]
        if (folder / "metrics.json").is_file():
            data = json.loads((folder / "metrics.json").read_text())
            run.metrics, run.history = data.get("metrics", {}), data.get("val_loss_history", [])
            run.steps = data.get("global_step")
        elif run.failed is None:
            run.failed = "no metrics.json (still running, or killed)"
        runs.append(run)
    if not runs:
        raise FileNotFoundError(f"no run folders (with .hydra/) under {sweep_dir}")
    return runs


def markdown(runs: list[RunSummary], title: str) -> str:
    columns = [c for c in COLUMNS if any(c in r.metrics for r in runs)]
    header = ["run", "overrides", "best val/loss", *columns, "steps"]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for run in runs:
        if run.failed and not run.metrics:
            cells = [run.folder.name, run.name, f"failed: {run.failed}", *[""] * len(columns), ""]
        else:
            values = [f"{run.metrics[c]:.4f}" if c in run.metrics else "" for c in columns]
            cells = [run.folder.name, run.name, f"{run.best_val_loss:.4f}", *values, str(run.steps or "")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "best val/loss: the lowest over the run's epochs; val/*: after the last epoch; test/*: the best "
        "checkpoint on the test split (when the run tested); steps: optimizer steps.",
    ]
    done = [r for r in runs if r.metrics]
    if done:
        best = min(done, key=lambda r: r.best_val_loss)
        lines += ["", f"Lowest validation loss: run {best.folder.name} ({best.name}), {best.best_val_loss:.4f}."]
    return "\n".join(lines) + "\n"


def plot(runs: list[RunSummary], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in runs if r.metrics]
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(11, 4))
    bars.bar(range(len(done)), [r.best_val_loss for r in done], color="tab:blue")
    bars.set_xticks(range(len(done)), [r.name or r.folder.name for r in done], rotation=20, ha="right", fontsize=8)
    bars.set_ylabel("best val/loss")
    bars.set_title("best validation loss per run")
    for run in done:
        if run.history:
            curves.plot(range(len(run.history)), run.history, marker=".", label=run.name or run.folder.name)
    curves.set_xlabel("epoch")
    curves.set_ylabel("val/loss")
    curves.set_title("validation loss")
    if any(r.history for r in done):
        curves.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    from colorization.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def aggregate(
    sweep_dir: str | Path, title: str | None = None, out_dir: str | Path | None = None, figure: bool = True
) -> tuple[Path, Path | None]:
    """-> (summary.md, summary.png) written into ``out_dir`` (default: ``sweep_dir``); without
    ``figure``, the table only (no matplotlib)."""
    from colorization.io import write_text_atomic

    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir
    runs = collect(sweep_dir)
    title = title or f"Sweep {sweep_dir.name}"
    table = write_text_atomic(out_dir / "summary.md", markdown(runs, title))
    return table, plot(runs, out_dir / "summary.png", title) if figure else None


class SummarizeSweep(Callback):
    """Hydra callback: at the end of a training multirun (``python train.py -m ...``), the
    comparison table :func:`aggregate` writes, printed and saved into the sweep folder
    (``summary.md``), so a sweep ends with its answer instead of a list of folders; the plot is
    one command away (``python -m colorization.aggregate <sweep folder>``)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if config.get("task_name") != "train":
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            table, _ = aggregate(sweep_dir, figure=False)
        except (OSError, ValueError) as error:  # a sweep whose jobs wrote nothing: say so, do not fail it
            print(f"aggregate: no summary of {sweep_dir}: {error}")
            return
        plot = f"python -m colorization.aggregate {sweep_dir}"
        print(f"\n{table.read_text()}\nwritten: {table} (and a plot: {plot})", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (logs/train/multiruns/<time>)")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    try:
        table, figure = aggregate(args.sweep_dir, args.title)
    except FileNotFoundError as error:
        raise SystemExit(f"aggregate: {error}") from None
    print(table.read_text())
    print(f"written: {table}, {figure}")


if __name__ == "__main__":
    main()
