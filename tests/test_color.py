"""Lab conversion: accuracy, agreement with scikit-image, normalised ranges."""

import numpy as np
import torch
from skimage.color import rgb2lab

from colorization.color import colorfulness, gray_rgb, lab_norm_to_rgb, rgb_to_lab_norm


def to_batch(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float() / 255


def test_lab_round_trip_recovers_rgb(photos):
    rgb = to_batch(photos["astronaut"])
    back = lab_norm_to_rgb(*rgb_to_lab_norm(rgb))
    assert (back - rgb).abs().max() < 2e-3  # well under one 8-bit level (0.0039)


def test_lab_agrees_with_skimage(photos):
    array = photos["coffee"]
    l_norm, ab_norm = rgb_to_lab_norm(to_batch(array))
    ours = torch.cat([l_norm * 50 + 50, ab_norm * 110], 1)[0].permute(1, 2, 0).double().numpy()
    reference = rgb2lab(array)
    assert np.abs(ours - reference).max() < 0.05


def test_normalised_lab_of_every_srgb_colour_is_within_unit_range():
    levels = torch.linspace(0, 1, 33)
    grid = torch.stack(torch.meshgrid(levels, levels, levels, indexing="ij")).reshape(3, -1, 1)[None]
    l_norm, ab_norm = rgb_to_lab_norm(grid)
    assert l_norm.min() >= -1 - 1e-5 and l_norm.max() <= 1 + 1e-5
    assert ab_norm.abs().max() <= 1.0
    assert ab_norm.abs().max() > 0.75  # the scale is not so loose that ab uses a sliver of [-1, 1]


def test_gray_rgb_has_no_colour_and_keeps_lightness(photos):
    rgb = to_batch(photos["chelsea"])
    gray = gray_rgb(rgb_to_lab_norm(rgb)[0])
    assert (gray[:, 0] - gray[:, 1]).abs().max() < 2e-3 and (gray[:, 1] - gray[:, 2]).abs().max() < 2e-3
    l_gray, ab_gray = rgb_to_lab_norm(gray)
    assert (l_gray - rgb_to_lab_norm(rgb)[0]).abs().max() * 50 < 0.5
    assert ab_gray.abs().max() * 110 < 0.5


def test_colorfulness_is_zero_for_gray_and_high_for_a_colourful_photo(photos):
    gray = np.repeat(photos["astronaut"].mean(axis=2, keepdims=True), 3, axis=2)
    assert colorfulness(gray) == 0.0
    assert colorfulness(photos["astronaut"]) > 30
