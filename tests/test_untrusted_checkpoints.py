"""Checkpoints are untrusted input: no code runs from a checkpoint's stored config, in any
command that opens one (colorize, colorize-export, eval.py, resume), and every real model
config of the project still rebuilds through the guard."""

from __future__ import annotations

import copy
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from colorization.checkpoint import (
    FORCED,
    CheckpointError,
    datamodule_from_checkpoint,
    load_checkpoint,
    net_from_checkpoint,
)
from colorization.colorize import export_main, main
from colorization.preflight import check_resume
from colorization.safe_config import UnsafeConfig, build, check
from tests.conftest import CONF
from tests.helpers import run_script, tiny_checkpoint

ENV_SECRET = "COLORIZATION_TEST_SECRET"


def write_file_payload(marker: Path) -> dict:
    """A call that writes ``marker``: Path(marker).write_text("pwned")."""
    return {
        "_target_": "pathlib.Path.write_text",
        "_args_": [{"_target_": "pathlib.Path", "_args_": [str(marker)]}, "pwned"],
    }


def hidden_call_payload(marker: Path, width: int) -> dict:
    """An integer field that evaluates to ``width`` (so the real weights still load) while
    a nested call writes ``marker``: max(width, len(str(Path.write_text(marker, ...))))."""
    write = write_file_payload(marker)
    length = {"_target_": "builtins.len", "_args_": [{"_target_": "builtins.str", "_args_": [write]}]}
    return {"_target_": "builtins.max", "_args_": [width, length]}


def hostile_checkpoints(real: Path, folder: Path) -> dict[str, tuple[Path, Path, str]]:
    """name -> (hostile checkpoint, the file its payload would create, the key the refusal names)."""
    checkpoint = torch.load(real, map_location="cpu", weights_only=True)
    made = {}
    for name in ("write_file", "hidden_call", "env_interpolation"):
        marker = folder / f"{name}.marker"
        hostile = copy.deepcopy(checkpoint)
        net = hostile["colorization_config"]["model"]["net"]
        if name == "write_file":
            hostile["colorization_config"]["model"]["net"] = write_file_payload(marker)
            key = "model.net._target_"
        elif name == "hidden_call":
            net["width"] = hidden_call_payload(marker, net["width"])
            key = "model.net.width"
        else:
            net["width"] = f"${{oc.decode:${{oc.env:{ENV_SECRET}}}}}"
            key = "model.net.width"
        path = folder / f"{name}.ckpt"
        torch.save(hostile, path)
        made[name] = (path, marker, key)
    return made


@pytest.fixture(scope="module")
def real_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("real"), "model.net.width=8", "model.net.depth=2")


@pytest.fixture
def hostile(real_ckpt, tmp_path, monkeypatch) -> dict[str, tuple[Path, Path, str]]:
    monkeypatch.setenv(ENV_SECRET, "8")
    return hostile_checkpoints(real_ckpt, tmp_path)


def test_the_payloads_are_real_under_plain_hydra(real_ckpt, tmp_path, monkeypatch):
    """What the guard stops: given to hydra.utils.instantiate, each payload does its harm."""
    monkeypatch.setenv(ENV_SECRET, "8")
    for name, (path, marker, _) in hostile_checkpoints(real_ckpt, tmp_path).items():
        net_cfg = torch.load(path, weights_only=True)["colorization_config"]["model"]["net"]
        built = hydra.utils.instantiate(OmegaConf.create(net_cfg))  # the old net_from_checkpoint
        if name == "env_interpolation":
            assert next(built.parameters()).shape[0] == 8  # the width, read from the environment
        else:
            assert marker.read_text() == "pwned"


