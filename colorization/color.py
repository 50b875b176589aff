"""Lab colour space: the one place that defines how colour is normalised.

CIE Lab (D65) splits a photo into lightness L in [0, 100] and chroma ab in about
[-110, 110] (sRGB colours reach about -86..98 in a and -108..95 in b). The network sees
and predicts normalised values:

* ``L_norm = (L - 50) / 50``  -> [-1, 1]  (network input; Zhang et al.'s code centres L at 50
  and divides by 100, giving [-0.5, 0.5]: ours spans the whole Tanh range)
* ``ab_norm = ab / 110``      -> about [-1, 1] (Tanh output range; Zhang et al. also use 110)

Tensors are ``(B, C, H, W)`` float; RGB is sRGB in [0, 1].

The conversions use Kornia's formulas and constants (D65, sRGB) and agree with
``kornia.color`` to float precision, but build no tensors per call: Kornia's create their
matrix and white point on the device each time, a host-to-device copy that makes the CPU
wait for the GPU to finish all queued work, once per batch (see experiments/perf).
"""

from __future__ import annotations

import numpy as np
import torch

L_CENTER = 50.0
L_SCALE = 50.0
AB_SCALE = 110.0


# sRGB <-> linear RGB <-> XYZ (D65) <-> Lab; rows of the matrices as Python floats
_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_XYZ_TO_RGB = (
    (3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
    (-0.9692549499965682, 1.8759900014898907, 0.0415559265582928),
    (0.0556466391351772, -0.2040413383665112, 1.0573110696453443),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)
# f(X/Xn), f(Y), f(Z/Zn) -> L, a, b (+ bias), and the same straight to the network's
# normalised values (L_norm, a_norm, b_norm); Lab -> f for the inverse
_F_TO_LAB = ((0.0, 116.0, 0.0), (500.0, -500.0, 0.0), (0.0, 200.0, -200.0))
_LAB_TO_F = ((1 / 116, 1 / 500, 0.0), (1 / 116, 0.0, 0.0), (1 / 116, 0.0, -1 / 200))
_constants: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}


def _matrices() -> dict[str, tuple[tuple[float, float, float], ...]]:
    rgb_to_xyz = [[v / w for v in row] for row, w in zip(_RGB_TO_XYZ, _WHITE_D65)]  # X / Xn ...
    xyz_to_rgb = [[v * w for v, w in zip(row, _WHITE_D65)] for row in _XYZ_TO_RGB]  # ... and back
    f_to_lab_norm = [[v / s for v in row] for row, s in zip(_F_TO_LAB, (L_SCALE, AB_SCALE, AB_SCALE))]
    matrices = {"rgb_to_xyz_white": rgb_to_xyz, "xyz_white_to_rgb": xyz_to_rgb, "f_to_lab": _F_TO_LAB,
                "f_to_lab_norm": f_to_lab_norm, "lab_to_f": _LAB_TO_F}  # fmt: skip
    return {name: tuple(tuple(float(v) for v in row) for row in m) for name, m in matrices.items()}


_MATRICES = _matrices()
_BIASES = {"lab_bias": (-16.0, 0.0, 0.0), "lab_norm_bias": ((-16.0 - L_CENTER) / L_SCALE, 0.0, 0.0),
           "f_bias": (16 / 116,) * 3}  # fmt: skip


