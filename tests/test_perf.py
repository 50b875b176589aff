"""Guards of the fast paths: uint8 from the workers, the table-driven Lab conversion, no
per-batch host-to-device copies in the device transforms, and the speed switches."""

from __future__ import annotations

import subprocess
import sys
from unittest import mock

import kornia.color
import pytest
import torch

from colorization.color import lab_to_rgb, lab_to_rgb_preserving_l, rgb_to_lab, rgb_u8_to_lab
from colorization.data import DeviceAugmentation, ImageFolder, LabDataModule
from colorization.data.datamodule import auto_workers, lab_batch
from colorization.train import train
from tests.conftest import ROOT
from tests.helpers import TINY


def every_8bit_colour() -> torch.Tensor:
    """All 2^24 8-bit sRGB colours as a (1, 3, 4096, 4096) uint8 image."""
    codes = torch.arange(256, dtype=torch.uint8)
    r, g, b = torch.meshgrid(codes, codes, codes, indexing="ij")
    return torch.stack([r, g, b]).reshape(1, 3, 4096, 4096)


def test_table_driven_lab_matches_kornia_on_every_8bit_colour():
    rgb = every_8bit_colour()
    for rows in torch.split(torch.arange(4096), 1024):  # in parts: bounded memory
        part = rgb[:, :, rows]
        error = (rgb_u8_to_lab(part) - kornia.color.rgb_to_lab(part.float() / 255)).abs().amax(dim=(0, 2, 3))
        assert error.max() < 0.05, error  # L, a, b
        lightness = rgb_u8_to_lab(part, lightness_only=True)
        assert torch.equal(lightness, rgb_u8_to_lab(part)[:, :1])


def test_float_conversions_equal_kornia():
    torch.manual_seed(0)
    rgb = torch.rand(2, 3, 40, 50)
    assert torch.allclose(rgb_to_lab(rgb), kornia.color.rgb_to_lab(rgb), atol=1e-4)
    lab = kornia.color.rgb_to_lab(rgb) * torch.tensor([1.0, 1.8, 1.8])[:, None, None]  # some out of gamut
    for clip in (True, False):
        assert torch.allclose(lab_to_rgb(lab, clip), kornia.color.lab_to_rgb(lab, clip), atol=1e-5)


def test_gpu_and_cpu_forms_of_the_colour_matrices_agree():
    from colorization.color import _MATRICES, _apply

    x = torch.rand(2, 3, 5, 7)
    for name in _MATRICES:
        assert torch.allclose(_apply(name, x, rows=True), _apply(name, x, rows=False), atol=1e-5), name


def test_device_transforms_build_no_tensors_per_batch(photos):
    """torch.tensor(..., device=cuda) inside a per-batch transform is a blocking copy that
    makes the CPU wait for the GPU (Kornia's colour conversions do it): none of ours may."""
    u8 = torch.from_numpy(photos["coffee"][:64, :64].copy()).permute(2, 0, 1)[None].repeat(4, 1, 1, 1)
    augment = DeviceAugmentation()
    theta = augment.sample(4, 64, 64)  # drawn by the data workers

    def every_transform() -> None:
        lab_batch(u8)
        lab_batch(augment(u8, theta).div_(255))
        lab_to_rgb_preserving_l(rgb_to_lab(u8.float() / 255) * 1.5)

    every_transform()  # the first batch builds the constants on the device, once
    with mock.patch("torch.tensor", side_effect=AssertionError("torch.tensor called per batch")):
        every_transform()


