"""Read any image into an ``(H, W, 3) uint8`` RGB array, or say clearly why it cannot be read.

Rules:
- EXIF orientation is applied, so masks line up with the image as it is displayed.
- Gray (L, 1) is replicated to RGB; palette images are converted; images with transparency
  (LA, RGBA, PA, P with a transparent colour) are composited over white; CMYK and YCbCr are
  converted to RGB.
- 16/32-bit integer and float images (I;16, I, F: medical, scientific, float TIFF) are
  rescaled linearly from their own [min, max] to [0, 255] (a constant image becomes black,
  NaN counts as the minimum).
- Arrays: HxW, HxWx1, HxWx3 or HxWx4; uint8 as is, bool as 0/255, floats within [0, 1] scaled by
  255, other dtypes rescaled by their [min, max] as above.
- Size: images above ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`, 80 megapixels) are
  refused from their header, before any pixel is decoded. Pillow's decompression-bomb guard
  stays on as a second line.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageLoadError

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 80_000_000
SUPPORTED = "PNG, JPEG, TIFF, BMP, WebP, GIF"


def load_image(source: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read ``source`` (path, bytes, binary file object, PIL image or array) as RGB.

    Returns:
        C-contiguous ``(H, W, 3) uint8`` array.

    Raises:
        ImageLoadError: missing, empty, corrupt, truncated, unsupported or too large input.
    """
    if isinstance(source, np.ndarray):
        array = _array_to_rgb(source)
        _check_size(array.shape[1], array.shape[0], max_pixels, "array")
        return array
    if isinstance(source, Image.Image):
        _check_size(source.width, source.height, max_pixels, "image")
        return _decode(source, "image")
    name, stream, owned = _open_source(source)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(stream) as img:
                _check_size(img.width, img.height, max_pixels, name)
                return _decode(img, name)
        except UnidentifiedImageError as exc:
            raise ImageLoadError(
                f"{name} is not a recognised image format (supported: {SUPPORTED}). "
                "Is it really an image file?"
            ) from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageLoadError(
                f"{name} is too large to open safely: {exc} Downscale the image first."
            ) from exc
        finally:
            if owned:
                stream.close()


def _open_source(source: Any) -> tuple[str, BinaryIO, bool]:
    """A name for messages, a binary stream, and whether this module opened (and closes) it."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageLoadError("The uploaded image is empty (0 bytes).")
        return "the uploaded image", io.BytesIO(data), True
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageLoadError(f"Image file not found: {path}")
        if path.is_dir():
            raise ImageLoadError(f"{path} is a folder, not an image file.")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{path.name} is empty (0 bytes); re-export or re-download it.")
        try:
            return path.name, open(path, "rb"), True
        except OSError as exc:
            raise ImageLoadError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    if hasattr(source, "read"):
        return str(getattr(source, "name", "the image")), source, False
    raise ImageLoadError(f"Cannot read an image from a {type(source).__name__}.")


def _check_size(width: int, height: int, max_pixels: int | None, name: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"{name} has no pixels ({width}×{height}).")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            f"{name} is {width}×{height} = {width * height / 1e6:.1f} megapixels, over the "
            f"limit of {max_pixels / 1e6:.1f} megapixels. Downscale the image, or raise the "
            "limit (max_pixels / --max-image-pixels) if the machine has the memory."
        )


def _decode(img: Image.Image, name: str) -> np.ndarray:
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        return _pil_to_rgb(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(
            f"{name} is truncated or corrupt ({exc}); re-export or re-download it."
        ) from exc


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _gray_to_rgb(_rescale(np.asarray(img)))
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("LA", "PA"):
        img = img.convert("RGBA")
    elif mode == "RGB":
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    if img.mode == "RGBA":
        return _over_white(np.asarray(img, dtype=np.uint8))
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def _rescale(values: np.ndarray) -> np.ndarray:
    """Linear map of the finite [min, max] to [0, 255] uint8; NaN -> 0; constant -> 0."""
    data = values.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(data.shape, dtype=np.uint8)
    lo, hi = data[finite].min(), data[finite].max()
    data = np.where(finite, data, lo)
    if hi <= lo:
        return np.zeros(data.shape, dtype=np.uint8)
    return np.round((data - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))


def _over_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.ascontiguousarray(np.round(rgb).astype(np.uint8))


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.size == 0:
        raise ImageLoadError(f"The image array is empty (shape {array.shape}).")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageLoadError(
            f"Expected an HxW, HxWx3 or HxWx4 image array, got shape {array.shape}."
        )
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        data = array.astype(np.float64)
        finite = data[np.isfinite(data)]
        is_unit_float = (
            np.issubdtype(array.dtype, np.floating)
            and finite.size
            and finite.min() >= 0
            and finite.max() <= 1
        )
        if is_unit_float:
            array = np.round(np.nan_to_num(data, nan=0.0) * 255).astype(np.uint8)
        else:  # one range for all channels keeps colours consistent
            array = _rescale(data)
    if array.ndim == 2:
        return _gray_to_rgb(array)
    if array.shape[2] == 4:
        return _over_white(array)
    return np.ascontiguousarray(array)
