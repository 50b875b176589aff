"""Image decoding that survives real-world files.

Every image, whatever its mode (gray, RGBA, palette, 16-bit, CMYK, EXIF-rotated) and colour
profile (Display P3, Adobe RGB, ...: converted), becomes an 8-bit sRGB ``PIL.Image``. Files
Pillow cannot read (some 16-bit or multi-sample TIFFs) are retried with imageio's tifffile
plugin. Only photo formats are ever tried (:data:`PHOTO_FORMATS`). Anything that still fails
raises :class:`UnreadableImage` naming the file, so callers can skip it and count it.
"""

from __future__ import annotations

import functools
import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

from colorization.limits import DEFAULT_MAX_PIXELS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: what Pillow may decode a photo as (it goes by the bytes, not the file's name): photo
#: formats only, never one that runs another program (EPS: Ghostscript) or parses exotic
#: containers; the imageio fallback is tifffile only
PHOTO_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "WEBP", "TIFF", "GIF", "PPM")


@functools.cache
def _photo_formats() -> list[str]:
    """:data:`PHOTO_FORMATS` this Pillow can open (naming one needs all plugins registered)."""
    Image.init()
    return [name for name in PHOTO_FORMATS if name in Image.OPEN]


# Pillow's own guard warns above MAX_IMAGE_PIXELS and refuses only above twice that: it stays
# on (at our default, so photos up to it open) for any decode that bypasses open_rgb, which
# refuses exactly above its ``max_pixels``. A larger ``max_pixels`` widens it (pillow_limit).
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, DEFAULT_MAX_PIXELS)


class UnreadableImage(OSError):
    """A file that is not a decodable image (corrupt, truncated, empty, wrong format)."""


class ImageTooLarge(UnreadableImage):
    """An image with more pixels than the limit; refused before decoding."""


def check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(
            f"{path}: {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} "
            "(raise it with --max-pixels)"
        )


class DataSourceError(RuntimeError):
    """A data source that cannot be used at all (missing or empty folder, missing data set)."""


def array_to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale an image array of any integer or float dtype to uint8 on 0..255.

    uint16 (and wider integers holding 16-bit data) are divided by 257 so 65535 -> 255;
    floats are taken as 0..1 when their maximum is <= 1, else as 0..255.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    x = array.astype(np.float64)
    if np.issubdtype(array.dtype, np.integer):
        peak = 255.0 if x.max(initial=0) <= 255 else 65535.0
    else:
        peak = 1.0 if x.max(initial=0) <= 1.0 else 255.0
    return np.clip(np.rint(x * (255.0 / peak)), 0, 255).astype(np.uint8)


def array_to_rgb(array: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1|2|3|4) array of any dtype -> (H, W, 3) uint8 RGB.

    Alpha is composited over white, the way a viewer shows a transparent photo.
    """
    x = array_to_uint8(np.asarray(array))
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"expected an (H, W[, C]) image with C in 1..4, got shape {array.shape}")
    alpha = None
    if x.shape[-1] in (2, 4):
        alpha = x[..., -1:].astype(np.float32) / 255.0
        x = x[..., :-1]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if alpha is not None:
        x = np.rint(x * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(x)


@functools.lru_cache(maxsize=32)
def _to_srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The transform from the colour profile ``icc`` to sRGB, or ``None`` for sRGB itself."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if "srgb" in ImageCms.getProfileDescription(source).lower():
        return None
    srgb = ImageCms.createProfile("sRGB")
    out = "RGBA" if mode == "RGBA" else "RGB"
    return ImageCms.buildTransform(source, srgb, mode, out, renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)


def to_srgb(image: Image.Image) -> Image.Image:
    """Convert a photo with an embedded ICC colour profile (Display P3 from phones, Adobe RGB
    from cameras, CMYK print profiles) to sRGB, relative colorimetric: the Lab the model learns
    and predicts is then the photo's real colour. Untagged and sRGB-tagged photos are returned
    as they are; an unreadable profile warns (once) and the pixels are taken as sRGB."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return image
    try:
        transform = _to_srgb_transform(bytes(icc), image.mode)
        return image if transform is None else ImageCms.applyTransform(image, transform)
    except (OSError, ValueError, ImageCms.PyCMSError):
        warnings.warn("an embedded colour profile could not be used; its pixels are read as sRGB", stacklevel=2)
        return image


