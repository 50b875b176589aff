"""Studies at scale: multiruns aggregated, Optuna, W&B offline multiruns, DDP with one output
folder, and a failing job that does not stop its sweep. Tiny budgets: they check the
plumbing, not the results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from colorization.aggregate import aggregate, collect
from tests.helpers import TINY, run_script

QUICK = [*TINY, "trainer.max_epochs=1", "trainer.accelerator=cpu", "test=false", "compare_gray=false",
         "callbacks.progress_bar=null", "logger=csv"]  # fmt: skip


def sweep(tmp_path: Path, *overrides: str, timeout: int = 600):
    result = run_script("train.py", "-m", *QUICK, f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides, timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    # a multirun ends with its comparison, printed and written into the sweep folder
    assert "| run | overrides | best val/loss |" in result.stdout and (tmp_path / "sweep" / "summary.md").is_file()
    return tmp_path / "sweep"


def test_two_run_multirun_is_aggregated_into_a_table_and_a_plot(tmp_path):
    folder = sweep(tmp_path, "experiment=study_adam_vs_rmsprop")
    runs = collect(folder)
    assert [r.name for r in runs] == ["optim=adam", "optim=rmsprop"]
    assert all(r.metrics["val/loss"] > 0 and r.steps == 3 for r in runs)
    table, figure = aggregate(folder, title="adam vs rmsprop")
    text = table.read_text()
    assert "| 0 | optim=adam |" in text and "| 1 | optim=rmsprop |" in text and "Lowest validation loss" in text
    assert figure.stat().st_size > 10_000


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    folder = sweep(tmp_path, "model.net.width=8,-1")  # a negative width cannot build a network
    runs = collect(folder)
    assert runs[0].metrics and runs[0].failed is None
    assert runs[1].failed and (folder / "1" / "FAILED").is_file()
    assert "failed:" in aggregate(folder)[0].read_text()


def test_optuna_search_of_three_trials_reports_the_best(tmp_path):
    folder = sweep(
        tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.n_startup_trials=3"
    )
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    values = [collect(folder)[i].metrics["val/loss"] for i in range(3)]
    assert results["best_value"] == pytest.approx(min(values))
    # searched: lr and loss; batch size and width are fixed by the command line (QUICK)
    assert set(results["best_params"]) == {"optim.lr", "model.loss"}


def test_wandb_offline_multirun_gives_each_run_its_own_history_with_images(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    folder = sweep(tmp_path, "logger=wandb", "optim=adam,rmsprop", "trainer.max_epochs=2", "test=true",
                   "compare_gray=true")  # fmt: skip
    offline = [next((folder / n / "wandb").glob("offline-run-*")) for n in ("0", "1")]
    assert offline[0].name != offline[1].name
    for run_dir, name in zip(offline, ("optim=adam", "optim=rmsprop")):
        history = next(run_dir.glob("run-*.wandb")).read_bytes()
        assert b"val/loss" in history and b"val/grid" in history
        assert list((run_dir / "files" / "media" / "images").glob("val/grid*.png"))
        # one dashboard per study: the sweep as group, the swept override as name, train as job type
        assert f"sweep/{folder.name}".encode() in history and name.encode() in history
        assert b"model=skip_cae" in history and b"train" in history
        assert b"gray/val/psnr" in history  # the final metrics as summary (only logged there)
        table = json.loads(next((run_dir / "files" / "media" / "table").rglob("predictions*.table.json")).read_text())
        assert table["columns"] == ["photo", "gray", "pred", "truth"] and len(table["data"]) == 2  # 1 photo x 2 crops
    assert b"optim=rmsprop" not in next(offline[0].glob("run-*.wandb")).read_bytes()
    ids = [(folder / n / "wandb_run_id.txt").read_text() for n in ("0", "1")]
    assert ids[0] != ids[1] and all(i in str(offline) for i in ids)


def test_ddp_on_two_cpu_processes_writes_one_output_folder(tmp_path):
    run_dir = tmp_path / "ddp"
    result = run_script("train.py", *QUICK, "trainer=ddp_sim", "trainer.accelerator=cpu", "data.train_repeats=4",
                        f"hydra.run.dir={run_dir}", timeout=600)  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    summary = json.loads((run_dir / "metrics.json").read_text())
    # batch_size is per device: 7 photos x 4 crops = 28 per epoch, 14 per process, 3 batches of 4
    assert summary["global_step"] == 3


def test_resumed_run_logs_into_the_same_wandb_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    first = run_script("train.py", *QUICK, "logger=wandb", f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_script("train.py", *QUICK, "logger=wandb", "trainer.max_epochs=2", "ckpt_path=last",
                       f"hydra.run.dir={run_dir}")  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    run_id = (run_dir / "wandb_run_id.txt").read_text()
    offline = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(name.endswith(run_id) for name in offline)


def test_slurm_and_local_launchers_compose(compose_cfg):
    from hydra.core.global_hydra import GlobalHydra

    from colorization.compose import CONF_DIR

    for launcher, target in (("slurm", "SlurmLauncher"), ("local", "LocalLauncher")):
        GlobalHydra.instance().clear()
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
        assert cfg.hydra.launcher._target_.endswith(target)
        assert cfg.hydra.launcher.timeout_min == 240
    assert cfg.hydra.launcher.cpus_per_task == 2
