"""User colour hints: how they are drawn in training, read from a file, and used by ``colorize``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorization.color import AB_SCALE, rgb_u8_to_lab
from colorization.colorize import main
from colorization.hints import (
    HintsError,
    hint_channels,
    paint,
    parse_hints,
    points_hints,
    read_hints,
    sample_hints,
)
from colorization.inference.model import load_colorizer
from tests.helpers import tiny_checkpoint


@pytest.fixture(scope="module")
def hints_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(
        tmp_path_factory.mktemp("hints"), "model.net.width=8", "model.net.depth=2", "model.hints=true"
    )


def lab_ab(rgb: tuple[int, int, int]) -> torch.Tensor:
    return rgb_u8_to_lab(torch.tensor(rgb, dtype=torch.uint8).reshape(1, 3, 1, 1))[0, 1:, 0, 0]


def test_training_hints_follow_zhang_2017():
    ab = torch.rand(4000, 2, 24, 32) * 0.8 - 0.4
    hints = sample_hints(ab, torch.Generator().manual_seed(0))
    mask = hints[:, 2]
    # the number of points is geometric with p = 1/8: 1/8 of the photos get none, the mean is 7
    no_hint = float((mask.sum(dim=(1, 2)) == 0).float().mean())
    assert 0.10 < no_hint < 0.15, no_hint
    assert torch.equal(sample_hints(ab[:8], torch.Generator().manual_seed(3)),
                       sample_hints(ab[:8], torch.Generator().manual_seed(3)))  # fmt: skip
    # where revealed, the hint is the mean true ab over a square patch of 1..9 px (here: one patch)
    one = torch.zeros(1, 2, 20, 20)
    one[0, 0, 5:8, 5:8] = 0.3
    painted = paint(one, torch.tensor([0]), torch.tensor([6]), torch.tensor([6]), torch.tensor([5]))
    assert painted[0, 2].sum() == 25 and painted[0, 2, 4:9, 4:9].all()
    assert torch.allclose(painted[0, 0, 4:9, 4:9], torch.full((5, 5), 0.3 * 9 / 25))
    assert painted[0, :2][:, painted[0, 2] == 0].abs().max() == 0  # nothing outside the patch
    # the benchmark's exact counts
    exact = points_hints(ab[:3], 10, torch.Generator().manual_seed(1))
    assert [int(m.sum()) for m in exact[:, 2]] <= [10, 10, 10] and exact[:, 2].sum() >= 27


def test_validation_hints_are_the_same_every_epoch(compose_cfg):
    from hydra.utils import instantiate

    cfg = compose_cfg("model=skip_cae", "model.hints=true", "model.net.width=8", "model.net.depth=2")
    module = instantiate(cfg.model)
    batch = {"L": torch.zeros(2, 1, 16, 16), "ab": torch.rand(2, 2, 16, 16) - 0.5}
    first, again = module.prepare_batch(batch, "val", 3), module.prepare_batch(batch, "val", 3)
    assert torch.equal(first["hints"], again["hints"])
    assert module.network_input(first).shape == (2, 4, 16, 16)
    assert not torch.equal(first["hints"], module.prepare_batch(batch, "val", 4)["hints"])


def test_unet_takes_hints_at_any_size(compose_cfg):
    from hydra.utils import instantiate

    module = instantiate(compose_cfg("model=unet", "model.hints=true", "model.net.pretrained=false").model)
    l_norm = torch.rand(2, 1, 40, 56) * 2 - 1
    hints = sample_hints(torch.rand(2, 2, 40, 56) - 0.5, torch.Generator().manual_seed(0))
    assert module.net(torch.cat([l_norm, hints], dim=1)).shape == (2, 2, 40, 56)
    assert module.inference_spec()["hints"] is True


def test_unet_spreads_hints_over_the_photo():
    from colorization.models.unet import FIELD_CHANNELS, hint_field

    red, blue = torch.tensor([0.3, -0.2]), torch.tensor([-0.2, 0.3])
    ab = torch.zeros(1, 2, 96, 128)
    ab[0, :, :48] = red[:, None, None]
    ab[0, :, 48:] = blue[:, None, None]
    hints = paint(ab, torch.tensor([0, 0]), torch.tensor([20, 84]), torch.tensor([20, 110]), torch.tensor([3, 3]))
    field = hint_field(hints)
    assert field.shape == (1, FIELD_CHANNELS, 24, 32)  # a grid of 4 px cells
    mean = (red + blue) / 2
    # near each hint: its colour, in both spread fields (8 and 24 px), and "much hint is near"
    for (y, x), colour in (((5, 5), red), ((21, 27), blue)):
        for i in (0, 1):
            assert torch.allclose(field[0, 3 * i : 3 * i + 2, y, x], colour, atol=0.03)
            assert field[0, 3 * i + 2, y, x] > 0.4
    # far from both (92 and 110 px away) the narrow field is the mean revealed colour, with
    # nothing near; the wide one still leans to the nearer hint
    far = field[0, :, 23, 0]
    assert torch.allclose(far[:2], mean, atol=1e-4) and far[2] < 1e-4
    assert torch.dot(far[3:5] - mean, red - mean) > 0
    # smooth everywhere: no edge where a Gaussian ends for the decoder to copy
    for axis in (2, 3):
        assert field[:, [0, 1, 3, 4]].diff(dim=axis).abs().max() < 0.1
    # everywhere: the mean of the revealed colours and "there is a hint"
    assert torch.allclose(field[0, -3:], torch.tensor([*mean, 1.0])[:, None, None].expand(3, 24, 32), atol=1e-5)
    assert hint_field(torch.zeros(1, 3, 96, 128)).abs().max() == 0  # no hint: all zero


def test_unet_hint_field_is_opt_in_so_older_hint_checkpoints_load(compose_cfg):
    from hydra.utils import instantiate

    from colorization.models import EffNetUNet

    # a checkpoint of a hint model made before hint_field existed rebuilds its net from a config
    # without the key: the default must give its exact parameters
    before = EffNetUNet(hints=True, pretrained=False)
    assert not before.hint_field
    assert before.decoder[0].convs[0][0].in_channels == 320 + 112 + 3
    cfg = compose_cfg("model=unet", "model.hints=true", "model.net.pretrained=false")
    assert instantiate(cfg.model).net.hint_field  # what training builds now


@pytest.mark.parametrize("model", ["cae", "fusion"])
def test_hints_on_a_model_without_hint_channels_is_a_clear_error(compose_cfg, model):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    with pytest.raises((ValueError, InstantiationException), match="takes no hint channels"):
        instantiate(compose_cfg(f"model={model}", "model.hints=true").model)


def test_hints_file_is_checked_key_by_key(tmp_path):
    good = {"points": [{"x": 3, "y": 4.5, "color": "#ff0000"}, {"x": 1, "y": 1, "color": [0, 0, 255], "size": 3}]}
    (tmp_path / "h.json").write_text(json.dumps(good))
    hints = read_hints(tmp_path / "h.json")
    assert [(h.x, h.y, h.rgb, h.size) for h in hints] == [(3.0, 4.5, (255, 0, 0), None), (1.0, 1.0, (0, 0, 255), 3)]
    assert parse_hints([]) == []
    bad = {
        "not json": "{points: oops",
        "not an object": json.dumps({"points": [1]}),
        "unknown keys": json.dumps({"points": [], "extra": 1}),
        "'color'": json.dumps({"points": [{"x": 1, "y": 1, "color": "red"}]}),
        "numbers": json.dumps({"points": [{"x": "1", "y": 1, "color": "#000000"}]}),
        "'size'": json.dumps({"points": [{"x": 1, "y": 1, "color": "#000000", "size": 0}]}),
        "more than 1000": json.dumps({"points": [{"x": 1, "y": 1, "color": "#000000"}] * 1001}),
        "not JSON (digits)": '{"points": [{"x": 1' + "0" * 5000 + ', "y": 1, "color": "#000000"}]}',
        "numbers (huge)": '{"points": [{"x": 1' + "0" * 400 + ', "y": 1, "color": "#000000"}]}',
        "'color' (signs)": json.dumps({"points": [{"x": 1, "y": 1, "color": "#-1-1-1"}]}),
    }
    for reason, text in bad.items():
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(HintsError, match="bad.json") as error:
            read_hints(tmp_path / "bad.json")
        expected = reason.split()[0].strip("'")
        assert expected in str(error.value) or reason == "not an object", (reason, error.value)
    (tmp_path / "big.json").write_bytes(b" " * (2 << 20))
    with pytest.raises(HintsError, match="larger than 1024 KiB"):
        read_hints(tmp_path / "big.json")


def test_hint_positions_scale_from_the_photo_to_the_working_size():
    (hint,) = parse_hints([{"x": 99, "y": 0, "color": "#00ff00", "size": 2}])
    channels = hint_channels([hint], (50, 100), (25, 50))  # half size
    ys, xs = torch.nonzero(channels[0, 2], as_tuple=True)
    assert set(xs.tolist()) == {49} and set(ys.tolist()) == {0}
    assert torch.allclose(channels[0, :2, 0, 49], lab_ab((0, 255, 0)) / AB_SCALE, atol=1e-4)
    with pytest.raises(HintsError, match=r"hint 0 at \(100, 0\) is outside the 100x50 photo"):
        hint_channels(parse_hints([{"x": 100, "y": 0, "color": "#00ff00"}]), (50, 100), (25, 50))


def test_colorize_follows_hints_and_colours_without_them(hints_ckpt, ckpt_plain, photos, tmp_path, capsys):
    photo = photos["coffee"]
    height, width = photo.shape[:2]
    Image.fromarray(photo).save(tmp_path / "coffee.png")
    point = {"x": width // 3, "y": height // 2, "color": "#1f77b4", "size": max(4, height // 12)}
    (tmp_path / "hints.json").write_text(json.dumps({"points": [point]}))
    args = [str(tmp_path / "coffee.png"), "--ckpt", str(hints_ckpt)]
    assert main([*args, "-o", str(tmp_path / "with"), "--hints", str(tmp_path / "hints.json")]) == 0
    assert main([*args, "-o", str(tmp_path / "without")]) == 0
    with_hint = np.asarray(Image.open(tmp_path / "with" / "coffee.png"))
    assert with_hint.shape == photo.shape
    lab = rgb_u8_to_lab(torch.from_numpy(with_hint.transpose(2, 0, 1).copy())[None])[0]
    near = lab[1:, point["y"] - 1 : point["y"] + 2, point["x"] - 1 : point["x"] + 2].mean(dim=(1, 2))
    wanted = lab_ab((31, 119, 180))
    # the photo's own L is kept, so the hue is the hint's and the chroma close to it
    assert torch.dot(near, wanted) / (near.norm() * wanted.norm()) > 0.95 and near.norm() > 0.6 * wanted.norm()
    without = np.asarray(Image.open(tmp_path / "without" / "coffee.png"))
    assert np.abs(without.astype(int) - with_hint.astype(int)).max() > 30
    # a hint outside the photo: one line for that photo; a model without hints: refused before any work
    (tmp_path / "far.json").write_text(json.dumps([{"x": width + 5, "y": 1, "color": "#000000"}]))
    assert main([*args, "-o", str(tmp_path / "far"), "--hints", str(tmp_path / "far.json")]) == 1
    assert "outside the" in capsys.readouterr().err
    plain = [str(tmp_path / "coffee.png"), "--ckpt", str(ckpt_plain), "-o", str(tmp_path / "p")]
    assert main([*plain, "--hints", str(tmp_path / "hints.json")]) == 2
    assert "--hints needs a checkpoint trained with hints" in capsys.readouterr().err


def test_a_hints_model_without_hints_colours_automatically(hints_ckpt):
    colorizer, _ = load_colorizer(hints_ckpt, torch.device("cpu"))
    assert colorizer.takes_hints
    l_norm = torch.rand(2, 1, 32, 48) * 2 - 1
    automatic = colorizer(l_norm)
    assert torch.equal(automatic, colorizer(l_norm, hints=torch.zeros(2, 3, 32, 48)))


@pytest.fixture(scope="module")
def ckpt_plain(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("plain"), "model.net.width=8", "model.net.depth=2")
