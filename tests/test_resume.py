"""Resume: a run killed with SIGKILL mid-epoch and restarted with ckpt_path=last ends where an
uninterrupted run ends, with the same weights and validation loss."""

from __future__ import annotations

import csv
import signal

import pytest
import torch

from colorization.data import ImageFolder, LabDataModule
from colorization.data.datamodule import ResumableSampler
from colorization.evaluate import evaluate
from tests.helpers import TINY, run_script

# 7 training photos x 2 crops / batch 4 -> 3 steps per epoch; 3 epochs = 9 steps
RUN = [*TINY, "trainer.max_epochs=3", "trainer.accelerator=cpu", "test=false", "compare_gray=false",
       "callbacks.progress_bar=null", "callbacks.last_checkpoint.every_n_train_steps=2"]  # fmt: skip


def csv_rows(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def final_state(run_dir) -> tuple[int, dict]:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return checkpoint["global_step"], checkpoint["state_dict"]


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(tmp_path, compose_cfg):
    whole = run_script("train.py", *RUN, f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-2000:]
    # killed after step 5 (the 2nd batch of epoch 2); the last periodic checkpoint is step 4
    killer = ["+callbacks.killer._target_=tests.helpers.KillAtStep", "+callbacks.killer.step=5"]
    killed = run_script("train.py", *RUN, *killer, f"hydra.run.dir={tmp_path / 'killed'}")
    assert killed.returncode == -signal.SIGKILL
    step_at_kill, _ = final_state(tmp_path / "killed")
    assert step_at_kill == 4
    logged_before_kill = csv_rows(tmp_path / "killed")
    assert any(row["val/loss"] for row in logged_before_kill)  # epoch 0, flushed before the kill
    resumed = run_script("train.py", *RUN, "ckpt_path=last", f"hydra.run.dir={tmp_path / 'killed'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    # the metrics log keeps every row logged before the kill, then goes on
    after = csv_rows(tmp_path / "killed")
    assert [
        {k: row[k] for k in logged_before_kill[0]} for row in after[: len(logged_before_kill)]
    ] == logged_before_kill
    assert max(int(row["step"]) for row in after) > max(int(row["step"]) for row in logged_before_kill)

    (step_a, weights_a), (step_b, weights_b) = final_state(tmp_path / "whole"), final_state(tmp_path / "killed")
    assert step_a == step_b == 9
    assert max((weights_a[k].float() - weights_b[k].float()).abs().max().item() for k in weights_a) < 1e-5
    losses = [
        evaluate(compose_cfg(f"ckpt_path={tmp_path / run / 'checkpoints' / 'last.ckpt'}", "split=val", "fid=false",
                             config_name="eval"))["loss"]
        for run in ("whole", "killed")
    ]  # fmt: skip
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)


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
