"""Every option of every config group composes and builds what it promises."""

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning import Callback, Trainer
from lightning.pytorch.loggers import Logger

from colorization.data import LabDataModule
from colorization.data.digits import DigitsDataModule
from colorization.tasks import ColorizationModule, ReconstructionModule
from colorization.train import build_model, instantiate_callbacks, instantiate_loggers, train
from tests.conftest import CONF
from tests.helpers import TINY_DATA, one_line_exit_2, options


def test_every_group_has_the_options_users_expect():
    assert {"sample", "folder", "cifar10", "stl10", "flowers102", "places365"} <= set(options("data"))
    assert {"adam", "rmsprop", "sgd", "adamw"} <= set(options("optim"))
    assert {"none", "plateau", "cosine"} <= set(options("scheduler"))
    assert {"default", "cpu", "gpu", "ddp", "ddp_sim"} <= set(options("trainer"))
    assert {"csv", "tensorboard", "wandb", "none"} <= set(options("logger"))
    assert {"fdr", "overfit"} <= set(options("debug"))


@pytest.mark.parametrize("option", options("data"))
def test_data_options_build_a_datamodule(compose_cfg, photo_dir, option):
    root = {"folder": [f"data.root={photo_dir}"], "folder_test": [f"data.root={photo_dir}"],
            "shards": [f"data.root={photo_dir}/pack"]}  # fmt: skip  # lazy: nothing read
    overrides = [f"data={option}", *root.get(option, [])]
    dm = instantiate(compose_cfg(*overrides).data)
    assert isinstance(dm, DigitsDataModule if option == "digits" else LabDataModule)


@pytest.mark.parametrize("option", options("model"))
def test_model_options_build_a_module_with_an_optimizer(compose_cfg, option):
    model = build_model(compose_cfg(f"model={option}"))
    optimizers = model.configure_optimizers()
    if any(p.requires_grad for p in model.parameters()):
        assert isinstance(optimizers, dict)  # optimizer + the default scheduler
    else:
        assert optimizers is None  # gray / closed-form baselines: nothing to optimise
    if isinstance(model, ColorizationModule):
        channels = 3 if option == "dae" else 2
        assert model.eval()(torch.zeros(1, 1, 37, 45)).shape == (1, channels, 37, 45)
    else:
        assert isinstance(model, ReconstructionModule)
        assert model.net(torch.zeros(2, 1, 8, 8)).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("option", options("optim"))
def test_optim_options_are_one_override(compose_cfg, option):
    optimizers = build_model(compose_cfg(f"optim={option}", "scheduler=none")).configure_optimizers()
    assert type(optimizers).__name__.lower() == option


@pytest.mark.parametrize("option", options("scheduler"))
def test_scheduler_options(compose_cfg, option):
    config = build_model(compose_cfg(f"scheduler={option}")).configure_optimizers()
    if option == "none":
        assert isinstance(config, torch.optim.Optimizer)
    else:
        assert config["lr_scheduler"]["monitor"] == "val/loss"
        schedulers = torch.optim.lr_scheduler
        assert isinstance(config["lr_scheduler"]["scheduler"], schedulers.LRScheduler | schedulers.ReduceLROnPlateau)


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_options(compose_cfg, option):
    cfg = compose_cfg(f"trainer={option}")
    if cfg.trainer.get("accelerator") == "gpu" and not torch.cuda.is_available():
        pytest.skip(f"trainer={option} needs a GPU; composition checked")
    assert isinstance(instantiate(cfg.trainer, logger=False), Trainer)


@pytest.mark.parametrize("option", options("logger"))
def test_logger_options(compose_cfg, option, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    loggers = instantiate_loggers(compose_cfg(f"logger={option}").get("logger"))
    assert all(isinstance(lg, Logger) for lg in loggers)
    assert len(loggers) == (0 if option == "none" else 1)


@pytest.mark.parametrize("option", options("callbacks"))
def test_callback_options(compose_cfg, option):
    callbacks = instantiate_callbacks(compose_cfg(f"callbacks={option}").get("callbacks"), with_loggers=True)
    assert all(isinstance(c, Callback) for c in callbacks)
    if option == "default":
        names = {type(c).__name__ for c in callbacks}
        assert {"ModelCheckpoint", "EarlyStopping", "LearningRateMonitor", "ImageGridLogger"} <= names


def test_lr_monitor_is_dropped_without_a_logger(compose_cfg):
    callbacks = instantiate_callbacks(compose_cfg().callbacks, with_loggers=False)
    assert "LearningRateMonitor" not in {type(c).__name__ for c in callbacks}


@pytest.mark.parametrize("option", options("debug"))
def test_debug_options(compose_cfg, option):
    cfg = compose_cfg(f"debug={option}")
    assert isinstance(instantiate(cfg.trainer, logger=False), Trainer)


@pytest.mark.parametrize("option", options("experiment"))
def test_experiment_options_compose_and_build(compose_cfg, option):
    cfg = compose_cfg(f"experiment={option}")
    assert isinstance(instantiate(cfg.data), (LabDataModule, DigitsDataModule))
    assert isinstance(build_model(cfg), (ColorizationModule, ReconstructionModule))


@pytest.mark.parametrize("option", options("model"))
def test_model_options_are_plain_model_packages_on_the_shared_base(compose_cfg, option):
    text = (CONF / "model" / f"{option}.yaml").read_text()
    assert "_global_" not in text  # a model option changes the model only: data, trainer belong in experiment/
    assert "/base/colorizer@_here_" in text or "/base/model@_here_" in text
    composed, default = compose_cfg(f"model={option}"), compose_cfg()
    assert composed.data == default.data and composed.trainer == default.trainer
    assert composed.model.monitor == "val/loss" and "grid_images" in composed.model


@pytest.mark.parametrize("option", [o for o in options("data") if o != "digits"])
def test_photo_sources_share_the_data_base(compose_cfg, option):
    assert "/base/data@_here_" in (CONF / "data" / f"{option}.yaml").read_text()
    data = compose_cfg(f"data={option}").data
    if option == "folder_test":  # for eval.py: every photo is a test photo, scored as it is
        assert list(data.fractions) == [0.0, 0.0, 1.0] and data.augment is None and data.eval_repeats == 1
        return
    assert data._target_ == "colorization.data.LabDataModule" and list(data.fractions) == [0.8, 0.1, 0.1]
    assert data.augment._target_ == "colorization.data.DeviceAugmentation"


def test_a_digits_model_on_photos_is_one_clear_error(tmp_path):
    line = one_line_exit_2("train.py", "model=linear_ae", f"hydra.run.dir={tmp_path / 'run'}")
    assert "is a ReconstructionModule, which takes DigitsDataModule data (digits: data=digits)" in line


def test_a_baseline_with_nothing_to_train_stops_after_one_epoch(compose_cfg):
    metrics = train(compose_cfg("model=gray", *TINY_DATA, "trainer.max_epochs=5", "trainer.accelerator=cpu",
                                "test=false", "compare_gray=false", "callbacks.progress_bar=null"))  # fmt: skip
    summary = json.loads((Path(compose_cfg().paths.output_dir) / "metrics.json").read_text())
    assert summary["epochs"] == 1 and len(summary["val_loss_history"]) == 1 and "val/loss" in metrics