@pytest.mark.parametrize("name", ["write_file", "hidden_call", "env_interpolation"])
def test_hostile_checkpoint_refused_by_colorize_and_export(name, hostile, tmp_path, photos, capsys):
    path, marker, key = hostile[name]
    Image.fromarray(photos["coffee"]).save(tmp_path / "coffee.jpg")
    assert main([str(tmp_path / "coffee.jpg"), "--ckpt", str(path), "-o", str(tmp_path / "out")]) == 2
    assert export_main(["--ckpt", str(path), "--format", "pt2", "-o", str(tmp_path / "m.pt2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(key in line and str(path) in line for line in err), err
    assert not marker.exists() and not (tmp_path / "out").exists() and not (tmp_path / "m.pt2").exists()


def test_hostile_checkpoints_refused_by_eval_and_resume_before_anything_is_written(hostile, tmp_path):
    for name, (path, marker, key) in hostile.items():
        for script, args in (("eval.py", [f"ckpt_path={path}"]), ("train.py", [f"ckpt_path={path}"])):
            run_dir = tmp_path / f"{script}_{name}"
            result = run_script(script, *args, f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path / 'logs'}")
            lines = (result.stdout + result.stderr).strip().splitlines()
            assert result.returncode == 2, (script, name, lines[-5:])
            assert len(lines) == 1 and key in lines[0] and "refused" in lines[0], lines
            assert not marker.exists() and not run_dir.exists() and not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    ("net", "key"),
    [
        ({"_target_": "colorization.models.SkipCAE", "_args_": [1]}, "model.net._args_"),
        ({"_target_": "colorization.models.SkipCAE", "_recursive_": False}, "model.net._recursive_"),
        ({"_target_": "colorization.models.SkipCAE", "_partial_": "yes"}, "model.net._partial_"),
        ({"_target_": "colorization.models.SkipCAE", "width": [8, {"_target_": "os.getcwd"}]}, "model.net.width[1]"),
        ({"_target_": "colorization.models.SkipCAE", "width": {"a": 1}}, "model.net.width"),
        ({"_target_": "colorization.models.SkipCAE", "width": b"8"}, "model.net.width"),
        ({"_target_": "colorization.models.SkipCAE", "output": "${oc.env:HOME}"}, "model.net.output"),
        ({"_target_": "torch.hub.load", "repo_or_dir": "."}, "model.net._target_"),
        ({"_target_": "builtins.open", "file": "/etc/passwd"}, "model.net._target_"),
        ({"_target_": "colorization.tasks.ColorizationModule"}, "model.net._target_"),  # a task is not a net
        ("colorization.models.SkipCAE", "model.net"),
    ],
)
def test_guard_names_the_offending_key(net, key):
    model = {"_target_": "colorization.tasks.ColorizationModule", "output": "ab", "net": net}
    with pytest.raises(UnsafeConfig) as refused:
        check(model, "task", "model")
    assert str(refused.value).startswith(key + ":"), refused.value


def model_configs() -> list[str]:
    return sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", model_configs())
def test_every_model_config_of_the_project_rebuilds_through_the_guard(model, compose_cfg):
    """The guard allows what train.py stores: each model's resolved config builds the same
    network as Hydra does, and the data config passes too."""
    cfg = OmegaConf.to_container(compose_cfg(f"model={model}"), resolve=True)
    check(cfg["data"], "datamodule", "data")
    torch.manual_seed(0)
    ours = build(cfg["model"]["net"], "net", "model.net")
    torch.manual_seed(0)
    theirs = hydra.utils.instantiate(OmegaConf.create(cfg["model"]["net"]))
    assert type(ours) is type(theirs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert type(build(cfg["model"], "task", "model")).__name__ == cfg["model"]["_target_"].rsplit(".", 1)[-1]


def test_a_real_checkpoint_loads_and_a_mismatched_one_is_one_clear_error(real_ckpt, tmp_path):
    checkpoint = load_checkpoint(real_ckpt)
    weights = net_from_checkpoint(checkpoint).state_dict()
    assert all(torch.equal(value, checkpoint["state_dict"][f"net.{key}"]) for key, value in weights.items())
    checkpoint["colorization_config"]["model"]["net"]["width"] = 16
    with pytest.raises(CheckpointError, match="does not match its weights"):
        net_from_checkpoint(checkpoint)


@pytest.mark.parametrize(
    "value", ["s3://bucket/results.parquet", "/home/user/thesis.tex", "{dirpath}/../../victim/model.ckpt"]
)
def test_resume_refuses_callback_state_naming_files_to_delete(value, real_ckpt, tmp_path):
    """Lightning deletes the previous "best" file named in a ModelCheckpoint state (any remote
    URL, or a local file inside the checkpoint folder): such names must be checkpoints."""
    checkpoint = torch.load(real_ckpt, weights_only=True)
    name = next(k for k in checkpoint["callbacks"] if k.startswith("ModelCheckpoint"))
    state = checkpoint["callbacks"][name]
    state["best_model_path"] = state["kth_best_model_path"] = value.format(dirpath=state["dirpath"])
    torch.save(checkpoint, tmp_path / "last.ckpt")
    check_resume(real_ckpt)  # the real one resumes
    with pytest.raises(CheckpointError, match="refused, callback state ModelCheckpoint"):
        check_resume(tmp_path / "last.ckpt")


def test_a_stored_config_never_downloads_nor_compiles(real_ckpt):
    """Opening a checkpoint builds with download, pretrained weights and compile forced off:
    data sets are not fetched, a network's weights come from the checkpoint (here, with no
    network, the Inception-v3 ImageNet weights could not even be had), no compiler runs."""
    checkpoint = torch.load(real_ckpt, weights_only=True)
    config = checkpoint["colorization_config"]
    config["model"]["compile"] = True
    config["model"]["net"] = {"_target_": "colorization.models.FusionColorizer", "backbone": "inception_v3",
                              "width": 8, "depth": 2}  # fmt: skip
    config["data"] = {"_target_": "colorization.data.digits.DigitsDataModule", "source": "mnist",
                      "root": "/nonexistent/mnist", "download": True}  # fmt: skip
    model = build(config["model"], "task", "model", forced=FORCED)  # the weights would not fit: no load
    assert model.hparams.compile is False
    assert type(model.net.backbone.model).__name__ == "Inception3"
    assert datamodule_from_checkpoint(checkpoint, "/nonexistent/mnist").download is False  # eval.py's data_root=


@pytest.mark.parametrize("size", ["abc", 10**6])
def test_colorize_refuses_a_stored_working_size_out_of_range(size, real_ckpt, tmp_path, photos, capsys):
    checkpoint = torch.load(real_ckpt, weights_only=True)
    checkpoint["colorization_config"]["data"]["image_size"] = size
    torch.save(checkpoint, tmp_path / "size.ckpt")
    Image.fromarray(photos["coffee"]).save(tmp_path / "coffee.jpg")
    assert main([str(tmp_path / "coffee.jpg"), "--ckpt", str(tmp_path / "size.ckpt"), "-o", str(tmp_path / "o")]) == 2
    assert "data.image_size" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_config_asking_for_a_bigger_network_than_its_weights_is_refused_before_building_it(real_ckpt):
    import re

    from colorization.checkpoint import model_from_checkpoint, net_from_checkpoint
    from tests.helpers import peak_rss_growth

    real = load_checkpoint(real_ckpt)
    assert net_from_checkpoint(real) is not None and model_from_checkpoint(real) is not None  # real ones build
    crafted = {**real, "colorization_config": {**real["colorization_config"]}}
    model = crafted["colorization_config"]["model"] = {**real["colorization_config"]["model"]}
    model["net"] = {**model["net"], "width": 4096, "max_width": 4096}  # 2.3 GiB of weights; the file: 0.2 MB
    for rebuild in (net_from_checkpoint, model_from_checkpoint):
        grown, seconds, raised = peak_rss_growth(lambda rebuild=rebuild: rebuild(crafted))
        assert isinstance(raised, CheckpointError) and re.search(
            r"builds a network of 2,30\d.\d MiB, but the checkpoint holds 0.\d MiB", str(raised)
        ), raised
        assert grown < 64 * 2**20, grown / 2**20
