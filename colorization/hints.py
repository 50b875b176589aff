"""User colour hints: a few revealed ab points given to the network as extra input channels.

Zhang et al., SIGGRAPH 2017 ("Real-Time User-Guided Image Colorization with Learned Deep
Priors"): the net sees ``[L, hint a, hint b, mask]``; where the mask is 1 the hint channels hold
a revealed colour (normalised ab, Lab / 110), elsewhere 0. In training the hints are drawn from
the true ab as they did:

* the number of points is geometric with ``p = 1/8`` (``P(0) = 1/8``: the net still learns to
  colour with no hint at all), capped at ``max_points``;
* each point's position is Gaussian around the centre (standard deviation a quarter of the
  height / width), clamped to the photo;
* each point reveals a square patch of side drawn uniformly from 1 to 9 px, filled with the
  mean of the true ab over that patch.

Validation and test draw from a generator seeded by the batch index, so every epoch (and every
run) sees the same hints. :func:`paint_points` renders given points (``colorize --hints``, the
web page, the benchmark) the same way.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

#: channels the hints add to the network's input: hint a, hint b, mask
HINT_CHANNELS = 3
GEOMETRIC_P = 1 / 8
MAX_POINTS = 100
PATCH_SIZES = (1, 9)


def paint(
    ab: torch.Tensor, image: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, sizes: torch.Tensor,
    colours: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Hint channels ``(B, 3, H, W)`` for points ``(image index, y, x, patch side)``; each patch
    is filled with ``colours`` (P, 2) when given, else with the mean of ``ab`` (B, 2, H, W) over
    it (a summed-area table: memory does not grow with the number of points). Overlapping
    patches average."""
    batch, _, height, width = ab.shape
    device = ab.device
    hints = torch.zeros(batch, HINT_CHANNELS, height, width, device=device, dtype=ab.dtype)
    if len(ys) == 0:
        return hints
    top = (ys - (sizes - 1) // 2).clamp(0, height - 1)
    left = (xs - (sizes - 1) // 2).clamp(0, width - 1)
    bottom = (top + sizes).clamp(max=height)
    right = (left + sizes).clamp(max=width)
    if colours is None:
        table = F.pad(ab.double().cumsum(2).cumsum(3), (1, 0, 1, 0))  # (B, 2, H + 1, W + 1)
        corners = table[image, :, bottom, right] - table[image, :, top, right]
        corners = corners - table[image, :, bottom, left] + table[image, :, top, left]
        colours = corners / ((bottom - top) * (right - left)).clamp(min=1)[:, None]
    colours = colours.to(device=device, dtype=ab.dtype)
    boxes = zip(*(v.tolist() for v in (image, top, bottom, left, right)), strict=True)
    for i, (b, y0, y1, x0, x1) in enumerate(boxes):
        hints[b, :2, y0:y1, x0:x1] += colours[i, :, None, None]
        hints[b, 2, y0:y1, x0:x1] += 1
    count = hints[:, 2:]
    hints[:, :2] /= count.clamp(min=1)
    hints[:, 2] = (count[:, 0] > 0).to(ab.dtype)
    return hints


def sample_hints(
    ab: torch.Tensor, generator: torch.Generator | None = None, max_points: int = MAX_POINTS
) -> torch.Tensor:
    """Random hints from the true ``ab`` (B, 2, H, W), as in Zhang et al. 2017 (module notes)
    -> hint channels (B, 3, H, W)."""
    batch, _, height, width = ab.shape
    device = ab.device

    def uniform(n: int) -> torch.Tensor:
        return torch.rand(n, generator=generator, device="cpu").to(device)

    # geometric on {0, 1, ...}: floor(log U / log(1 - p))
    counts = (torch.log(uniform(batch).clamp(min=1e-12)) / torch.log(torch.tensor(1 - GEOMETRIC_P))).floor()
    counts = counts.long().clamp(max=max_points)
    total = int(counts.sum())
    image = torch.repeat_interleave(torch.arange(batch, device=device), counts)
    normal = torch.randn(2, total, generator=generator, device="cpu").to(device)
    ys = (height / 2 + normal[0] * height / 4).round().long().clamp(0, height - 1)
    xs = (width / 2 + normal[1] * width / 4).round().long().clamp(0, width - 1)
    low, high = PATCH_SIZES
    sizes = torch.randint(low, high + 1, (total,), generator=generator, device="cpu").to(device)
    return paint(ab, image, ys, xs, sizes)


def points_hints(ab: torch.Tensor, points: int, generator: torch.Generator, patch: int = 1) -> torch.Tensor:
    """Exactly ``points`` hints per photo, uniformly placed, revealing the true ``ab`` over
    ``patch``-px squares (the hint-vs-quality benchmark)."""
    batch, _, height, width = ab.shape
    device = ab.device
    image = torch.arange(batch, device=device).repeat_interleave(points)
    ys = torch.randint(0, height, (batch * points,), generator=generator, device="cpu").to(device)
    xs = torch.randint(0, width, (batch * points,), generator=generator, device="cpu").to(device)
    sizes = torch.full((batch * points,), patch, device=device, dtype=torch.long)
    return paint(ab, image, ys, xs, sizes)


def no_hints(l_norm: torch.Tensor) -> torch.Tensor:
    """Hint channels with nothing revealed, for ``l_norm`` (B, 1, H, W)."""
    batch, _, height, width = l_norm.shape
    return l_norm.new_zeros(batch, HINT_CHANNELS, height, width)


def resize_hints(hints: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Hint channels at another size (nearest: a revealed pixel stays revealed, colours unmixed)."""
    if tuple(hints.shape[-2:]) == tuple(size):
        return hints
    return F.interpolate(hints, size=size, mode="nearest")


# ----------------------------------------------------------------------------- given points


#: limits on a hints file (it is untrusted input, like a photo)
MAX_HINTS_BYTES = 1 << 20
MAX_HINT_POINTS = 1000
MAX_PATCH = 1024


class HintsError(ValueError):
    """A hints file (or a hint) that cannot be used; the message names it."""


@dataclass(frozen=True)
class Hint:
    """A revealed colour: pixel ``(x, y)`` of the original photo (0 = left / top edge of the
    first pixel's centre), sRGB ``rgb`` 0..255, a square patch of ``size`` original pixels
    (None: about 1/100 of the photo's shorter side)."""

    x: float
    y: float
    rgb: tuple[int, int, int]
    size: int | None = None


def _colour(value: object, where: str) -> tuple[int, int, int]:
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    if isinstance(value, list) and len(value) == 3 and all(type(v) is int and 0 <= v <= 255 for v in value):
        return tuple(value)  # type: ignore[return-value]
    raise HintsError(f"{where}: 'color' must be '#rrggbb' or [r, g, b] with 0..255, got {value!r:.60}")


def parse_hints(data: object, source: str = "hints") -> list[Hint]:
    """``{"points": [{"x": 120, "y": 45, "color": "#c0392b", "size": 5}, ...]}`` (or the list
    alone) -> hints; every key checked, errors name ``source`` and the point."""
    points = data.get("points") if isinstance(data, dict) else data
    if isinstance(data, dict) and set(data) - {"points"}:
        raise HintsError(f"{source}: unknown keys {sorted(set(data) - {'points'})} (only 'points')")
    if not isinstance(points, list):
        raise HintsError(f'{source}: expected {{"points": [{{"x": .., "y": .., "color": "#rrggbb"}}, ...]}}')
    if len(points) > MAX_HINT_POINTS:
        raise HintsError(f"{source}: {len(points)} points, more than {MAX_HINT_POINTS}")
    hints = []
    for i, point in enumerate(points):
        where = f"{source}: point {i}"
        if not isinstance(point, dict) or not {"x", "y", "color"} <= set(point) <= {"x", "y", "color", "size"}:
            raise HintsError(f"{where}: needs 'x', 'y', 'color' (and optionally 'size'), got {point!r:.80}")
        x, y, size = point["x"], point["y"], point.get("size")
        if not all(type(v) in (int, float) and abs(v) < 2**31 and math.isfinite(v) for v in (x, y)):
            raise HintsError(f"{where}: 'x' and 'y' must be numbers (pixels of the photo)")
        if size is not None and not (type(size) is int and 1 <= size <= MAX_PATCH):
            raise HintsError(f"{where}: 'size' must be a whole number of pixels in 1..{MAX_PATCH}")
        hints.append(Hint(float(x), float(y), _colour(point["color"], where), size))
    return hints


def read_hints(path: str | Path) -> list[Hint]:
    """A hints JSON file (``colorize --hints``), size-capped and checked (:func:`parse_hints`)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_HINTS_BYTES + 1)
    except OSError as error:
        raise HintsError(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(raw) > MAX_HINTS_BYTES:
        raise HintsError(f"{path}: larger than {MAX_HINTS_BYTES // 1024} KiB; not a hints file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # ValueError: JSONDecodeError, huge ints
        raise HintsError(f"{path}: not JSON ({error})") from None
    return parse_hints(data, str(path))


def hint_channels(hints: list[Hint], photo: tuple[int, int], working: tuple[int, int]) -> torch.Tensor:
    """Hints on a ``photo`` of (height, width) pixels -> hint channels (1, 3, h, w) at the
    ``working`` (h, w) size. A hint outside the photo is an error naming it."""
    from colorization.color import AB_SCALE, rgb_u8_to_lab

    height, width = photo
    h, w = working
    if not hints:
        return torch.zeros(1, HINT_CHANNELS, h, w)
    for i, hint in enumerate(hints):
        if not (-0.5 <= hint.x < width - 0.5 and -0.5 <= hint.y < height - 0.5):
            raise HintsError(f"hint {i} at ({hint.x:g}, {hint.y:g}) is outside the {width}x{height} photo")
    scale_y, scale_x = h / height, w / width
    xs = torch.tensor([(hint.x + 0.5) * scale_x - 0.5 for hint in hints]).round().long().clamp(0, w - 1)
    ys = torch.tensor([(hint.y + 0.5) * scale_y - 0.5 for hint in hints]).round().long().clamp(0, h - 1)
    default = max(1, round(min(height, width) / 100))
    sizes = torch.tensor([max(1, round((hint.size or default) * min(scale_x, scale_y))) for hint in hints])
    rgb = torch.tensor([hint.rgb for hint in hints], dtype=torch.uint8).T.reshape(1, 3, len(hints), 1)
    colours = rgb_u8_to_lab(rgb)[0, 1:, :, 0].T / AB_SCALE  # (P, 2)
    image = torch.zeros(len(hints), dtype=torch.long)
    return paint(torch.zeros(1, 2, h, w), image, ys, xs, sizes, colours)
