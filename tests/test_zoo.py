"""The model zoo: every model trains through the same DataModule, fits a batch, keeps its promises."""

from unittest import mock

import numpy as np
import pytest
import skimage.data
import torch

from colorization.checkpoint import load_checkpoint, model_from_checkpoint
from colorization.data.degrade import Degradation
from colorization.models import ConditionalVAE, FusionColorizer, LinearAE, LinearVAE, SkipCAE, StackedCAE
from colorization.models.backbones import FrozenClassifier
from colorization.tasks import ColorizationModule, ReconstructionModule, RestorationModule, VAEColorizationModule
from colorization.train import train
from tests.conftest import SHARED_DATA
from tests.helpers import TINY_DATA, options, real_batch

pytestmark = pytest.mark.filterwarnings("ignore:.*exists and is not empty.*")


@pytest.fixture(scope="module")
def backbone() -> FrozenClassifier:
    return FrozenClassifier("efficientnet_lite0")


@pytest.mark.parametrize("option", [o for o in options("model")])
def test_every_model_passes_a_fast_dev_run(compose_cfg, option):
    metrics = train(
        compose_cfg(f"model={option}", "debug=fdr", *(TINY_DATA if option != "linear_ae" else ["data=digits"]))
    )
    assert np.isfinite(metrics["train/loss"]) and np.isfinite(metrics["val/loss"])


@pytest.mark.parametrize("option", [o for o in options("model")])
def test_every_model_checkpoint_loads_with_weights_only(compose_cfg, tmp_path, option):
    overrides = [
        f"model={option}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "test=false",
    ]
    overrides += ["compare_gray=false", "callbacks.progress_bar=null", "data.num_workers=0"]
    train(compose_cfg(*overrides, *(TINY_DATA if option != "linear_ae" else ["data=digits"])))
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["colorization_config"]["model"]["_target_"].startswith("colorization.tasks.")
    # and it rebuilds through the untrusted-checkpoint guard, its weights loaded strictly
    rebuilt = model_from_checkpoint(load_checkpoint(path))
    assert all(torch.equal(v, checkpoint["state_dict"][k]) for k, v in rebuilt.state_dict().items())


def experiment_overrides(option: str, photo_dir) -> list[str]:
    if option in ("alpha", "skip_cae_landscapes") and not SHARED_DATA.is_dir():
        return [f"data.root={photo_dir}", "data.fractions=[0.6,0.2,0.2]"]
    if option == "natural_photos":  # the wiring, on a few photos (the recipe's 6,854 take a minute to scan)
        return [f"data.root=[{photo_dir}]", "data.image_size=64", "model.rebalance_batches=2"]
    if option == "imagenet":  # the 8-GPU recipe's wiring, on one CPU process over a pack of a few photos
        from colorization.data.pack import pack

        out = photo_dir.parent / "pack"
        pack([photo_dir], out, size=96, fractions=(0.6, 0.2, 0.2), scan_cache=None, workers=1, verbose=False)
        cpu = ["trainer=cpu", "trainer.devices=1", "trainer.num_nodes=1", "trainer.precision=32"]
        return [f"data.root={out}", *cpu, "data.image_size=64", "data.num_workers=0", "model.rebalance_batches=2"]
    if option == "beta":  # torchvision CIFAR-10 cannot be downloaded here: its offline override
        root = SHARED_DATA / "cifar10" / "test" if SHARED_DATA.is_dir() else photo_dir
        return ["data=folder", f"data.root={root}", "data.image_size=32", "data.fractions=[0.6,0.2,0.2]"]
    return []


#: variants of experiment=natural_photos: the same data and model, composed (not trained) below
RECIPE_VARIANTS = ("natural_photos_gpu", "study_rebalance", "study_pretrained")


@pytest.mark.parametrize("option", [o for o in options("experiment") if o not in RECIPE_VARIANTS])
def test_every_experiment_passes_a_fast_dev_run(compose_cfg, photo_dir, option):
    cfg = compose_cfg(f"experiment={option}", "debug=fdr", *experiment_overrides(option, photo_dir))
    assert np.isfinite(train(cfg)["val/loss"])


