"""Full-resolution colour: the photo's own L joined with the working-size prediction.

Only a small copy goes through the network, at the photo's own aspect ratio
(:func:`working_input`): its shorter side is ``size`` (a panorama longer than
:data:`MAX_ASPECT`:1 gets its longer side capped at ``MAX_ASPECT * size``), never squashed to a
square. A model that takes one square size only (an exported ONNX model) gets the photo
letterboxed instead (:func:`letterbox`: longer side ``size``, mirrored padding, the
prediction cropped back). The predicted chroma ab is resized bilinearly to the photo's size and
joined with the photo's **own full-resolution L**, so every detail of the input is kept.
Colours the predicted ab would push outside sRGB are pulled towards gray at the same L (not
clipped per channel), so the output's lightness is the input's. Work runs in strips of rows:
memory stays bounded on large scans.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from colorization.color import AB_SCALE, lab_to_rgb_preserving_l, normalize_l, rgb_u8_to_lab

#: pixels per strip of rows in full-resolution work (bounds the float intermediates)
STRIP_PIXELS = 1 << 20
#: the longest working side is at most this many times ``size`` (memory of long panoramas)
MAX_ASPECT = 4


def _bilinear_taps(out_size: int, in_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Source indices and weights of bilinear resizing along one axis (as
    ``F.interpolate(mode="bilinear", align_corners=False)``)."""
    src = ((torch.arange(out_size, device=device, dtype=torch.float32) + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    return i0, i1, (src - i0).clamp(0, 1)


def luminance_l(rgb_u8: np.ndarray, device: torch.device) -> torch.Tensor:
    """(h, W, 3) uint8 rows -> their Lab L (h, W) in [0, 100]."""
    rgb = torch.from_numpy(np.ascontiguousarray(rgb_u8.transpose(2, 0, 1))).to(device)
    return rgb_u8_to_lab(rgb[None], lightness_only=True)[0, 0]


def compose_full_resolution(
    rgb_u8: np.ndarray, ab_norm: torch.Tensor, saturation: float = 1.0, strip_pixels: int = STRIP_PIXELS
) -> np.ndarray:
    """The photo's own L (from ``rgb_u8``, (H, W, 3) uint8) with the working-size prediction
    ``ab_norm`` (2, h, w) resized to (H, W) -> colorized (H, W, 3) uint8.

    Works in strips of rows so memory grows with the photo's bytes, not with float copies
    of it.
    """
    height, width = rgb_u8.shape[:2]
    device = ab_norm.device
    ab = ab_norm.float() * (AB_SCALE * saturation)
    x0, x1, wx = _bilinear_taps(width, ab.shape[2], device)
    ab_cols = ab[:, :, x0] * (1 - wx) + ab[:, :, x1] * wx  # (2, h, W): small
    y0, y1, wy = _bilinear_taps(height, ab.shape[1], device)
    out = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, strip_pixels // width)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        w = wy[top:bottom, None]
        ab_rows = ab_cols[:, y0[top:bottom]] * (1 - w) + ab_cols[:, y1[top:bottom]] * w
        lightness = luminance_l(rgb_u8[top:bottom], device)
        lab = torch.cat([lightness[None], ab_rows], dim=0)[None]
        rgb = lab_to_rgb_preserving_l(lab)[0]
        out[top:bottom] = rgb.mul_(255).round_().byte().permute(1, 2, 0).cpu().numpy()
    return out


def working_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """The network's (h, w) for a ``height x width`` photo: the shorter side ``size``, the
    longer one in proportion (rounded), at most ``MAX_ASPECT * size`` (a longer panorama gets
    a shorter side below ``size`` then, at least 1 px)."""
    short, long = min(height, width), max(height, width)
    long_out = round(long * size / short)
    short_out = size
    if long_out > MAX_ASPECT * size:
        long_out = MAX_ASPECT * size
        short_out = max(1, round(short * long_out / long))
    return (short_out, long_out) if height <= width else (long_out, short_out)


def _normalised_l(rgb_u8: np.ndarray, height: int, width: int) -> torch.Tensor:
    """The photo resized (bilinear) to ``height x width`` -> normalised L (height, width)."""
    small = Image.fromarray(rgb_u8).resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return normalize_l(luminance_l(np.asarray(small), torch.device("cpu")))


def working_input(rgb_u8: np.ndarray, size: int) -> torch.Tensor:
    """The gray photo at the network's working size, aspect ratio kept
    (:func:`working_shape`): normalised L (1, h, w)."""
    return _normalised_l(rgb_u8, *working_shape(*rgb_u8.shape[:2], size))[None]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int] | None]:
    """A network input (C, h, w) or (B, C, h, w) (normalised L, hint channels) padded at the
    bottom and right, edge pixels repeated, to sides of a ``multiple``, as a network that pads
    to one (unet) does itself -> (the input, crop box (0, 0, h, w) of the photo in it; None
    where nothing was padded)."""
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not pad_h and not pad_w:
        return x, None
    return torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate"), (0, 0, height, width)


def letterbox(rgb_u8: np.ndarray, size: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """The gray photo for a model of one square size: resized so that its longer side is
    ``size``, centred and padded by mirroring to ``size x size`` -> (normalised L
    (1, size, size), crop box (top, left, h, w) of the photo in it). Crop the prediction with
    ``ab[:, top : top + h, left : left + w]``."""
    height, width = rgb_u8.shape[:2]
    scale = size / max(height, width)
    h, w = max(1, min(size, round(height * scale))), max(1, min(size, round(width * scale)))
    lightness = _normalised_l(rgb_u8, h, w).numpy()
    top, left = (size - h) // 2, (size - w) // 2
    padded = np.pad(lightness, ((top, size - h - top), (left, size - w - left)), mode="reflect")
    return torch.from_numpy(np.ascontiguousarray(padded))[None], (top, left, h, w)


def gray_of(rgb_u8: np.ndarray, strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """The gray photo the model saw (L with ab = 0), (H, W, 3) uint8."""
    lab_gray = torch.zeros(1, 2, 1, 1)
    height, width = rgb_u8.shape[:2]
    out = np.empty_like(rgb_u8)
    rows = max(1, strip_pixels // width)
    for top in range(0, height, rows):
        lightness = luminance_l(rgb_u8[top : top + rows], torch.device("cpu"))
        lab = torch.cat([lightness[None], lab_gray[0].expand(2, *lightness.shape)], dim=0)[None]
        out[top : top + rows] = lab_to_rgb_preserving_l(lab)[0].mul_(255).round_().byte().permute(1, 2, 0).numpy()
    return out


def is_gray(rgb_u8: np.ndarray) -> bool:
    return bool((rgb_u8[..., 0] == rgb_u8[..., 1]).all() and (rgb_u8[..., 1] == rgb_u8[..., 2]).all())


def comparison(panels: Sequence[np.ndarray], max_height: int = 1024) -> np.ndarray:
    """Panels side by side (gray | colorized [| original]), scaled to at most ``max_height``."""
    height, width = panels[0].shape[:2]
    scale = min(1.0, max_height / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = [np.asarray(Image.fromarray(p).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)) for p in panels]
    gap = np.full((size[1], max(2, size[0] // 100), 3), 255, dtype=np.uint8)
    parts = [resized[0]]
    for panel in resized[1:]:
        parts += [gap, panel]
    return np.concatenate(parts, axis=1)