def _constant(name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A matrix of ``_MATRICES`` as a ``(3, 3, 1, 1)`` tensor, or an offset of ``_BIASES`` as
    ``(3, 1, 1)``, on ``device``: built once per device and dtype (a tensor built per call
    would be a host-to-device copy that waits for the GPU)."""
    key = (name, torch.device(device), dtype)
    if key not in _constants:
        if name in _MATRICES:
            value = torch.tensor(_MATRICES[name], dtype=torch.float64).reshape(3, 3, 1, 1)
        else:
            value = torch.tensor(_BIASES[name], dtype=torch.float64).reshape(3, 1, 1)
        _constants[key] = value.to(device=key[1], dtype=dtype)
    return _constants[key]


def _apply(matrix: str, x: torch.Tensor, bias: str | None = None, rows: bool | None = None) -> torch.Tensor:
    """Per pixel ``M @ x (+ b)`` for ``x`` of shape ``(*, 3, H, W)``, elementwise: a matmul
    would run in TF32 on GPUs that allow it (1e-3 errors in L). On a GPU, where launching
    kernels is the cost, one broadcast multiply and one sum; on the CPU, where memory traffic
    is, three fused multiply-adds per row (1.6x faster there). ``rows`` forces either."""
    if rows if rows is not None else x.device.type == "cpu":
        channels = x.unbind(dim=-3)
        out = torch.stack([_row(row, *channels) for row in _MATRICES[matrix]], dim=-3)
    else:
        out = (x.unsqueeze(-4) * _constant(matrix, x.device, x.dtype)).sum(-3)
    return out.add_(_constant(bias, x.device, x.dtype)) if bias else out


def _row(row: tuple[float, float, float], x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return x.mul(row[0]).add_(y, alpha=row[1]).add_(z, alpha=row[2])


def _power(x: torch.Tensor, exponent: float) -> torch.Tensor:
    """``x ** exponent`` for x > 0, a new tensor: on the CPU as exp(exponent * log x),
    vectorised there and about 2.5x faster than ``torch.pow`` with a fractional exponent;
    elsewhere ``torch.pow``, one kernel instead of three."""
    return x.log().mul_(exponent).exp_() if x.device.type == "cpu" else x.pow(exponent)


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > 0.008856, _power(t.clamp(min=0.008856), 1.0 / 3.0), t.mul(7.787).add_(4.0 / 29.0))


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> linear light (the sRGB transfer curve), any shape."""
    curve = _power(rgb.clamp(min=0.04045).mul_(1 / 1.055).add_(0.055 / 1.055), 2.4)
    return torch.where(rgb > 0.04045, curve, rgb / 12.92)


def linear_to_lab(linear: torch.Tensor, normalized: bool = False) -> torch.Tensor:
    """Linear RGB ``(*, 3, H, W)`` -> Lab (L in [0, 100]), or, when ``normalized``, the
    network's ``(L_norm, a_norm, b_norm)`` channels directly."""
    f = _lab_f(_apply("rgb_to_xyz_white", linear))
    if normalized:
        return _apply("f_to_lab_norm", f, "lab_norm_bias")
    return _apply("f_to_lab", f, "lab_bias")


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``(*, 3, H, W)`` in [0, 1] -> Lab (L in [0, 100]); as ``kornia.color.rgb_to_lab``."""
    return linear_to_lab(srgb_to_linear(rgb))


def srgb_to_linear_table(device: torch.device | str = "cpu") -> torch.Tensor:
    """(256,) float32 on ``device``: the linear-light value of each 8-bit sRGB code (cached)."""
    key = ("srgb_table", torch.device(device), torch.float32)
    if key not in _constants:
        v = torch.arange(256, dtype=torch.float64) / 255.0
        table = torch.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)
        _constants[key] = table.float().to(key[1])
    return _constants[key]


def rgb_u8_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 sRGB, any shape -> float32 linear light, by a lookup in a 256-entry table (about
    twice as fast as the power on the CPU, and the same to float precision)."""
    return torch.take(srgb_to_linear_table(rgb.device), rgb.long())  # take: faster than indexing


def rgb_u8_to_lab(rgb: torch.Tensor, lightness_only: bool = False) -> torch.Tensor:
    """uint8 sRGB ``(B, 3, H, W)`` -> Lab ``(B, 3, H, W)`` (or ``(B, 1, H, W)``: L only), float32.

    Equal to ``rgb_to_lab(rgb / 255)`` to float precision.
    """
    if rgb.dtype != torch.uint8 or rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"expected a uint8 (B, 3, H, W) tensor, got {tuple(rgb.shape)} {rgb.dtype}")
    linear = rgb_u8_to_linear(rgb)
    if lightness_only:  # Y alone: a third of the work
        r, g, b = linear.unbind(dim=-3)
        return (116.0 * _lab_f(_row(_MATRICES["rgb_to_xyz_white"][1], r, g, b)) - 16.0).unsqueeze(-3)
    return linear_to_lab(linear)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Lab ``(*, 3, H, W)`` -> sRGB, clipped to [0, 1] when ``clip``; as ``kornia.color.lab_to_rgb``."""
    f = _apply("lab_to_f", lab, "f_bias")
    f[..., 2:, :, :].clamp_(min=0.0)  # as Kornia: fz only
    xyz = torch.where(f > 0.2068966, f * f * f, (f - 4.0 / 29.0) / 7.787)
    linear = _apply("xyz_white_to_rgb", xyz)
    rgb = torch.where(  # out of place: losses on the RGB (colourfulness) backpropagate through it
        linear > 0.0031308, _power(linear.clamp(min=0.0031308), 1 / 2.4) * 1.055 - 0.055, 12.92 * linear
    )
    return rgb.clamp(0.0, 1.0) if clip else rgb


def normalize_l(lightness: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> [-1, 1]."""
    return (lightness - L_CENTER) / L_SCALE


