"""Decoding real-world files: every mode becomes correct 8-bit RGB; broken files name themselves."""

import io

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from colorization.data.images import UnreadableImage, open_rgb
from tests.helpers import icc_profile, rgb_to_xyz_matrix


@pytest.fixture
def photo(photos) -> np.ndarray:
    return photos["coffee"]


def saved(tmp_path, image: Image.Image, name: str, **kwargs) -> str:
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_rgb_png_is_read_exactly(tmp_path, photo):
    out = open_rgb(saved(tmp_path, Image.fromarray(photo), "a.png"))
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), photo)


def test_grayscale_becomes_three_equal_channels(tmp_path, photo):
    gray = Image.fromarray(photo).convert("L")
    out = np.asarray(open_rgb(saved(tmp_path, gray, "g.png")))
    assert out.shape == (*photo.shape[:2], 3)
    assert np.array_equal(out[..., 0], np.asarray(gray)) and np.array_equal(out[..., 0], out[..., 2])


def test_rgba_is_composited_over_white(tmp_path, photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0  # fully transparent corner
    out = np.asarray(open_rgb(saved(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png")))
    assert np.array_equal(out[20:, 20:], photo[20:, 20:])
    assert (out[:10, :10] == 255).all()


def test_palette_images_with_and_without_transparency(tmp_path, photo):
    palette = Image.fromarray(photo).quantize(64)
    out = np.asarray(open_rgb(saved(tmp_path, palette, "p.png")))
    assert np.array_equal(out, np.asarray(palette.convert("RGB")))
    palette.info["transparency"] = 0
    out = np.asarray(open_rgb(saved(tmp_path, palette, "pt.png", transparency=0)))
    assert out.shape == photo.shape and out.dtype == np.uint8


def test_16_bit_gray_png_is_scaled_not_clipped(tmp_path, photo):
    gray8 = np.asarray(Image.fromarray(photo).convert("L"))
    gray16 = gray8.astype(np.uint16) * 257
    out = np.asarray(open_rgb(saved(tmp_path, Image.fromarray(gray16), "g16.png")))
    assert np.abs(out[..., 0].astype(int) - gray8).max() <= 1


def test_16_bit_rgb_tiff(tmp_path, photo):
    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, photo.astype(np.uint16) * 257, photometric="rgb")
    out = np.asarray(open_rgb(path))
    assert np.abs(out.astype(int) - photo).max() <= 1


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted_to_rgb(tmp_path, photo, fmt):
    cmyk = Image.fromarray(photo).convert("CMYK")
    out = np.asarray(open_rgb(saved(tmp_path, cmyk, f"c.{fmt.lower()}", format=fmt, quality=95)))
    tolerance = 12 if fmt == "JPEG" else 1
    assert np.abs(out.astype(int) - photo).mean() < tolerance


def test_exif_orientation_is_applied(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = saved(tmp_path, Image.fromarray(photo), "r.jpg", exif=exif, quality=95)
    out = open_rgb(path)
    assert out.size == (photo.shape[0], photo.shape[1])  # width and height swapped


@pytest.mark.parametrize(
    "name, payload",
    [
        ("empty.png", b""),
        ("text.png", b"this is not an image\n"),
        ("noise.jpg", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))),
    ],
)
def test_non_images_raise_an_error_naming_the_file(tmp_path, name, payload):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(UnreadableImage, match=name):
        open_rgb(path)


def test_truncated_jpeg_raises(tmp_path, photo):
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG")
    path = tmp_path / "truncated.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(UnreadableImage, match="truncated.jpg"):
        open_rgb(path)


def test_draft_decoding_keeps_at_least_the_requested_size(tmp_path, photos):
    big = Image.fromarray(photos["astronaut"]).resize((1024, 1024))
    path = saved(tmp_path, big, "big.jpg")
    out = open_rgb(path, draft_size=100)
    assert 100 <= min(out.size) < 1024


ADOBE_RGB = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))  # gamma 563/256
DISPLAY_P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))  # here with a pure 2.2 gamma
SRGB = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))


