"""Resume: a run killed with SIGKILL mid-epoch and restarted with ckpt_path=last logs what an
uninterrupted run logs (every loss and validation metric after the resume, to 1e-6), keeps its
val/loss history and ends with the same weights; a resume as another model is refused in one line."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

from colorization.callbacks import LastCheckpoint, ResumeState
from colorization.data import ImageFolder, LabDataModule
from colorization.data.datamodule import ResumableSampler
from colorization.models import EffNetUNet
from colorization.tasks import ColorizationModule
from tests.helpers import TINY, KillAtStep, digest, one_line_exit_2, run_script

# 7 training photos x 2 crops / batch 4 -> 3 steps per epoch; 3 epochs = 9 steps; last.ckpt at each
# epoch's end (as in the default run); colour hints, drawn from the global generator
RUN = [*TINY, "model.hints=true", "trainer.max_epochs=3", "trainer.accelerator=cpu", "test=false",
       "compare_gray=false", "callbacks.progress_bar=null", "trainer.log_every_n_steps=1"]  # fmt: skip
# the resumed run reads with a worker process (as the default run does): its first batches are
# fetched before Lightning sets the sampler's epoch (the numbers do not depend on the workers)
WITH_A_WORKER = [o.replace("data.num_workers=0", "data.num_workers=1") for o in RUN]
#: killed after the first step of epoch 2 (global step 7), between checkpoints: last.ckpt is epoch 1's end (step 6)
KILL_AT, LAST_SAVED = 7, 6


def csv_rows(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def logged(rows: list[dict[str, str]]) -> dict[tuple[int, str], float]:
    """(step, metric) -> value of every train/loss* and val/* value; a row logged again after a
    resume replaces the one logged before the kill."""
    return {(int(row["step"]), key): float(value) for row in rows for key, value in row.items()
            if value and key.startswith(("train/loss", "val/"))}  # fmt: skip


def final_state(run_dir) -> tuple[int, dict]:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return checkpoint["global_step"], checkpoint["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """An uninterrupted run, and one SIGKILLed mid-epoch then resumed with ckpt_path=last."""
    tmp = tmp_path_factory.mktemp("resume")
    whole = run_script("train.py", *RUN, f"hydra.run.dir={tmp / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-2000:]
    killer = ["+callbacks.killer._target_=tests.helpers.KillAtStep", f"+callbacks.killer.step={KILL_AT}"]
    killed = run_script("train.py", *RUN, *killer, f"hydra.run.dir={tmp / 'killed'}")
    assert killed.returncode == -signal.SIGKILL
    step_at_kill, _ = final_state(tmp / "killed")
    logged_before_kill = csv_rows(tmp / "killed")
    resumed = run_script("train.py", *WITH_A_WORKER, "ckpt_path=last", f"hydra.run.dir={tmp / 'killed'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return {"whole": tmp / "whole", "killed": tmp / "killed", "step_at_kill": step_at_kill,
            "logged_before_kill": logged_before_kill, "resumed": resumed}  # fmt: skip


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(runs):
    assert runs["step_at_kill"] == LAST_SAVED
    assert "resuming from" in runs["resumed"].stdout + runs["resumed"].stderr
    before = runs["logged_before_kill"]
    assert any(row["val/loss"] for row in before)  # epochs 0 and 1, flushed before the kill
    # the metrics log keeps every row logged before the kill, then goes on
    after = csv_rows(runs["killed"])
    assert [{k: row[k] for k in before[0]} for row in after[: len(before)]] == before
    # every loss and validation metric, before and after the resume, as in the uninterrupted run
    whole, resumed = logged(csv_rows(runs["whole"])), logged(after)
    assert max(step for step, _ in resumed) == 8 and set(resumed) == set(whole)
    assert {k: v for k, v in resumed.items() if abs(v - whole[k]) > 1e-6} == {}
    summaries = [json.loads((runs[run] / "metrics.json").read_text()) for run in ("whole", "killed")]
    assert len(summaries[0]["val_loss_history"]) == 3
    assert summaries[1]["val_loss_history"] == pytest.approx(summaries[0]["val_loss_history"], abs=1e-6)
    assert summaries[1]["metrics"] == pytest.approx(summaries[0]["metrics"], abs=1e-6)
    assert (summaries[1]["global_step"], summaries[1]["epochs"]) == (summaries[0]["global_step"], 3)
    assert Path(summaries[1]["best_checkpoint"]).name == Path(summaries[0]["best_checkpoint"]).name

    (step_a, weights_a), (step_b, weights_b) = final_state(runs["whole"]), final_state(runs["killed"])
    assert step_a == step_b == 9
    assert max((weights_a[k].float() - weights_b[k].float()).abs().max().item() for k in weights_a) < 1e-6


def test_resume_with_another_model_is_one_line_and_touches_nothing(runs):
    run = runs["killed"]
    before = digest(run)
    args = [*(o for o in RUN if not o.startswith("model.")), "model=cae", "ckpt_path=last", f"hydra.run.dir={run}"]
    line = one_line_exit_2("train.py", *args)
    assert "cannot resume" in line and "model.net._target_" in line and "StackedCAE" in line, line
    assert digest(run) == before


def test_resume_without_a_checkpoint_is_one_clear_error(tmp_path):
    result = run_script("train.py", *RUN, "ckpt_path=last", "paths.log_dir=" + str(tmp_path / "logs"),
                        f"hydra.run.dir={tmp_path / 'fresh'}")  # fmt: skip
    assert result.returncode == 2
    assert "ckpt_path=last: no last.ckpt" in result.stdout + result.stderr


def test_sampler_order_is_seeded_by_epoch_and_skips_consumed_batches(photo_dir):
    dm = LabDataModule(ImageFolder(photo_dir), image_size=32, batch_size=2, num_workers=0, train_repeats=4,
                       fractions=(1.0, 0.0, 0.0))  # fmt: skip
    dm.setup("fit")
    sampler = ResumableSampler(dm.datasets["train"], batch_size=2, seed=3)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    sampler.set_epoch(2)
    epoch2 = list(sampler)
    indices1, indices2 = [i for i, _ in epoch1], [i for i, _ in epoch2]
    assert indices2 != indices1 and sorted(indices2) == sorted(indices1)  # another order of the same crops
    assert {e for _, e in epoch1} == {1} and {e for _, e in epoch2} == {2}  # each item carries its epoch
    again = ResumableSampler(dm.datasets["train"], batch_size=2, seed=3)
    again.resume(epoch=1, consumed=3)
    again.set_epoch(1)
    assert list(again) == epoch1[6:]
    crops = dm.datasets["train"]
    index = epoch1[0][0]
    assert torch.equal(crops[(index, 1)][0], crops[(index, 1)][0])  # a crop is fixed by (index, epoch)...
    assert not torch.equal(crops[(index, 1)][0], crops[(index, 2)][0])  # ...and another epoch draws another


def test_loaders_leave_the_global_generator_alone(photo_dir):
    """Each iterator a DataLoader starts draws a seed; from the global generator, a resumed run
    (which starts other iterators than the uninterrupted one) would draw other dropout and hints."""
    dm = LabDataModule(ImageFolder(photo_dir), image_size=32, batch_size=2, num_workers=0, fractions=(0.6, 0.2, 0.2))
    dm.setup("fit")
    state = torch.get_rng_state()
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        next(iter(loader))
    assert torch.equal(torch.get_rng_state(), state)


class DropoutModel(L.LightningModule):
    """Dropout (draws from the global generator) and a loss averaged over each epoch (Lightning's
    running sums, which Lightning's own checkpoints leave out)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.net(batch[0]).pow(2).mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Recorder(Logger):
    name, version = "recorder", 0

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[tuple[int, str], float] = {}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.values.update({(step, k): float(v) for k, v in metrics.items() if k.startswith("train/loss")})

    def log_hyperparams(self, *args, **kwargs) -> None:
        pass


class RaiseAtStep(KillAtStep):
    """An exception instead of SIGKILL (in-process): no clean-up checkpoint either."""

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step >= self.step:
            raise InterruptedError("killed")


def fit_dropout_model(folder: Path, *callbacks: L.Callback, ckpt_path: str | None = None) -> dict:
    L.seed_everything(0)
    data = DataLoader(TensorDataset(torch.ones(8, 8)), batch_size=2)  # 4 steps per epoch, every batch the same
    recorder = Recorder()
    callbacks = (LastCheckpoint(folder, every_n_train_steps=2), ResumeState(), *callbacks)
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=recorder, log_every_n_steps=1, enable_progress_bar=False,
        enable_model_summary=False, callbacks=list(callbacks),
    )  # fmt: skip
    model = DropoutModel()
    trainer.fit(model, data, ckpt_path=ckpt_path, weights_only=True)
    return {"logged": recorder.values, "weights": model.state_dict()}


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before")  # every batch the same
def test_a_mid_epoch_checkpoint_resumes_dropout_draws_and_epoch_averages(tmp_path):
    whole = fit_dropout_model(tmp_path / "whole")
    with pytest.raises(InterruptedError):
        fit_dropout_model(tmp_path / "killed", RaiseAtStep(3))  # last.ckpt: step 2, mid-epoch 0
    resumed = fit_dropout_model(tmp_path / "killed", ckpt_path=str(tmp_path / "killed" / "last.ckpt"))
    assert (3, "train/loss_epoch") in resumed["logged"] and (7, "train/loss_epoch") in resumed["logged"]
    expected = whole["logged"]
    assert {k: (v, expected[k]) for k, v in resumed["logged"].items() if abs(v - expected[k]) > 1e-6} == {}
    assert all(torch.equal(whole["weights"][k], v) for k, v in resumed["weights"].items())


def test_a_frozen_encoder_is_frozen_again_when_a_run_resumes_mid_epoch():
    module = ColorizationModule(EffNetUNet("ab", pretrained=False), freeze_epochs=1)
    module.on_train_start()  # Lightning skips on_train_epoch_start when it resumes mid-epoch
    assert not any(p.requires_grad for p in module.net.encoder_parameters())
