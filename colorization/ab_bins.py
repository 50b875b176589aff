"""Colour as classification (Zhang, Isola & Efros, ECCV 2016, "Colorful Image Colorization"):
ab quantised into bins, soft-encoded targets, class rebalancing, annealed-mean decoding.

**The bins.** Centres on a grid of 10 Lab units in a and b (-110 .. 110), kept where the
centre is an sRGB colour at some lightness (L sampled every 0.1 from 0 to 100): 229 of the
grid's 484 points. Zhang et al. keep the 313 bins ImageNet's pixels fall in; their converter
let colours outside sRGB through, and a photo's pixels are all sRGB colours, so the gamut
test keeps every bin a photo can need and none it cannot show. The bins are computed, not
stored: the same on every machine.

**Targets.** Each true ab is spread over its 5 nearest bin centres with Gaussian weights
(sigma 5 Lab units), summing to 1.

**Rebalancing.** Rare colours (saturated ones) would be drowned by the grays and browns that
fill most photos. The empirical bin distribution ``p`` of the training split is smoothed with
a Gaussian (sigma 5) over the ab plane, mixed with the uniform distribution, and inverted:
``w ~ 1 / ((1 - lambda) p~ + lambda / Q)``, normalised so that ``sum_q p~_q w_q = 1``.
``lambda = 1`` gives equal weights (no rebalancing), Zhang's ``lambda = 0.5`` boosts rare
colours, ``lambda -> 0`` is pure inverse frequency. Each pixel's loss is weighted by the weight
of its most likely bin.

**Decoding.** The annealed mean ``sum_q softmax(logits / T)_q c_q``: ``T = 1`` is the mean of
the predicted distribution (safe, dull), ``T -> 0`` its mode (vivid, sometimes wrong); Zhang's
``T = 0.38`` is in between.
"""

from __future__ import annotations

import functools

import torch

from colorization.color import AB_SCALE, in_srgb_gamut, lab_to_rgb

GRID = 10.0
NEIGHBOURS = 5
SIGMA = 5.0


@functools.lru_cache(maxsize=4)
def _centres(grid: float = GRID) -> tuple[tuple[float, float], ...]:
    steps = torch.arange(-110.0, 110.0 + 1e-6, grid)
    a, b = torch.meshgrid(steps, steps, indexing="ij")
    a, b = a.flatten().double(), b.flatten().double()
    lightness = torch.linspace(0.0, 100.0, 1001, dtype=torch.float64)
    lab = torch.stack(
        [lightness[:, None].expand(-1, len(a)), a[None].expand(len(lightness), -1), b[None].expand(len(lightness), -1)]
    )
    inside = in_srgb_gamut(lab_to_rgb(lab[None], clip=False), tolerance=1e-6)[0].any(dim=0)
    return tuple((float(x), float(y)) for x, y in zip(a[inside], b[inside]))


def bin_centres(grid: float = GRID) -> torch.Tensor:
    """(Q, 2) ab centres in Lab units, in sRGB at some L (Q = 229 for a grid of 10)."""
    return torch.tensor(_centres(grid), dtype=torch.float32)


#: Q for the default grid (tests check it equals len(bin_centres())); a constant so that
#: importing this module does not compute the gamut (0.4 s: the first bin_centres() call does)
NUM_BINS = 229


def _sq_distances(ab: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """ab (B, 2, H, W), centres (Q, 2), same units -> squared distances (B, Q, H, W)."""
    diff = ab[:, None] - centres.to(ab)[None, :, :, None, None]
    return diff.square().sum(dim=2)


def soft_encode(
    ab_norm: torch.Tensor, centres: torch.Tensor, neighbours: int = NEIGHBOURS, sigma: float = SIGMA
) -> torch.Tensor:
    """Normalised ab (B, 2, H, W) -> soft targets (B, Q, H, W): Gaussian weights (``sigma`` in
    Lab units) on the ``neighbours`` nearest centres (Lab units), summing to 1 per pixel."""
    d2 = _sq_distances(ab_norm.float() * AB_SCALE, centres)
    nearest, index = d2.topk(neighbours, dim=1, largest=False)
    weights = torch.softmax(-nearest / (2 * sigma**2), dim=1)  # Gaussian, normalised
    return torch.zeros_like(d2).scatter_(1, index, weights)


def annealed_mean(logits: torch.Tensor, centres: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits (B, Q, H, W) -> normalised ab (B, 2, H, W): ``sum_q softmax(logits / T)_q c_q / 110``.
    ``temperature <= 0`` gives the mode (the most likely centre)."""
    centres = centres.to(logits) / AB_SCALE
    if temperature <= 0:
        return centres[logits.argmax(dim=1)].permute(0, 3, 1, 2)
    probs = torch.softmax(logits / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", probs, centres)


def smoothed_prior(counts: torch.Tensor, centres: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """Empirical bin counts (Q,) -> the distribution smoothed by a Gaussian (``sigma`` Lab units)
    over the ab plane (Q,), summing to 1."""
    p = counts.double() / counts.double().sum().clamp(min=1e-12)
    c = centres.double()
    kernel = torch.exp(-torch.cdist(c, c).square() / (2 * sigma**2))
    smoothed = kernel @ p
    return (smoothed / smoothed.sum()).float()


def rebalance_weights(prior: torch.Tensor, mix: float) -> torch.Tensor:
    """Smoothed prior (Q,) -> class weights ``1 / ((1 - mix) p + mix / Q)`` normalised so their
    expectation under the prior is 1. ``mix`` is Zhang's lambda (1: all weights 1). The
    denominator is floored at 1e-4, so an empty bin at ``mix = 0`` weighs much, not infinitely."""
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"rebalance lambda must be in [0, 1], got {mix}")
    p = prior.double()
    # bins no training pixel fell in (possible at lambda = 0) get a large, finite weight
    w = 1.0 / ((1.0 - mix) * p + mix / len(p)).clamp(min=1e-4)
    return (w / (p * w).sum()).float()


def rebalanced_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Zhang's multinomial loss: ``-sum_q Z_q log softmax(logits)_q``, each pixel weighted by
    the class weight of its most likely target bin, averaged over pixels."""
    log_probs = torch.log_softmax(logits.float(), dim=1)
    per_pixel = -(targets * log_probs).sum(dim=1)
    pixel_weights = weights.to(logits.device)[targets.argmax(dim=1)]
    return (per_pixel * pixel_weights).mean()
