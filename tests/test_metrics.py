"""Metrics against independent references: scikit-image, numpy formulas, torchmetrics."""

import kornia
import numpy as np
import pytest
import torch
from skimage.color import deltaE_ciede2000
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from colorization.color import colorfulness_batch as colorfulness
from colorization.color import rgb_to_lab
from colorization.metrics import AbAuC, AbR2, ColorfulnessGap, DeltaE2000, ciede2000
from colorization.models import SkipCAE
from colorization.tasks import ColorizationModule
from tests.helpers import real_batch


def test_ciede2000_matches_skimage_on_random_colours():
    rng = np.random.default_rng(0)
    lab1 = np.stack([rng.uniform(0, 100, 20000), *rng.uniform(-110, 110, (2, 20000))], axis=1)
    lab2 = np.stack([rng.uniform(0, 100, 20000), *rng.uniform(-110, 110, (2, 20000))], axis=1)
    lab2[:5000] = lab1[:5000] + rng.normal(0, 2, (5000, 3))  # near pairs
    lab1[5000:6000, 1:] = 0  # achromatic colours: hue undefined
    ours = ciede2000(torch.from_numpy(lab1), torch.from_numpy(lab2)).numpy()
    assert np.abs(ours - deltaE_ciede2000(lab1, lab2)).max() < 1e-3


def test_ciede2000_reproduces_sharmas_published_pair():
    pair = torch.tensor([[50, 2.6772, -79.7751], [50, 0.0, -82.7485]], dtype=torch.float64)
    assert ciede2000(pair[:1], pair[1:]).item() == pytest.approx(2.0425, abs=1e-4)


def hasler_suesstrunk(rgb: np.ndarray) -> float:
    """The paper's M3 on 0..255, written independently of the code under test."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def test_colorfulness_is_zero_for_gray_and_matches_the_numpy_formula(photos):
    images = [photos[k][:96, :96] for k in ("astronaut", "coffee", "rocket")]
    batch = torch.stack([torch.from_numpy(x.copy()).permute(2, 0, 1) for x in images]).float() / 255
    expected = [hasler_suesstrunk(x) for x in images]
    assert colorfulness(batch).numpy() == pytest.approx(expected, rel=1e-6)
    gray = batch.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    assert colorfulness(gray).abs().max() < 1e-9
    gap = ColorfulnessGap()
    gap.update(gray, batch)
    assert gap.compute() == pytest.approx(-np.mean(expected), rel=1e-5)


def test_auc_is_one_for_a_perfect_prediction_and_drops_with_error():
    rgb = real_batch(4)["rgb"]
    perfect, worse = AbAuC(), AbAuC()
    perfect.update(rgb, rgb)
    assert perfect.compute() == pytest.approx(1.0)
    worse.update(rgb.flip(1), rgb)
    assert 0 < worse.compute() < 0.95


def test_r2_is_one_for_a_perfect_prediction_and_zero_for_the_mean(photos):
    rgb = real_batch(4)["rgb"]
    perfect = AbR2()
    perfect.update(rgb, rgb)
    assert perfect.compute() == pytest.approx(1.0, abs=1e-6)
    # a truth whose mean colour stays inside sRGB at every L (mid lightness, moderate chroma),
    # so the prediction "the mean ab of the truth, with its L" is exact, not clipped
    lab = rgb_to_lab(rgb)
    lab[:, :1], lab[:, 1:] = lab[:, :1] * 0.5 + 25, lab[:, 1:] * 0.4
    truth = kornia.color.lab_to_rgb(lab, clip=False)
    mean = lab.clone()
    mean[:, 1:] = lab[:, 1:].mean()
    mean_rgb = kornia.color.lab_to_rgb(mean, clip=False)
    assert truth.min() >= 0 and truth.max() <= 1 and mean_rgb.min() >= 0 and mean_rgb.max() <= 1
    predicts_mean = AbR2()
    predicts_mean.update(mean_rgb, truth)
    assert predicts_mean.compute() == pytest.approx(0.0, abs=0.01)
    delta = DeltaE2000()
    delta.update(rgb, rgb)
    assert delta.compute() == pytest.approx(0.0, abs=1e-3)


def test_module_metrics_agree_with_torchmetrics_functional():
    batch = real_batch(6)
    module = ColorizationModule(SkipCAE(width=8)).eval()
    torch.nn.init.normal_(module.net.head[0].weight, std=0.05)  # a non-trivial prediction
    with torch.no_grad():
        pred = module.to_rgb(batch["L"], module(batch["L"]))
    module.metrics["val"].update(pred, batch["rgb"])
    result = module.metrics["val"].compute()
    assert result["val/psnr"] == pytest.approx(peak_signal_noise_ratio(pred, batch["rgb"], data_range=1.0).item())
    ssim = structural_similarity_index_measure(pred, batch["rgb"], data_range=1.0)
    assert result["val/ssim"] == pytest.approx(ssim.item())
    assert {"val/delta_e", "val/colorfulness_gap", "val/ab_auc", "val/ab_r2"} <= set(result)


def test_effnet_fid_is_zero_for_identical_sets_and_grows_with_the_difference():
    from colorization.metrics import FrechetDistanceEffNet

    rgb = real_batch(8, 64)["rgb"]
    same, gray = FrechetDistanceEffNet(), FrechetDistanceEffNet()
    same.update(rgb, rgb)
    gray.update(rgb.mean(1, keepdim=True).expand(-1, 3, -1, -1), rgb)
    assert same.compute() == pytest.approx(0.0, abs=0.01)
    assert gray.compute() > 10


def test_the_standard_inception_fid_says_what_it_needs_when_unavailable():
    pytest.importorskip("torchmetrics")
    try:
        import torch_fidelity  # noqa: F401

        pytest.skip("torch-fidelity is installed here: the standard FID is available")
    except ImportError:
        pass
    from colorization.evaluate import EvaluationError, inception_fid

    with pytest.raises(EvaluationError, match="torch-fidelity"):
        inception_fid()
