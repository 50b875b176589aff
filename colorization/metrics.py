"""Colorization metrics: numerical and perceptual, accumulated over batches (torchmetrics).

All metrics take predicted and true sRGB images ``(B, 3, H, W)`` in [0, 1], so they score
any model the same way whatever it predicts (ab or RGB):

* ``DeltaE2000``: mean CIEDE2000 colour difference per pixel (Sharma et al. 2005).
* ``Colorfulness`` / ``ColorfulnessGap``: Hasler & Suesstrunk (2003) M3 per image on
  0..255 RGB, and the mean signed gap prediction - truth (negative: desaturated output).
* ``AbAuC``: area under the cumulative curve of the per-pixel ab error (Euclidean, Lab
  units) over thresholds 0..150, normalised to [0, 1] (Zhang et al. 2016).
* ``AbR2``: coefficient of determination of the predicted ab (seed 003).
* ``FrechetDistanceEffNet``: FID computed on EfficientNet-Lite0 features (offline weights).
  It is *not* comparable with published FIDs, which use Inception-v3 features.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from colorization.color import colorfulness_batch, rgb_to_lab


def _lab(rgb: torch.Tensor) -> torch.Tensor:
    """Lab (L 0..100, ab about -110..110) of the RGB a user sees (clipped to sRGB)."""
    return rgb_to_lab(rgb.float().clamp(0, 1))


def ciede2000(lab1: torch.Tensor, lab2: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """CIEDE2000 colour difference between Lab tensors (channels along ``dim``), kL = kC = kH = 1."""
    l1, a1, b1 = lab1.unbind(dim)
    l2, a2, b2 = lab2.unbind(dim)
    c7 = ((torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - torch.sqrt(c7 / (c7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.rad2deg(torch.atan2(b1, a1p)) % 360
    h2p = torch.rad2deg(torch.atan2(b2, a2p)) % 360
    chroma_product = c1p * c2p
    dh = h2p - h1p
    dh = torch.where(dh > 180, dh - 360, torch.where(dh < -180, dh + 360, dh))
    dh = torch.where(chroma_product == 0, torch.zeros_like(dh), dh)
    d_l, d_c = l2 - l1, c2p - c1p
    d_h = 2 * torch.sqrt(chroma_product) * torch.sin(torch.deg2rad(dh) / 2)
    l_bar, c_bar = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = torch.where(
        (h1p - h2p).abs() <= 180, h_sum / 2, torch.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2)
    )
    h_bar = torch.where(chroma_product == 0, h_sum, h_bar)
    cos = lambda deg: torch.cos(torch.deg2rad(deg))  # noqa: E731
    t = 1 - 0.17 * cos(h_bar - 30) + 0.24 * cos(2 * h_bar) + 0.32 * cos(3 * h_bar + 6) - 0.20 * cos(4 * h_bar - 63)
    d_theta = 30 * torch.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * torch.sqrt(c_bar**7 / (c_bar**7 + 25.0**7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / torch.sqrt(20 + (l_bar - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_bar, 1 + 0.015 * c_bar * t
    r_t = -torch.sin(torch.deg2rad(2 * d_theta)) * r_c
    terms = (d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2 + r_t * (d_c / s_c) * (d_h / s_h)
    return torch.sqrt(terms.clamp_min(0))


class _MeanMetric(Metric):
    """Accumulates a sum and a count; subclasses say what one batch adds."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def values(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        values = self.values(preds, target)
        self.total += values.double().sum()
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()


