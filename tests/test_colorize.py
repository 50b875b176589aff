"""The ``colorize`` command: full-resolution output, every kind of bad file, safe outputs, export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.core.global_hydra import GlobalHydra
from kornia.color import lab_to_rgb
from PIL import Image
from skimage.color import rgb2lab

from colorization.color import lab_to_rgb_preserving_l
from colorization.colorize import main
from colorization.compose import compose_config
from colorization.inference.export import export_model
from colorization.inference.fullres import compose_full_resolution
from colorization.inference.model import Colorizer
from colorization.train import build_model
from tests.conftest import ROOT
from tests.helpers import digest, png_header_only, tiny_checkpoint

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*exists and is not empty.*"),
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("skip_cae"), "model.net.width=8", "model.net.depth=2")


def mixed_folder(root: Path, photos: dict[str, np.ndarray]) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Every kind of file a user's folder holds -> ({good file: expected output (w, h)}, [bad files])."""
    root.mkdir(parents=True)
    astronaut, coffee = photos["astronaut"], photos["coffee"]
    good: dict[str, tuple[int, int]] = {}

    def save(name: str, image: Image.Image, **kwargs) -> None:
        image.save(root / name, **kwargs)
        good[name] = image.size

    save("gray_odd.png", Image.fromarray(astronaut).convert("L").resize((1023, 677)))
    save("colour.jpg", Image.fromarray(coffee))
    save("deep16.png", Image.fromarray(np.asarray(Image.fromarray(coffee).convert("L"), np.uint16) * 257))
    save("cmyk.jpg", Image.fromarray(coffee).convert("CMYK"))
    rgba = Image.fromarray(astronaut).convert("RGBA")
    rgba.putalpha(128)
    save("alpha.png", rgba)
    save("palette.png", Image.fromarray(coffee).convert("P", palette=Image.Palette.ADAPTIVE))
    save("one_pixel.png", Image.new("RGB", (1, 1), (120, 60, 30)))
    save("large.jpg", Image.fromarray(coffee).resize((2400, 1601)), quality=80)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    (sub := root / "nested" / "deeper").mkdir(parents=True)
    Image.fromarray(coffee).save(sub / "rotated.jpg", exif=exif)
    good["nested/deeper/rotated.jpg"] = (coffee.shape[0], coffee.shape[1])  # displayed upright: w, h swapped

    (root / "corrupt.jpg").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    whole = (root / "colour.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("this is not an image\n")
    png_header_only(root / "bomb.png", 40_000, 40_000)
    (root / "readme.txt").write_text("not an image extension: ignored, not an error\n")
    return good, ["corrupt.jpg", "truncated.jpg", "empty.png", "notes.png", "bomb.png"]


def test_folder_of_good_and_bad_files(ckpt, photos, tmp_path, capsys):
    good, bad = mixed_folder(tmp_path / "in", photos)
    before = digest(tmp_path / "in")
    code = main([str(tmp_path / "in"), "--ckpt", str(ckpt), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    for name, size in good.items():
        out = (tmp_path / "out" / name).with_suffix(".png")
        with Image.open(out) as image:
            assert (image.size, image.mode) == (size, "RGB"), name
    errors = [line for line in err.splitlines() if line.startswith("colorize: error:")]
    assert len(errors) == len(bad)
    for name in bad:
        assert sum(name in line for line in errors) == 1, f"{name} not reported once in:\n{err}"
    assert "over the limit of 200,000,000" in next(line for line in errors if "bomb.png" in line)
    assert f"{len(good)} done, 0 skipped (output exists), {len(bad)} failed" in err
    assert "Traceback" not in err
    assert digest(tmp_path / "in") == before  # inputs untouched
    assert not list((tmp_path / "out").rglob(".*"))  # no temporary files left behind


def test_gray_input_keeps_its_lightness_at_its_size(ckpt, photos, tmp_path):
    gray = Image.fromarray(photos["astronaut"]).convert("L").resize((1023, 677))
    gray.save(tmp_path / "gray.png")
    # a huge saturation boost (the 1-epoch model is nearly gray) pushes colours out of sRGB:
    # L must survive the gamut mapping
    assert main([str(tmp_path / "gray.png"), "--ckpt", str(ckpt), "-o", str(tmp_path), "--format", "jpg",
                 "--quality", "100", "--saturation", "40"]) == 0  # fmt: skip
    assert (
        main([str(tmp_path / "gray.png"), "--ckpt", str(ckpt), "-o", str(tmp_path / "png"), "--saturation", "40"]) == 0
    )
    l_in = rgb2lab(np.asarray(gray.convert("RGB")))[..., 0]
    out = np.asarray(Image.open(tmp_path / "png" / "gray.png"))
    assert out.shape == (677, 1023, 3)
    lab_out = rgb2lab(out)
    assert np.abs(lab_out[..., 0] - l_in).max() <= 0.5
    assert np.hypot(lab_out[..., 1], lab_out[..., 2]).mean() > 5  # it is coloured
    jpg = rgb2lab(np.asarray(Image.open(tmp_path / "gray.jpg")))
    assert np.abs(jpg[..., 0] - l_in).mean() < 1.0  # JPEG is lossy, but close


def test_existing_outputs_are_skipped_and_inputs_never_overwritten(ckpt, photos, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(photos["chelsea"]).save(folder / "cat.png")
    Image.fromarray(photos["rocket"]).save(folder / "rocket.jpg")
    before = digest(folder)
    # -o is the input folder: cat.png would be overwritten (refused), rocket.jpg -> rocket.png is fine
    assert main([str(folder), "--ckpt", str(ckpt), "-o", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "cat.png would overwrite an input" in err and "1 done" in err
    assert {k: v for k, v in digest(folder).items() if k in before} == before
    (folder / "rocket.png").unlink()  # the output written next to its input
    # outputs in a sub-folder of the input are not inputs next time; existing outputs are skipped
    out = folder / "colorized"
    assert main([str(folder), "--ckpt", str(ckpt), "-o", str(out)]) == 0
    written = (out / "cat.png").stat().st_mtime_ns
    assert main([str(folder), "--ckpt", str(ckpt), "-o", str(out)]) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().err
    assert (out / "cat.png").stat().st_mtime_ns == written
    assert main([str(folder / "*.png"), "--ckpt", str(ckpt), "-o", str(out), "--overwrite"]) == 0
    assert "1 done, 0 skipped" in capsys.readouterr().err
    assert not (out / "colorized").exists()


def test_compare_panels_and_console_script(ckpt, photos, tmp_path):
    Image.fromarray(photos["coffee"]).save(tmp_path / "coffee.jpg")
    cmd = [sys.executable, "-m", "colorization.colorize", str(tmp_path / "coffee.jpg"), "--ckpt", str(ckpt)]
    cmd.insert(1, "-Ximporttime")  # which modules the command loads, on stderr
    result = subprocess.run([*cmd, "-o", str(tmp_path / "out"), "--compare"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")
    }
    assert "colorization.models.skip_cae" in imported
    assert not {m for m in imported if m.split(".")[0] in ("lightning", "torchmetrics")}  # seconds of start-up
    height, width = photos["coffee"].shape[:2]
    with Image.open(tmp_path / "out" / "coffee_compare.png") as panel:
        assert panel.height == height and panel.width > 3 * width  # gray | colorized | original


def test_network_alone_colours_as_the_whole_trained_module(ckpt, monkeypatch):
    """The net alone, as the task described it in the checkpoint, is the trained module's
    colorizer; a checkpoint without that description goes through the LightningModule."""
    from colorization.checkpoint import load_checkpoint, model_from_checkpoint
    from colorization.inference import model as inference_model

    checkpoint = load_checkpoint(ckpt)
    assert checkpoint["inference"] == {"output": "ab", "samples": False}
    modules = []
    monkeypatch.setattr(
        inference_model, "model_from_checkpoint", lambda c: modules.append(model_from_checkpoint(c)) or modules[-1]
    )
    light = inference_model.colorizer_from_checkpoint(checkpoint).eval()
    assert not modules  # Lightning never imported for it (test_compare_panels_and_console_script)
    del checkpoint["inference"]  # written before tasks described their inference
    full = inference_model.colorizer_from_checkpoint(checkpoint).eval()
    assert len(modules) == 1 and full.net is modules[0].net
    l_norm = torch.rand(2, 1, 48, 48) * 2 - 1
    with torch.no_grad():
        assert torch.equal(light(l_norm), full(l_norm))


def test_missing_inputs_are_reported_and_the_rest_done(ckpt, photos, tmp_path, capsys):
    Image.fromarray(photos["coffee"]).save(tmp_path / "coffee.jpg")
    args = [str(tmp_path / "coffee.jpg"), str(tmp_path / "nope.jpg"), str(tmp_path / "*.tif"), str(tmp_path / "empty")]
    (tmp_path / "empty").mkdir()
    assert main([*args, "--ckpt", str(ckpt), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "nope.jpg: no such file or folder" in err and "*.tif: no file matches" in err and "empty: no images" in err
    assert "1 done, 0 skipped (output exists), 3 failed" in err


def test_bad_checkpoint_and_bad_options_stop_with_one_line(ckpt, photos, tmp_path, capsys):
    Image.fromarray(photos["coffee"]).save(tmp_path / "coffee.jpg")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    assert main([str(tmp_path / "coffee.jpg"), "--ckpt", str(tmp_path / "junk.ckpt"), "-o", str(tmp_path / "o")]) == 2
    assert "junk.ckpt is not a readable checkpoint" in capsys.readouterr().err
    assert main([str(tmp_path / "coffee.jpg"), "--ckpt", str(ckpt), "-o", str(tmp_path / "o"), "--samples", "2"]) == 2
    assert "--samples needs a model that can sample" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "coffee.jpg"), "--ckpt", str(ckpt), "-o", str(tmp_path / "o"), "--batch-size", "0"])
    assert not (tmp_path / "o").exists()


def altered_checkpoint(ckpt: Path, path: Path, change) -> Path:
    """A copy of ``ckpt`` with ``change(checkpoint)`` applied (as a careless or hostile edit would)."""
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)
    return path


def test_a_checkpoint_saying_it_samples_without_a_latent_colours_and_refuses_samples(ckpt, photos, tmp_path, capsys):
    """``inference.samples: true`` stored beside a network without a latent (a skip-CAE): the
    network decides; ``--samples 1`` is one line (was a 41-line traceback), colouring works."""
    liar = altered_checkpoint(ckpt, tmp_path / "liar.ckpt", lambda c: c["inference"].update(samples=True))
    Image.fromarray(photos["coffee"]).save(tmp_path / "coffee.jpg")
    args = [str(tmp_path / "coffee.jpg"), "--ckpt", str(liar), "-o", str(tmp_path / "o")]
    assert main([*args, "--samples", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--samples needs a model that can sample" in err[0], err
    assert main(args) == 0 and (tmp_path / "o" / "coffee.png").is_file()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_named_as_such(value, ckpt, photos, tmp_path, capsys):
    def poison(checkpoint: dict) -> None:
        name = next(k for k in checkpoint["state_dict"] if k.endswith("weight"))
        checkpoint["state_dict"][name].view(-1)[0] = value

    bad = altered_checkpoint(ckpt, tmp_path / "bad.ckpt", poison)
    Image.fromarray(photos["coffee"]).save(tmp_path / "coffee.jpg")
    assert main([str(tmp_path / "coffee.jpg"), "--ckpt", str(bad), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}: the model produces non-finite values (NaN/inf)" in err[0], err


def test_vae_samples_differ(photos, tmp_path):
    vae = tiny_checkpoint(tmp_path / "vae", "model=vae", "model.net.width=8", "model.net.depth=2")
    Image.fromarray(photos["astronaut"]).save(tmp_path / "astronaut.png")
    args = [str(tmp_path / "astronaut.png"), "--ckpt", str(vae), "-o", str(tmp_path / "out"), "--saturation", "3"]
    assert main([*args, "--samples", "2"]) == 0
    first, second = (np.asarray(Image.open(tmp_path / "out" / f"astronaut_sample{k}.png")) for k in (1, 2))
    assert (tmp_path / "out" / "astronaut.png").is_file()
    assert not np.array_equal(first, second)


def test_full_resolution_composition_equals_direct_interpolation(photos):
    rgb = np.asarray(Image.fromarray(photos["coffee"]).resize((301, 203)))
    ab = torch.rand(2, 32, 32) * 0.2 - 0.1
    strips = compose_full_resolution(rgb, ab, strip_pixels=301 * 7)  # 7 rows per strip, last one short
    up = F.interpolate(ab[None], size=(203, 301), mode="bilinear", align_corners=False)[0] * 110
    lightness = torch.from_numpy(rgb2lab(rgb)[..., 0]).float()
    direct = lab_to_rgb(torch.cat([lightness[None], up])[None], clip=False)[0].permute(1, 2, 0).numpy()
    inside = ((direct >= 0) & (direct <= 1)).all(axis=-1)  # outside, colours are pulled towards gray
    assert inside.mean() > 0.5
    assert np.abs(strips[inside].astype(float) - direct[inside] * 255).max() <= 1.0


def test_out_of_gamut_colours_keep_their_lightness():
    lightness = torch.linspace(2, 98, 49).repeat(2, 1)
    ab = torch.tensor([[90.0], [-100.0]]).expand(2, 49)  # a very saturated orange-green hue
    lab = torch.stack([lightness, ab[:1].expand(2, 49), ab[1:].expand(2, 49)])[None]
    mapped = lab_to_rgb_preserving_l(lab)
    assert mapped.min() >= 0 and mapped.max() <= 1
    l_back = rgb2lab(mapped[0].permute(1, 2, 0).double().numpy())[..., 0]
    assert np.abs(l_back - lightness.numpy()).max() < 0.05
    assert (np.abs(rgb2lab(lab_to_rgb(lab)[0].permute(1, 2, 0).double().numpy())[..., 0] - lightness.numpy())).max() > 5
    mild = lab[..., 10:40].clone()  # L from 22 to 80
    mild[:, 1:] = 5.0
    assert torch.allclose(lab_to_rgb_preserving_l(mild), lab_to_rgb(mild), atol=1e-6)


class _SizeBranch(torch.nn.Module):
    """A network whose colour depends on a branch taken on the size: odd widths see the photo
    mirrored."""

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        x = l_norm.flip(-1) if l_norm.shape[-1] % 2 else l_norm
        return torch.cat([x, x.roll(1, -1)], dim=1) * 0.3


def test_a_network_that_takes_one_size_is_exported_square_with_a_note(tmp_path, capsys):
    """A network whose free-size program colours another size differently (it branches on the
    size) is exported at the working size, square, with a note; colorize letterboxes photos
    for it."""
    pytest.importorskip("onnxruntime")
    from colorization.inference.model import OnnxColorizer

    colorizer = Colorizer(_SizeBranch()).eval()
    export_model(colorizer, torch.zeros(2, 1, 48, 48), tmp_path / "m.onnx", "onnx")
    assert "note: the network takes one size only: exported at 48 px square" in capsys.readouterr().err
    onnx = OnnxColorizer(tmp_path / "m.onnx")
    assert (onnx.fixed_size, onnx.size, onnx.multiple) == (48, 48, 1)
    l_norm = torch.rand(2, 1, 48, 48) * 2 - 1
    assert torch.allclose(onnx(l_norm), colorizer(l_norm), atol=1e-6)


class _PadsTo32(torch.nn.Module):
    """A network that pads its input to a multiple of 32 as unet does (edge pixels repeated,
    cropped back) around a TF-"same" strided convolution (timm's ``Conv2dSame``, as in unet's
    encoder)."""

    multiple = 32

    def __init__(self) -> None:
        super().__init__()
        from timm.layers import Conv2dSame

        self.down = Conv2dSame(1, 4, 3, stride=2)
        self.out = torch.nn.Conv2d(5, 2, 3, padding=1)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        height, width = l_norm.shape[-2:]
        pad_h, pad_w = -height % 32, -width % 32
        x = F.pad(l_norm, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else l_norm
        h = F.interpolate(self.down(x), scale_factor=2, mode="bilinear")
        return torch.tanh(self.out(torch.cat([h, x], dim=1)))[..., :height, :width]


def test_a_network_that_pads_to_a_multiple_is_exported_for_any_multiple_and_colours_as_its_checkpoint(
    photos, tmp_path, capsys
):
    """unet pads to a multiple of 32, so its ONNX program takes heights and widths of 32 (any
    multiple, stored in the file): colorize pads each photo as the network itself does and
    crops, for both, so a 3:2 photo gets the checkpoint's colours (the square export of before
    letterboxed it: mean 7.7 levels apart, up to 80). unet itself: the slow test below."""
    pytest.importorskip("onnxruntime")
    import argparse

    from colorization.inference.jobs import predict
    from colorization.inference.model import OnnxColorizer

    torch.manual_seed(0)
    colorizer = Colorizer(_PadsTo32()).eval()
    export_model(colorizer, torch.zeros(2, 1, 48, 48), tmp_path / "m.onnx", "onnx")
    assert "note" not in capsys.readouterr().err
    onnx = OnnxColorizer(tmp_path / "m.onnx")
    assert (onnx.fixed_size, onnx.size, onnx.multiple) == (None, 48, 32)
    assert photos["chelsea"].shape[:2] == (75, 113)  # 3:2, neither side a multiple of 32
    shots = [photos["chelsea"], photos["chelsea"][:40].copy()]
    args, generator = argparse.Namespace(size=48, samples=0), torch.Generator()
    with torch.no_grad():
        expected = predict(colorizer, shots, torch.device("cpu"), args, generator)["colorized"]
    got = predict(onnx, shots, torch.device("cpu"), args, generator)["colorized"]
    assert [tuple(ab.shape) for ab in got] == [(2, 48, 72), (2, 48, 136)]  # shorter side 48
    for ab, want in zip(got, expected, strict=True):
        assert want.abs().mean() > 0.05 and (ab - want).abs().max() < 1e-5


@pytest.mark.slow
def test_unet_onnx_colours_a_3_2_photo_as_its_checkpoint(photos, tmp_path):
    """The real unet (random, perturbed weights; its export takes 20-30 s): a 3:2 photo through
    its ONNX export gets the checkpoint's ab to 1e-3 (measured 6e-5), ab and bins outputs."""
    pytest.importorskip("onnxruntime")
    import argparse

    from colorization.inference.jobs import predict
    from colorization.inference.model import OnnxColorizer
    from colorization.models.unet import EffNetUNet

    for output in ("ab", "bins"):
        torch.manual_seed(0)
        net = EffNetUNet(output=output, pretrained=False).eval()
        with torch.no_grad():
            for parameter in net.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
        colorizer = Colorizer(net, output).eval()
        export_model(colorizer, torch.zeros(2, 1, 64, 64), tmp_path / f"{output}.onnx", "onnx")
        onnx = OnnxColorizer(tmp_path / f"{output}.onnx")
        assert (onnx.fixed_size, onnx.multiple) == (None, 32)
        args, generator = argparse.Namespace(size=64, samples=0), torch.Generator()
        with torch.no_grad():
            (want,) = predict(colorizer, [photos["chelsea"]], torch.device("cpu"), args, generator)["colorized"]
        (got,) = predict(onnx, [photos["chelsea"]], torch.device("cpu"), args, generator)["colorized"]
        assert got.shape == (2, 64, 96) and want.abs().mean() > 0.05
        assert (got - want).abs().max() < 1e-3, output


# skip_cae here; the other heads (6-7 s each: the free-size export and its probe) in make test-full
SLOW = pytest.mark.slow


@pytest.mark.parametrize("model", ["skip_cae", pytest.param("vae", marks=SLOW), pytest.param("cae_rgb", marks=SLOW)])
def test_exported_models_match_pytorch(model, tmp_path):
    import onnxruntime

    small = ["model.net.width=8"]
    overrides = {"skip_cae": small, "vae": ["model=vae", *small], "cae_rgb": ["model=cae", "model.output=rgb"]}[model]
    cfg = compose_config("train", overrides, tmp_path)
    GlobalHydra.instance().clear()
    torch.manual_seed(0)
    colorizer = Colorizer.from_module(build_model(cfg)).eval()
    with torch.no_grad():
        for parameter in colorizer.parameters():  # trained-looking weights (the colour head starts at 0)
            parameter.add_(torch.randn_like(parameter) * 0.05)
        for module in colorizer.modules():  # and non-trivial normalisation statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        x = torch.rand(3, 1, 64, 64) * 2 - 1  # batch 3: not the batch size it was exported with
        expected = colorizer(x).numpy()
    assert np.abs(expected).max() > 1e-3
    export_model(colorizer, torch.zeros(2, 1, 64, 64), tmp_path / "m.onnx", "onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(["ab"], {"L": x.numpy()})
    assert onnx_out.shape == (3, 2, 64, 64)
    assert np.abs(onnx_out - expected).max() < 1e-4
    oblong = torch.rand(2, 1, 37, 90) * 2 - 1  # any height and width, odd ones too
    with torch.no_grad():
        assert np.abs(session.run(["ab"], {"L": oblong.numpy()})[0] - colorizer(oblong).numpy()).max() < 1e-4
    export_model(colorizer, torch.zeros(2, 1, 64, 64), tmp_path / "m.pt2", "pt2")
    program = torch.export.load(tmp_path / "m.pt2").module()
    with torch.no_grad():
        assert np.abs(program(x).numpy() - expected).max() < 1e-4


@pytest.mark.slow
def test_24_megapixel_photo_stays_under_2_gib(tmp_path):
    script = ROOT / "experiments" / "colorize_24mp" / "run.py"
    result = subprocess.run([sys.executable, str(script), "--work", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith(("| jpg", "| png"))]
    assert len(rows) == 2
    for row in rows:
        peak_mib = float(row[5].split()[0])
        assert peak_mib < 2048, row
    with Image.open(tmp_path / "colorized" / "photo_24mp.png") as image:
        assert image.size == (6000, 4000)


def vivid(checkpoint: dict) -> None:
    """Weights moved away from the tiny run's near-gray ones, so that the colours depend on
    what the network sees (its running BatchNorm statistics kept)."""
    generator = torch.Generator().manual_seed(0)
    for name, value in checkpoint["state_dict"].items():
        if value.is_floating_point() and "running_" not in name:
            value.add_(torch.randn(value.shape, generator=generator) * 0.05)


def test_colorize_with_an_exported_onnx_model_matches_the_checkpoint(ckpt, photos, tmp_path):
    """``colorize --onnx FILE`` colours through onnxruntime, without Lightning or Hydra, as
    the checkpoint does, a 3:2 photo too: the exported model takes any height and width, so it
    sees the photo at the checkpoint's working shape (ab to 1e-3, so the 8-bit photos to one
    level; the square export of before letterboxed it: up to 21 levels apart here)."""
    from colorization.colorize import export_main
    from colorization.inference.model import OnnxColorizer, load_colorizer

    ckpt = altered_checkpoint(ckpt, tmp_path / "vivid.ckpt", vivid)
    assert export_main(["--ckpt", str(ckpt), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    onnx, (torch_model, size) = OnnxColorizer(tmp_path / "m.onnx"), load_colorizer(ckpt, torch.device("cpu"))
    assert (onnx.size, onnx.fixed_size) == (size, None)
    l_norm = torch.rand(3, 1, size, size * 3 // 2 + 1) * 2 - 1
    with torch.no_grad():
        assert (onnx(l_norm) - torch_model(l_norm)).abs().max() < 1e-3
    assert photos["chelsea"].shape[:2] == (75, 113)  # 3:2
    Image.fromarray(photos["chelsea"]).save(tmp_path / "cat.jpg")
    base = [sys.executable, "-X", "importtime", "-m", "colorization.colorize", str(tmp_path / "cat.jpg")]
    results = {}
    for name, model in (("onnx", ["--onnx", str(tmp_path / "m.onnx")]), ("ckpt", ["--ckpt", str(ckpt)])):
        run = subprocess.run([*base, *model, "-o", str(tmp_path / name)], capture_output=True, text=True, cwd=ROOT)
        assert run.returncode == 0, run.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if "import time" in line}
        assert not {m for m in imported if m.split(".")[0] in ("lightning", "hydra", "omegaconf")}, name
        results[name] = np.asarray(Image.open(tmp_path / name / "cat.png")).astype(int)
    assert np.abs(results["onnx"] - results["ckpt"]).max() <= 1
    assert main([str(tmp_path / "cat.jpg"), "--onnx", str(tmp_path / "cat.jpg"), "-o", str(tmp_path / "x")]) == 2


# ----------------------------------------------------------------------------- aspect ratio


def test_panorama_keeps_its_aspect_and_colours_as_its_own_square_crop(ckpt, photos):
    """A 3:1 panorama goes through the network at 64 x 192, not squashed to 64 x 64: away from
    the borders its prediction is that of its own square crop (crop at x = 64, a multiple of
    the net's stride; 16 px margin). Measured: max |ab| difference 3e-8 (float rounding; 0.11
    at the crop's own borders, 2e-3 at 4 px from them), ab std 0.07; allowed 1e-4 (normalised
    ab)."""
    from colorization.inference.fullres import working_input
    from colorization.inference.model import load_colorizer

    colorizer, _ = load_colorizer(ckpt, torch.device("cpu"))
    with torch.no_grad():
        for parameter in colorizer.parameters():  # non-trivial colours (the colour head starts near 0)
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    size, offset, margin = 64, 64, 16
    panorama = np.asarray(Image.fromarray(photos["motorcycle"]).resize((3 * size, size), Image.Resampling.LANCZOS))
    crop = np.ascontiguousarray(panorama[:, offset : offset + size])
    l_panorama, l_crop = working_input(panorama, size), working_input(crop, size)
    assert l_panorama.shape == (1, size, 3 * size) and l_crop.shape == (1, size, size)
    assert torch.equal(l_panorama[..., offset : offset + size], l_crop)  # native size: no resampling
    with torch.no_grad():
        ab_panorama, ab_crop = colorizer(l_panorama[None])[0], colorizer(l_crop[None])[0]
    assert ab_panorama.shape == (2, size, 3 * size)
    inner = (slice(None), slice(margin, size - margin), slice(margin, size - margin))
    from_panorama = ab_panorama[..., offset : offset + size][inner]
    assert ab_crop[inner].std() > 0.01  # the comparison is not between two near-zero maps
    assert (from_panorama - ab_crop[inner]).abs().max() < 1e-4


def test_working_shape_keeps_the_aspect_ratio_and_caps_long_panoramas():
    from colorization.inference.fullres import MAX_ASPECT, letterbox, working_input, working_shape

    assert MAX_ASPECT == 4
    assert working_shape(100, 200, 32) == (32, 64)
    assert working_shape(300, 100, 32) == (96, 32)
    assert working_shape(677, 1023, 256) == (256, 387)  # round(1023 * 256 / 677) = 387
    assert working_shape(100, 400, 32) == (32, 128)  # 4:1 exactly: not capped
    assert working_shape(100, 1000, 32) == (13, 128)  # 10:1: long side 4 * size, short side 12.8 -> 13
    assert working_shape(1000, 100, 32) == (128, 13)
    assert working_shape(1, 5000, 32) == (1, 128)  # never 0 px
    assert working_shape(1, 1, 32) == (32, 32)
    strip = np.random.default_rng(0).integers(0, 256, (100, 1000, 3), dtype=np.uint8)
    assert working_input(strip, 32).shape == (1, 13, 4 * 32)
    l_norm, (top, left, h, w) = letterbox(strip[:, :300], 32)  # a model of one square size: 3:1 -> 11 x 32
    assert l_norm.shape == (1, 32, 32) and (top, left, h, w) == (10, 0, 11, 32)
    small = np.asarray(Image.fromarray(strip[:, :300]).resize((w, h), Image.Resampling.BILINEAR, reducing_gap=3.0))
    assert torch.equal(l_norm[:, top : top + h, left : left + w], working_input(small, h))
    assert torch.equal(l_norm[:, top - 1], l_norm[:, top + 1])  # padded by mirroring the photo


def test_non_square_photos_keep_their_size_and_aspect_in_one_batch(ckpt, photos, tmp_path, monkeypatch):
    """200x100 and 400x200 photos share a working shape (32 x 64 at the checkpoint's size 32)
    and one network batch; a 100x300 one gets its own (96 x 32); each output has its photo's
    exact size, and a photo coloured in the mixed batch is the photo coloured alone."""
    seen = []
    forward = Colorizer.forward

    def recording(self, l_norm, z=None):
        seen.append(tuple(l_norm.shape))
        return forward(self, l_norm, z)

    monkeypatch.setattr(Colorizer, "forward", recording)
    sizes = {"wide": (200, 100), "wide2": (400, 200), "tall": (100, 300)}
    for name, size in sizes.items():
        Image.fromarray(photos["coffee"]).resize(size).save(tmp_path / f"{name}.png")
    inputs = [str(tmp_path / f"{name}.png") for name in sizes]
    assert main([*inputs, "--ckpt", str(ckpt), "-o", str(tmp_path / "out"), "--batch-size", "3"]) == 0
    # seen[0]: the loader's 32 px probe, seen[1]: check_size's square
    assert seen[2:] == [(2, 1, 32, 64), (1, 1, 96, 32)]
    for name, size in sizes.items():
        with Image.open(tmp_path / "out" / f"{name}.png") as image:
            assert image.size == size
    assert main([inputs[2], "--ckpt", str(ckpt), "-o", str(tmp_path / "alone")]) == 0
    together, alone = (np.asarray(Image.open(tmp_path / d / "tall.png")).astype(int) for d in ("out", "alone"))
    assert np.abs(together - alone).max() <= 1


def test_samples_draw_the_same_latents_whatever_the_grouping():
    """z is drawn for the whole batch, sample by sample, in photo order (as when every photo
    had one shape), then each shape group gets its photos' rows."""
    import argparse

    from colorization.inference.jobs import predict

    class Stub:  # ab = the photo's z[0] everywhere
        can_sample, latent_dim = True, 3

        def __call__(self, l_norm, z=None):
            value = torch.zeros(len(l_norm)) if z is None else z[:, 0]
            return value[:, None, None, None].expand(-1, 2, *l_norm.shape[-2:]).clone()

    shapes = [(100, 200), (300, 100), (100, 200), (50, 50)]
    photos = [np.zeros((*s, 3), dtype=np.uint8) for s in shapes]
    args = argparse.Namespace(size=16, samples=2)
    out = predict(Stub(), photos, torch.device("cpu"), args, torch.Generator().manual_seed(7))
    reference = torch.Generator().manual_seed(7)
    for k in (1, 2):
        z = torch.randn(len(photos), 3, generator=reference)
        for i, ab in enumerate(out[f"sample{k}"]):
            assert ab.shape[1:] == working_shape_of(shapes[i], 16)
            assert torch.all(ab == z[i, 0])
    assert all(ab.abs().max() == 0 for ab in out["colorized"])


def working_shape_of(shape: tuple[int, int], size: int) -> tuple[int, int]:
    from colorization.inference.fullres import working_shape

    return working_shape(*shape, size)


def test_a_square_onnx_file_of_an_older_export_letterboxes_non_square_photos(ckpt, photos, tmp_path):
    """An ONNX file that takes one square size (as colorize-export wrote them before any size,
    or for a network that takes one size): the photo is letterboxed (longer side = size,
    mirrored padding) and the prediction cropped back; outputs keep the photo's size, and
    match the checkpoint network run on the same letterboxed input to one 8-bit level."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from colorization.inference.fullres import letterbox
    from colorization.inference.model import OnnxColorizer, load_colorizer

    colorizer, size = load_colorizer(ckpt, torch.device("cpu"))
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(colorizer, (torch.zeros(2, 1, size, size),), input_names=["L"], output_names=["ab"],
                                dynamic_shapes={"l_norm": {0: batch}}, dynamo=True, external_data=False)  # fmt: skip
    program.save(str(tmp_path / "m.onnx"), external_data=False)  # the older export, as it was
    assert OnnxColorizer(tmp_path / "m.onnx").fixed_size == size
    rgb = np.asarray(Image.fromarray(photos["chelsea"]).resize((200, 100)))
    Image.fromarray(rgb).save(tmp_path / "wide.png")
    Image.fromarray(photos["chelsea"]).resize((90, 270)).save(tmp_path / "tall.png")
    inputs = [str(tmp_path / "wide.png"), str(tmp_path / "tall.png")]
    assert main([*inputs, "--onnx", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "out")]) == 0
    for name, size in (("wide", (200, 100)), ("tall", (90, 270))):
        with Image.open(tmp_path / "out" / f"{name}.png") as image:
            assert image.size == size
    colorizer, size = load_colorizer(ckpt, torch.device("cpu"))
    l_norm, (top, left, h, w) = letterbox(rgb, size)
    assert l_norm.shape == (1, size, size) and (h, w) == (size // 2, size)
    with torch.no_grad():
        ab = colorizer(l_norm[None])[0, :, top : top + h, left : left + w]
    expected = compose_full_resolution(rgb, ab).astype(int)
    assert np.abs(np.asarray(Image.open(tmp_path / "out" / "wide.png")).astype(int) - expected).max() <= 1