def pil_to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image -> 8-bit sRGB, honouring EXIF orientation, the colour profile, alpha
    and 16-bit depth."""
    image = to_srgb(ImageOps.exif_transpose(image))
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Pillow's own convert("RGB") clips 16-bit values at 255: scale instead.
        return Image.fromarray(array_to_rgb(np.asarray(image)))
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        return Image.fromarray(array_to_rgb(np.asarray(image.convert("RGBA"))))
    return image.convert("RGB")


def _read_with_imageio(path: Path, max_pixels: int | None) -> Image.Image:
    import imageio.v3 as iio

    shape = iio.improps(path, plugin="tifffile").shape  # from the header: the size is checked before decoding
    planar = len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4)
    height, width = shape[-2:] if planar else shape[:2]
    check_pixels(path, int(width), int(height), max_pixels)
    array = iio.imread(path, plugin="tifffile")
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # planar TIFF (C, H, W)
    return Image.fromarray(array_to_rgb(array))


def _decode(image: Image.Image, name: str | Path, draft_size: int | None, max_pixels: int | None) -> Image.Image:
    """An opened (lazy) Pillow image -> 8-bit RGB: pixel limit, JPEG draft, decode, sRGB."""
    check_pixels(Path(name), *image.size, max_pixels)
    if draft_size is not None and image.format == "JPEG":
        scale = min(image.size) / draft_size
        if scale >= 2:
            image.draft("RGB", (int(image.size[0] / scale), int(image.size[1] / scale)))
    image.load()
    return pil_to_rgb(image)


def decode_rgb(
    data: bytes,
    name: str,
    draft_size: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    formats: tuple[str, ...] | None = None,
) -> Image.Image:
    """Encoded image bytes (a photo stored in a shard) -> 8-bit RGB, by the rules of
    :func:`open_rgb` (Pillow only), trying only Pillow's ``formats`` if given (a shard holds
    JPEG: nothing else, e.g. EPS, which Pillow hands to Ghostscript, is even tried);
    :class:`UnreadableImage` naming ``name`` when they are not a decodable image."""
    try:
        with Image.open(io.BytesIO(data), formats=list(formats) if formats else None) as image:
            return _decode(image, name, draft_size, max_pixels)
    except ImageTooLarge:
        raise
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"{name}: {error}") from None
    except Exception as error:  # noqa: BLE001 - any decoder failure means "unreadable"
        raise UnreadableImage(f"{name}: cannot decode image ({error})") from error


def open_rgb(
    path: str | Path, draft_size: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode ``path`` to an 8-bit RGB image.

    ``draft_size`` lets JPEG decoding skip resolution it does not need (the result is at
    least that large on its shorter side); it speeds up scans and small training crops.
    An image over ``max_pixels`` (width x height, from the header) raises
    :class:`ImageTooLarge` before anything is decoded (``None``: no limit). Raises
    :class:`UnreadableImage` naming the file when it cannot be decoded.
    """
    path = Path(path)
    if Image.MAX_IMAGE_PIXELS is not None and (max_pixels is None or max_pixels > Image.MAX_IMAGE_PIXELS):
        Image.MAX_IMAGE_PIXELS = max_pixels  # our exact check below replaces Pillow's looser one
    try:
        with Image.open(path, formats=_photo_formats()) as image:
            return _decode(image, path, draft_size, max_pixels)
    except ImageTooLarge:  # do not retry: the fallback would decode it
        raise
    except Image.DecompressionBombError as error:  # over twice Pillow's limit: over ours too
        found = re.search(r"\((\d+) pixels\)", str(error))
        pixels = f"{int(found[1]):,} pixels" if found else "more pixels"
        limit = f"{max_pixels:,}" if max_pixels is not None else "Pillow's"
        raise ImageTooLarge(f"{path}: {pixels}, over the limit of {limit} (raise it with --max-pixels)") from None
    except Exception as pil_error:  # noqa: BLE001 - any decoder failure means "unreadable"
        try:
            return _read_with_imageio(path, max_pixels)
        except ImageTooLarge:
            raise
        except Exception:  # noqa: BLE001
            raise UnreadableImage(f"{path}: cannot decode image ({pil_error})") from pil_error


def _suffix(name: str) -> str:
    """``Path(name).suffix.lower()`` without building a Path (``..jpg`` -> ``.jpg``, ``.jpg`` -> "")."""
    i = name.rfind(".")
    return name[i:].lower() if 0 < i < len(name) - 1 else ""


def _image_files(root: str, wanted: set[str], limit: int | None = None) -> list[str]:
    """Paths (strings) of the files under ``root`` whose lower-cased suffix is in ``wanted``:
    ``Path.rglob``'s walk (symlinked files kept, symlinked folders not entered, unreadable
    folders skipped) from ``os.scandir`` entries, which know files from folders without a
    ``stat`` each (5x faster on 100,000 photos). Stops after ``limit`` files, if given."""
    found, folders = [], [root]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            folders.append(entry.path)
                        elif _suffix(entry.name) in wanted and entry.is_file():
                            found.append(entry.path)
                            if limit is not None and len(found) >= limit:
                                return found
                    except OSError:
                        continue
        except OSError:
            continue
    return found


def count_images(root: str | Path, limit: int, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> int:
    """How many image files ``root`` holds, counting no further than ``limit`` (a quick
    "is there anything, and is it more than a few" for the preflight)."""
    return len(_image_files(str(Path(root).expanduser()), {e.lower() for e in extensions}, limit))


def find_images(root: str | Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """All files under ``root`` (recursive, sorted) whose suffix is an image extension.

    Raises :class:`DataSourceError` naming ``root`` when it is missing, not a folder, or
    holds no image files.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataSourceError(f"image folder does not exist: {root.resolve()}")
    if not root.is_dir():
        raise DataSourceError(f"not a folder of images: {root.resolve()}")
    wanted = {e.lower() for e in extensions}
    paths = [Path(p) for p in sorted(_image_files(str(root), wanted), key=lambda p: p.split(os.sep))]
    if not paths:
        raise DataSourceError(f"no images ({', '.join(sorted(wanted))}) found under {root.resolve()}")
    return paths