def denormalize_l(l_norm: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> L in [0, 100]."""
    return l_norm * L_SCALE + L_CENTER


def rgb_to_lab_norm(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB in [0, 1], shape (B, 3, H, W) -> (L_norm (B, 1, H, W), ab_norm (B, 2, H, W))."""
    lab = linear_to_lab(srgb_to_linear(rgb.clamp(0.0, 1.0)), normalized=True)
    return lab[:, :1], lab[:, 1:]


def lab_norm_to_rgb(l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
    """Normalised L (B, 1, H, W) and ab (B, 2, H, W) -> sRGB in [0, 1], shape (B, 3, H, W).

    Lab colours outside the sRGB gamut are clipped to [0, 1].
    """
    lab = torch.cat([denormalize_l(l_norm), ab_norm * AB_SCALE], dim=1)
    return lab_to_rgb(lab, clip=True)


def gray_rgb(l_norm: torch.Tensor) -> torch.Tensor:
    """The gray photo a user sees: the true L with ab = 0, as sRGB in [0, 1]."""
    return lab_norm_to_rgb(l_norm, torch.zeros_like(l_norm).expand(-1, 2, -1, -1))


def colorfulness_batch(
    rgb: torch.Tensor, dtype: torch.dtype = torch.float64, eps: float = 0.0, spread: str = "std"
) -> torch.Tensor:
    """Hasler & Suesstrunk (2003) colourfulness M3 of each image of (B, 3, H, W) sRGB in
    [0, 1], scored on the 0..255 scale -> (B,).

    ``rg = R - G``, ``yb = (R + G) / 2 - B`` (signed opponent channels);
    ``M3 = sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2)``.
    A gray image scores 0; the authors call < 15 "not colourful", > 45 "quite colourful".
    ``dtype``: float64 for metrics; ``eps`` > 0 inside the square roots keeps the gradient
    finite at gray (the colourfulness objective, :func:`colorization.losses.colorfulness_shortfall`).
    ``spread``: ``std`` (the metric's own) or ``mad`` (mean absolute deviation from the mean,
    for the objective only: not Hasler's metric).
    """
    x = rgb.to(dtype) * 255
    rg = (x[:, 0] - x[:, 1]).flatten(1)
    yb = (0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]).flatten(1)
    mean_rg, mean_yb = rg.mean(1), yb.mean(1)
    if spread == "std":
        spread_rg, spread_yb = rg.var(1, correction=0), yb.var(1, correction=0)
    elif spread == "mad":
        spread_rg = (rg - mean_rg[:, None]).abs().mean(1) ** 2
        spread_yb = (yb - mean_yb[:, None]).abs().mean(1) ** 2
    else:
        raise ValueError(f"colourfulness spread {spread!r}: choose from mad, std")
    sigma = torch.sqrt(spread_rg + spread_yb + eps)
    mu = torch.sqrt(mean_rg**2 + mean_yb**2 + eps)
    return sigma + 0.3 * mu


def colorfulness(rgb: np.ndarray) -> float:
    """:func:`colorfulness_batch` of one (H, W, 3) RGB image on 0..255 (the set-up scan's form)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float64)).permute(2, 0, 1)[None] / 255
    return float(colorfulness_batch(x)[0])


def in_srgb_gamut(rgb: torch.Tensor, tolerance: float = 1e-4) -> torch.Tensor:
    """(B, 3, H, W) unclipped sRGB -> (B, H, W) bool: every channel within [0, 1]."""
    return ((rgb >= -tolerance) & (rgb <= 1 + tolerance)).all(dim=1)


def lab_to_rgb_preserving_l(lab: torch.Tensor, steps: int = 8) -> torch.Tensor:
    """Lab (B, 3, H, W) (L in [0, 100]) -> sRGB in [0, 1] with the same L everywhere.

    Clipping each channel of an out-of-gamut colour changes its lightness (a saturated
    yellow at L = 98 comes back darker). Here each out-of-gamut pixel keeps its L and hue and
    loses just enough chroma to fit: its ab is scaled by the largest factor in [0, 1] found
    by ``steps`` bisection steps (gray, factor 0, is always in gamut). In-gamut pixels are
    converted as they are.
    """
    rgb = lab_to_rgb(lab, clip=False)
    outside = ~in_srgb_gamut(rgb)
    if outside.any():
        pixels = lab.permute(0, 2, 3, 1)[outside]  # (N, 3)
        lightness, ab = pixels[:, :1], pixels[:, 1:]
        low, high = torch.zeros_like(lightness), torch.ones_like(lightness)

        def convert(scale: torch.Tensor) -> torch.Tensor:
            column = torch.cat([lightness, ab * scale], dim=1).T[None, :, :, None]  # (1, 3, N, 1)
            return lab_to_rgb(column, clip=False)

        for _ in range(steps):
            middle = (low + high) / 2
            fits = in_srgb_gamut(convert(middle))[0, :, :1]
            low, high = torch.where(fits, middle, low), torch.where(fits, high, middle)
        rgb = rgb.permute(0, 2, 3, 1).clone()
        rgb[outside] = convert(low)[0, :, :, 0].T
        rgb = rgb.permute(0, 3, 1, 2)
    return rgb.clamp(0.0, 1.0)