def expected_srgb(values: np.ndarray, primaries, gamma: float) -> np.ndarray:
    """What the tagged 8-bit values are in sRGB (the colour science, independent of LittleCMS)."""
    linear = (values / 255.0) ** gamma
    xyz = linear @ rgb_to_xyz_matrix(primaries).T
    srgb_linear = np.clip(xyz @ np.linalg.inv(rgb_to_xyz_matrix(SRGB)).T, 0, 1)
    encoded = np.where(srgb_linear <= 0.0031308, 12.92 * srgb_linear, 1.055 * srgb_linear ** (1 / 2.4) - 0.055)
    return encoded * 255


@pytest.mark.parametrize(
    ("primaries", "gamma", "name", "fmt"),
    [(ADOBE_RGB, 563 / 256, "Adobe RGB (1998)", "JPEG"), (DISPLAY_P3, 2.2, "Display P3", "PNG")],
)
def test_embedded_colour_profiles_are_converted_to_srgb(tmp_path, photo, primaries, gamma, name, fmt):
    # the photo's own values, tagged as another colour space: a camera's Adobe RGB JPEG, a phone's P3 PNG
    values = np.asarray(Image.fromarray(photo).resize((64, 48)))
    values = np.concatenate([values, np.array([[[40, 180, 60], [200, 60, 50], [128, 128, 128], [90, 120, 200]]] * 48,
                                              dtype=np.uint8)], axis=1)  # fmt: skip
    icc = icc_profile(primaries, gamma, name)
    path = tmp_path / f"tagged.{fmt.lower()}"
    Image.fromarray(values).save(path, format=fmt, icc_profile=icc, **({"quality": 100} if fmt == "JPEG" else {}))
    decoded = np.asarray(open_rgb(path)).astype(float)
    stored = np.asarray(Image.open(path).convert("RGB")).astype(float)  # the values in the file (JPEG: lossy)
    expected = expected_srgb(stored, primaries, gamma)
    assert np.abs(decoded - expected).max() <= 2.0  # 8-bit rounding and the profile's fixed-point numbers
    assert np.abs(decoded - stored).mean() > 4  # a real change: wider-gamut colours are more saturated in sRGB
    # an sRGB-tagged or untagged photo is read as it is
    Image.fromarray(values).save(tmp_path / "srgb.png", icc_profile=ImageCms.ImageCmsProfile(
        ImageCms.createProfile("sRGB")).tobytes())  # fmt: skip
    Image.fromarray(values).save(tmp_path / "plain.png")
    assert np.array_equal(np.asarray(open_rgb(tmp_path / "srgb.png")), values)
    assert np.array_equal(np.asarray(open_rgb(tmp_path / "plain.png")), values)


def test_a_corrupt_colour_profile_warns_and_keeps_the_pixels(tmp_path, photo):
    values = np.asarray(Image.fromarray(photo).resize((32, 24)))
    Image.fromarray(values).save(tmp_path / "bad.png", icc_profile=b"not a profile" * 30)
    with pytest.warns(UserWarning, match="colour profile could not be used"):
        assert np.array_equal(np.asarray(open_rgb(tmp_path / "bad.png")), values)


def test_a_postscript_file_named_like_a_photo_is_unreadable_and_never_handed_to_ghostscript(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    calls = []

    def ghostscript(*args, **kwargs):
        calls.append(args)
        raise OSError("Ghostscript was asked to run the file")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    path = tmp_path / "holiday.jpg"  # PostScript is a program: Pillow would let Ghostscript run it
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n0 0 moveto 64 64 lineto stroke\nshowpage\n")
    with pytest.raises(UnreadableImage, match="holiday.jpg"):
        open_rgb(path)
    assert not calls
