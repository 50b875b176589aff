"""Every option of every config group composes and builds what it promises."""

import pytest
import torch
from hydra.utils import instantiate
from lightning import Callback, Trainer
from lightning.pytorch.loggers import Logger

from colorization.data import LabDataModule
from colorization.data.digits import DigitsDataModule
from colorization.tasks import ColorizationModule, ReconstructionModule
from colorization.train import build_model, instantiate_callbacks, instantiate_loggers
from tests.helpers import options


def test_every_group_has_the_options_users_expect():
    assert {"sample", "folder", "cifar10", "stl10", "flowers102", "places365"} <= set(options("data"))
    assert {"adam", "rmsprop", "sgd", "adamw"} <= set(options("optim"))
    assert {"none", "plateau", "cosine"} <= set(options("scheduler"))
    assert {"default", "cpu", "gpu", "ddp", "ddp_sim"} <= set(options("trainer"))
    assert {"csv", "tensorboard", "wandb", "none"} <= set(options("logger"))
    assert {"fdr", "overfit"} <= set(options("debug"))


@pytest.mark.parametrize("option", options("data"))
def test_data_options_build_a_datamodule(compose_cfg, photo_dir, option):
    overrides = [f"data={option}"] + ([f"data.root={photo_dir}"] if option == "folder" else [])
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