def test_the_recipe_variants_compose_on_the_recipe(compose_cfg):
    from hydra.core.hydra_config import HydraConfig

    recipe = compose_cfg("experiment=natural_photos")
    assert recipe.model.output == "bins" and recipe.model.net._target_.endswith("EffNetUNet")
    assert len(recipe.data.root) == 3 and recipe.model.rebalance_lambda == 0.5
    assert recipe.model.net.global_context and recipe.model.net.pretrained
    gpu = compose_cfg("experiment=natural_photos_gpu")
    assert (
        gpu.trainer.accelerator == "gpu"
        and gpu.data.image_size == 224
        and list(gpu.data.root) == list(recipe.data.root)
    )
    compose_cfg("experiment=study_rebalance")
    assert HydraConfig.get().sweeper.params["model.rebalance_lambda"] == "1.0,0.5"
    compose_cfg("experiment=study_pretrained")
    assert HydraConfig.get().sweeper.params["model"] == "unet,unet_scratch"


def test_beta_without_cifar10_names_the_overrides_that_run_it(compose_cfg, tmp_path):
    from colorization.data import DataSourceError

    cfg = compose_cfg("experiment=beta", "debug=fdr", f"data.root={tmp_path / 'cifar10'}")
    with pytest.raises(DataSourceError, match=r"download=true.*data=folder data\.root=DIR"):
        train(cfg)


def fit_one_batch(module, batch, steps: int = 150, lr: float = 3e-3) -> tuple[float, float]:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    module.train()
    losses = []
    for _ in range(steps):
        loss = module.model_step(batch)[0] if hasattr(module, "model_step") else module.step(batch, 0, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[0], min(losses[-10:])


SMALL_CAE = ((16, 32, 32), (32, 32, 32, 16, 16, 16), (16, 16, 16))


@pytest.mark.parametrize(
    "make, n, size, steps",
    [
        # no skips and 4x down-sampling: memorising takes more steps (and no dropout)
        (lambda: ColorizationModule(StackedCAE(blocks=SMALL_CAE, dropout=0.0)), 4, 32, 300),
        (lambda: ColorizationModule(SkipCAE(width=16, depth=3, output="rgb"), output="rgb"), 8, 48, 150),
        (lambda: ColorizationModule(FusionColorizer(width=16, depth=3)), 8, 48, 150),
        (lambda: VAEColorizationModule(ConditionalVAE(latent_dim=4, width=16, depth=3), kl_weight=1e-3), 8, 48, 150),
    ],
    ids=["cae", "skip_cae_rgb", "fusion", "vae"],
)
def test_colorizers_overfit_one_batch(make, n, size, steps):
    first, last = fit_one_batch(make(), real_batch(n, size), steps, lr=2e-3)
    assert last <= 0.2 * first, f"loss {first:.4f} -> {last:.4f}"


def test_dae_overfits_one_batch():
    module = RestorationModule(SkipCAE(width=16, depth=3, output="lab"), Degradation(noise_std=0.1, blur_p=0, jpeg_p=0))
    batch = module.prepare_batch(real_batch(), "val", 0)  # fixed degradation: one batch
    first, last = fit_one_batch(module, batch)
    assert last <= 0.2 * first, f"loss {first:.4f} -> {last:.4f}"


def test_digit_autoencoders_overfit_one_batch():
    from sklearn.datasets import load_digits

    batch = {"image": torch.from_numpy(load_digits().images[:32]).float()[:, None] / 16}
    for net in (LinearAE(hidden=(64,), latent_dim=16), LinearVAE(hidden=(64,), latent_dim=16)):
        first, last = fit_one_batch(ReconstructionModule(net, kl_weight=1e-4), batch, steps=400)
        assert last <= 0.2 * first, f"{type(net).__name__}: loss {first:.4f} -> {last:.4f}"


@pytest.mark.parametrize("size", [(150, 150), (97, 131), (33, 47)])
def test_colorizers_keep_any_input_size(size, backbone):
    x = torch.zeros(2, 1, *size)
    nets = [StackedCAE(first_kernel=5), ConditionalVAE(width=8), SkipCAE(width=8, output="lab"), SkipCAE(output="rgb")]
    with torch.no_grad():
        for net in nets:
            channels = 2 if isinstance(net, ConditionalVAE | StackedCAE) else 3
            assert net.eval()(x).shape == (2, channels, *size)
        fusion = FusionColorizer(width=8).eval()
        assert fusion(x).shape == (2, 2, *size)


def test_fusion_backbone_is_frozen_and_really_pretrained(backbone):
    for name, expected in (("chelsea", set(range(281, 286))), ("coffee", {504, 967, 968})):
        photo = torch.from_numpy(getattr(skimage.data, name)().copy()).permute(2, 0, 1)[None].float() / 255
        top5 = set(backbone(photo).topk(5).indices[0].tolist())
        assert top5 & expected, f"{name}: top-5 ImageNet classes {sorted(top5)}"
    module = ColorizationModule(FusionColorizer(width=8, depth=3))
    frozen = {k: v.clone() for k, v in module.net.backbone.state_dict().items()}
    module.optimizer_factory = lambda params: torch.optim.Adam(params, lr=1e-2)
    opt = module.configure_optimizers()
    assert all(not p.requires_grad for p in module.net.backbone.parameters())
    assert len(opt.param_groups[0]["params"]) == sum(1 for p in module.net.colorizer.parameters())
    module.train()
    assert not module.net.backbone.training  # BatchNorm statistics stay frozen
    loss = module.model_step(real_batch(4))[0]
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in module.net.backbone.parameters())
    assert all(torch.equal(frozen[k], v) for k, v in module.net.backbone.state_dict().items())


