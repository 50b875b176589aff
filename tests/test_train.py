"""train.py end to end: fast_dev_run, a short real run with its outputs, multirun, clean errors."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from colorization.train import report, train
from tests.helpers import TINY, run_train_py


def test_fast_dev_run_through_hydra_compose(compose_cfg, tmp_path):
    metrics = train(compose_cfg("debug=fdr", *TINY))
    assert {"train/loss", "val/loss", "val/psnr"} <= set(metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert not (tmp_path / "run" / "checkpoints").exists()  # a wiring check writes no checkpoints


def test_short_run_writes_checkpoint_metrics_and_grids_and_compares_with_gray(compose_cfg, tmp_path, caplog):
    cfg = compose_cfg(*TINY, "trainer.max_epochs=2", "trainer.accelerator=cpu")
    with caplog.at_level("INFO"):
        metrics = train(cfg)
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "csv" / "metrics.csv").read_text().count("val/loss") == 1
    assert sorted(p.name for p in (run / "images").glob("*.png")) == ["val_epoch000.png", "val_epoch001.png"]
    for key in ("model/val/psnr", "gray/val/psnr", "model/val/ab_l1", "gray/val/ab_l1", "test/psnr"):
        assert key in metrics
    assert "gray (ab = 0)" in caplog.text and "val/loss: first epoch" in caplog.text
    best = json.loads((run / "metrics.json").read_text())["best_checkpoint"]
    assert Path(best).name.startswith("best-") and Path(best).is_file()
    assert f"Use next: colorize photo.jpg --ckpt {best} -o out/" in caplog.text  # the closing lines
    assert f"python eval.py ckpt_path={best}" in caplog.text
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["colorization_config"]["model"]["net"]["width"] == 8
    assert checkpoint["global_step"] > 0


def test_the_summary_names_the_epochs_its_losses_are_from():
    metrics = ("psnr", "ssim", "ab_l1", "delta_e", "ab_auc", "colorfulness_gap")
    comparison = {f"{who}/val/{metric}": 1.0 for who in ("model", "gray") for metric in metrics}
    # epoch 0 not validated (check_val_every_n_epoch, or a resume from a checkpoint without the history)
    text = report(comparison, [math.nan, 0.30, 0.20, 0.25], None, 8)
    assert "val/loss: epoch 1 0.3000, best 0.2000 (epoch 2), last 0.2500 (-17% from epoch 1)" in text


def test_same_seed_same_run(compose_cfg):
    first = train(compose_cfg("debug=fdr", *TINY))
    second = train(compose_cfg("debug=fdr", *TINY))
    assert first["train/loss"] == pytest.approx(second["train/loss"], rel=1e-5)


def test_multirun_of_two_optimizers_writes_two_runs(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train_py("-m", "optim=adam,rmsprop", "debug=fdr", *TINY, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    overrides = sorted((sweep / str(i) / ".hydra" / "overrides.yaml").read_text() for i in range(2))
    assert "optim=adam" in overrides[0] and "optim=rmsprop" in overrides[1]


def test_the_readme_override_commands_run(tmp_path, photo_dir):
    result = run_train_py(
        "model=skip_cae",
        "optim=adam",
        "data=folder",
        f"data.root={photo_dir}",
        "data.fractions=[0.6,0.2,0.2]",
        "debug=fdr",
        *TINY,
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(
    "override, message",
    [("data.rooot=x", "Could not override 'data.rooot'"), ("model=nope", "Could not find 'model/nope'")],
)
def test_a_wrong_key_or_group_prints_hydras_error_not_a_traceback(override, message):
    result = run_train_py(override, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_missing_folder_is_one_clear_line(tmp_path):
    missing = tmp_path / "no-such-photos"
    result = run_train_py("data=folder", f"data.root={missing}", "debug=fdr", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert f"image folder does not exist: {missing}" in output and "Traceback" not in output


@pytest.mark.slow
def test_the_default_run_learns_colour_it_never_saw(compose_cfg):
    """What `make train` runs (about 3.5 minutes on 2 cores): validation loss falls clearly by
    the best epoch (the checkpoint a user gets), and that checkpoint beats gray."""
    cfg = compose_cfg("callbacks.progress_bar=null", "test=false")
    metrics = train(cfg)
    assert metrics["model/val/ab_l1"] < metrics["gray/val/ab_l1"]
    with open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv") as f:
        history = [float(row["val/loss"]) for row in csv.DictReader(f) if row["val/loss"]]
    assert len(history) == cfg.trainer.max_epochs and min(history) < 0.9 * history[0], history


def test_the_closing_lines_give_eval_the_photo_folder_of_the_run(tmp_path):
    from colorization.train import next_steps

    best = tmp_path / "checkpoints" / "best-epoch001.ckpt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"")
    folder = {"_target_": "colorization.data.LabDataModule", "root": "/my photos",
              "source": {"_target_": "colorization.data.ImageFolder", "_partial_": True}}  # fmt: skip
    lines = next_steps(str(best), "val/loss", tmp_path, folder)
    assert f"python eval.py ckpt_path={best} data_root='/my photos'" in lines  # eval.py takes locations from you
    bundled = {**folder, "root": None, "source": {"_target_": "colorization.data.SamplePhotos", "_partial_": True}}
    assert "data_root" not in next_steps(str(best), "val/loss", tmp_path, bundled)