class DeltaE2000(_MeanMetric):
    """Mean CIEDE2000 difference per pixel between predicted and true RGB (0: identical)."""

    def values(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ciede2000(_lab(preds), _lab(target))


class Colorfulness(_MeanMetric):
    """Mean colourfulness of the predictions (``of="target"``: of the ground truth)."""

    def __init__(self, of: str = "preds", **kwargs) -> None:
        super().__init__(**kwargs)
        if of not in ("preds", "target"):
            raise ValueError("of must be 'preds' or 'target'")
        self.of = of

    def values(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return colorfulness_batch(preds if self.of == "preds" else target)


class ColorfulnessGap(_MeanMetric):
    """Mean colourfulness(prediction) - colourfulness(truth); below 0: less colourful than the truth."""

    def values(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return colorfulness_batch(preds) - colorfulness_batch(target)


class AbAuC(Metric):
    """Area under the curve of the fraction of pixels whose ab error is <= t, t = 0..150.

    The per-pixel error is the Euclidean distance in ab (Lab units); the curve is sampled at
    every integer threshold and its mean is the normalised area: 1 for a perfect prediction,
    0 when every pixel is off by more than 150.
    """

    full_state_update = False

    def __init__(self, max_threshold: int = 150, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_threshold = max_threshold
        self.add_state("hist", torch.zeros(max_threshold + 2, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        error = torch.linalg.vector_norm(_lab(preds)[:, 1:] - _lab(target)[:, 1:], dim=1)
        # bin k counts errors in (k-1, k]; the last bin everything above max_threshold
        bins = torch.ceil(error).clamp(0, self.max_threshold + 1).long().flatten()
        self.hist += torch.bincount(bins, minlength=self.max_threshold + 2).double()

    def compute(self) -> torch.Tensor:
        cdf = self.hist.cumsum(0)[: self.max_threshold + 1] / self.hist.sum()
        return cdf.mean().float()


class AbR2(Metric):
    """R^2 of the predicted ab over all pixels and both channels: 1 - SS_res / SS_tot."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("residual", "total", "total_sq", "count"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        ab_pred, ab_true = _lab(preds)[:, 1:].double(), _lab(target)[:, 1:].double()
        self.residual += (ab_pred - ab_true).pow(2).sum()
        self.total += ab_true.sum()
        self.total_sq += ab_true.pow(2).sum()
        self.count += ab_true.numel()

    def compute(self) -> torch.Tensor:
        ss_tot = self.total_sq - self.total**2 / self.count
        return (1 - self.residual / ss_tot.clamp_min(1e-12)).float()


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)) of two Gaussians.

    Tr((cov1 cov2)^(1/2)) is the sum of the square roots of the eigenvalues of the symmetric
    matrix cov1^(1/2) cov2 cov1^(1/2) (the same eigenvalues as cov1 cov2): two symmetric
    eigendecompositions, about 1 s for 1280 features where a general matrix square root
    (``scipy.linalg.sqrtm``) took 10-22 s on 2 cores, and exact also for the singular
    covariances of fewer images than features."""
    cov1, cov2 = cov1.double().cpu(), cov2.double().cpu()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: 0.4 s; two on a busy 2-core machine: 3 s (LAPACK's threads wait)
    try:
        values, vectors = torch.linalg.eigh((cov1 + cov1.T) / 2)
        root1 = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
        product = root1 @ cov2 @ root1
        trace_sqrt = float(torch.linalg.eigvalsh((product + product.T) / 2).clamp(min=0).sqrt().sum())
    finally:
        torch.set_num_threads(threads)
    return max(0.0, float((mu1 - mu2).double().cpu().pow(2).sum() + cov1.trace() + cov2.trace() - 2 * trace_sqrt))


class FrechetDistanceEffNet(Metric):
    """Frechet distance between the EfficientNet-Lite0 features of predictions and truths.

    Same recipe as FID (Heusel et al. 2017), other network: report it as "FID (EffNet-Lite0)".
    Like FID it is biased for small sets; compare models only on the same images.
    """

    full_state_update = False

    def __init__(self, extractor: torch.nn.Module | None = None, **kwargs) -> None:
        """``extractor``: another instance's network, to score a second model on the same
        photos without loading the weights again."""
        super().__init__(**kwargs)
        from colorization.models.backbones import FrozenClassifier

        self.extractor = extractor if extractor is not None else FrozenClassifier("efficientnet_lite0")
        dim = 1280
        for side in ("preds", "target"):
            self.add_state(f"{side}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1280) float64 features of RGB images in [0, 1]."""
        return self.extractor.features(images.float()).double()

    def update(self, preds: torch.Tensor, target: torch.Tensor, target_features: torch.Tensor | None = None) -> None:
        """``target_features``: :meth:`features` of ``target`` when already computed (two
        models scored on the same photos need them once)."""
        target_features = self.features(target) if target_features is None else target_features
        for side, features in (("preds", self.features(preds)), ("target", target_features)):
            setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + features.sum(0))
            setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + features.T @ features)
        self.count += len(preds)

    def _gaussian(self, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.count
        mu = getattr(self, f"{side}_sum") / n
        cov = (getattr(self, f"{side}_outer") - n * torch.outer(mu, mu)) / (n - 1)
        return mu, cov

    def compute(self) -> torch.Tensor:
        if self.count < 2:
            raise ValueError("the Frechet distance needs at least 2 images")
        return torch.tensor(frechet_distance(*self._gaussian("preds"), *self._gaussian("target")))