def test_missing_inception_weights_say_what_to_do(monkeypatch, tmp_path):
    from colorization.models.backbones import BackboneUnavailable

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(
        torch.hub, "load_state_dict_from_url", lambda *a, **k: (_ for _ in ()).throw(OSError("offline"))
    )
    with pytest.raises(BackboneUnavailable, match=r"inception_v3_google.*efficientnet_lite0"):
        FrozenClassifier("inception_v3")


def test_vae_kl_is_positive_and_samples_differ():
    torch.manual_seed(0)
    module = VAEColorizationModule(ConditionalVAE(latent_dim=4, width=8, depth=3))
    fit_one_batch(module, real_batch(4), steps=30)
    module.train()
    _, _, extra = module.model_step(real_batch(4))
    assert torch.isfinite(extra["kl"]) and extra["kl"] > 0
    module.eval()
    l_norm = real_batch(2)["L"]
    with torch.no_grad():
        first, second = module.sample(l_norm, 2, torch.Generator().manual_seed(1))
    assert (first - second).abs().mean() > 1e-4


def test_vae_kl_weight_anneals():
    module = VAEColorizationModule(ConditionalVAE(width=8), kl_weight=0.1, kl_anneal_steps=100)
    weights = {}
    for step in (0, 25, 50, 100, 400):
        with mock.patch.object(VAEColorizationModule, "global_step", new_callable=mock.PropertyMock) as global_step:
            global_step.return_value = step
            weights[step] = module.current_kl_weight()
    assert weights == pytest.approx({0: 0.0, 25: 0.025, 50: 0.05, 100: 0.1, 400: 0.1})  # linear, then constant


def test_degradations_are_seeded_and_fixed_in_validation():
    x = real_batch(4)["L"].add(1).div(2)
    degrade = Degradation()
    torch.manual_seed(3)
    first = degrade(x)
    torch.manual_seed(3)
    assert torch.equal(first, degrade(x)) and not torch.equal(first, x)
    assert first.device == x.device and first.min() >= 0 and first.max() <= 1
    module = RestorationModule(SkipCAE(width=8, output="lab"), Degradation(), seed=5)
    a = module.prepare_batch(real_batch(4), "val", 0)["L_degraded"]
    b = module.prepare_batch(real_batch(4), "val", 0)["L_degraded"]
    assert torch.equal(a, b)


def test_digits_vae_writes_reconstructions_prior_samples_and_interpolation(compose_cfg, tmp_path):
    metrics = train(compose_cfg("experiment=digits_vae", "trainer.max_epochs=2", "callbacks.progress_bar=null"))
    images = tmp_path / "run" / "images"
    for name in ("reconstructions", "prior_samples", "interpolation"):
        assert (images / f"{name}.png").stat().st_size > 0
    assert metrics["val/kl"] > 0


@pytest.mark.slow
def test_dae_restores_better_than_its_degraded_input(compose_cfg, capsys):
    metrics = train(compose_cfg("model=dae", "trainer.max_epochs=15", "callbacks.progress_bar=null", "test=false"))
    restored, degraded = metrics["val/psnr_l"], metrics["val/psnr_l_input"]
    with capsys.disabled():
        print(f"\nDAE on the sample photos: restored L {restored:.2f} dB vs degraded input {degraded:.2f} dB")
    assert restored > degraded


def test_mnist_offline_names_the_bundled_alternative(tmp_path):
    from colorization.data import DataSourceError
    from colorization.data.digits import load_digits_tensor

    with pytest.raises(DataSourceError, match=r"mnist.*data\.download=true.*data\.source=sklearn"):
        load_digits_tensor("mnist", str(tmp_path / "mnist"))
    assert load_digits_tensor("sklearn").shape == (1797, 1, 8, 8)