def test_device_transforms_are_a_few_batched_kernels(photo_dir):
    """On a GPU the main process's cost per batch is one launch per tensor op: the training
    transforms (augmentation + Lab) must stay a handful of batched ops, none per photo.
    Counted on the meta device, which takes the GPU form of the maths (the Kornia-style path
    this replaced dispatched 126 per training batch, 61 per evaluation batch)."""
    from experiments.perf.harness import count_ops

    dm = LabDataModule(ImageFolder(photo_dir), image_size=32, batch_size=4, num_workers=0,
                       fractions=(1.0, 0.0, 0.0), augment=DeviceAugmentation())  # fmt: skip
    dm.setup("fit")
    images, theta = next(iter(dm.train_dataloader()))
    counts = {}
    for n in (4, 32):
        batch = [images.repeat(n // 4, 1, 1, 1).to("meta"), theta.repeat(n // 4, 1, 1).to("meta")]
        dm.device_transforms(batch), dm.device_transforms(batch[0])  # constants: once per device
        counts[n] = (count_ops(lambda b=batch: dm.device_transforms(b)),
                     count_ops(lambda b=batch: dm.device_transforms(b[0])))  # fmt: skip
    assert counts[4] == counts[32]  # nothing per photo
    training, evaluation = counts[32]
    assert training <= 30 and evaluation <= 22, counts


def test_batches_leave_the_workers_as_uint8_and_move_without_blocking(photo_dir):
    dm = LabDataModule(ImageFolder(photo_dir), image_size=32, batch_size=2, num_workers=1, fractions=(1.0, 0.0, 0.0))
    dm.setup("fit")
    raw = next(iter(dm.train_dataloader()))  # through a real worker process
    assert raw.dtype == torch.uint8 and raw.shape == (2, 3, 32, 32)
    dm.pin_memory = True
    batch = mock.MagicMock()
    dm.transfer_batch_to_device(batch, torch.device("cuda", 0), 0)
    batch.to.assert_called_once_with(torch.device("cuda", 0), non_blocking=True)
    assert dm.transfer_batch_to_device(raw, torch.device("cpu"), 0).dtype == torch.uint8


def test_auto_workers_is_one_per_core_up_to_8():
    assert 1 <= auto_workers("auto") <= 8
    assert auto_workers(0) == 0 and auto_workers(3) == 3
    with pytest.raises(ValueError, match="num_workers"):
        auto_workers(-1)


def test_augmentation_keeps_non_square_photos_undistorted(photos):
    rgb = torch.from_numpy(photos["chelsea"].copy()).permute(2, 0, 1)[None].float().div(255)  # 451 x 300
    torch.manual_seed(0)
    turned = DeviceAugmentation(hflip=0, rotation=0, shear=0.0)(rgb)
    assert torch.equal(turned, rgb)  # everything off: untouched
    small = DeviceAugmentation(hflip=0, rotation=0.5, shear=0.0)(rgb)  # half a degree: nearly the photo
    assert (small - rgb).abs().mean() < 0.02


def test_channels_last_switch_trains_and_keeps_checkpoint_names(compose_cfg, tmp_path):
    metrics = train(compose_cfg("debug=fdr", *TINY, "model.channels_last=true", "trainer.accelerator=cpu"))
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    plain = compose_cfg(*TINY, "trainer.max_epochs=1", "trainer.accelerator=cpu", "compare_gray=false", "test=false",
                        "model.channels_last=true")  # fmt: skip
    train(plain)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(not k.startswith("net._orig_mod") for k in state)
    assert state["net.down.0.0.weight"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_benchmark_quick_run_prints_every_section(tmp_path):
    out = tmp_path / "results.md"
    cmd = [sys.executable, "experiments/perf/run.py", "--quick", "--skip-24mp", "--steps", "2", "--repeats", "2"]
    result = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    table = out.read_text()
    needles = ("input pipeline", "seed-style reference", "device transforms", "tensor ops per batch", "ms per batch",
               "pipeline efficiency", "synthetic on device", "speed switch", "inference", "Epoch start")  # fmt: skip
    for needle in needles:
        assert needle in table


def test_the_kornia_lab_switch_gives_the_same_batches(photo_dir, compose_cfg):
    """data.lab=kornia (kornia.color.rgb_to_lab) and the default fused conversion feed the
    model the same batches to 1e-3, training (augmented) and evaluation alike."""
    assert compose_cfg().data.lab == "fused" and compose_cfg("data.lab=kornia").data.lab == "kornia"
    dm = LabDataModule(ImageFolder(photo_dir), image_size=32, batch_size=4, num_workers=0,
                       fractions=(0.6, 0.2, 0.2), augment=DeviceAugmentation())  # fmt: skip
    dm.setup("fit")
    train, evaluation = next(iter(dm.train_dataloader())), next(iter(dm.val_dataloader()))
    for batch in (train, evaluation):
        dm.lab = "fused"
        fused = dm.device_transforms(batch)
        dm.lab = "kornia"
        kornia_batch = dm.device_transforms(batch)
        for key in ("L", "ab", "rgb"):
            assert (fused[key] - kornia_batch[key]).abs().max() < 1e-3, key
        assert fused["ab"].abs().max() > 0.05  # real colour, not a trivial match
    with pytest.raises(ValueError, match="data.lab must be one of"):
        LabDataModule(ImageFolder(photo_dir), lab="skimage")
