"""Read any image a user may hand us into one ``(H, W, 3) uint8`` RGB array.

:func:`load_image` accepts a path, raw bytes, a binary file object, a ``PIL.Image.Image`` or a
numpy array and always returns a new, C-contiguous, writeable ``(H, W, 3)`` ``uint8`` array in
RGB order, oriented the way the image is displayed (EXIF orientation applied), so that masks
predicted on it line up with what the user sees.

Conversion rules
----------------
Pillow images (from files, bytes, file objects or given directly), by mode:

* ``RGB``: taken as is.
* ``L`` and ``1``: the gray value is copied into R, G and B (``1`` gives 0 or 255).
* ``RGBA``, ``LA``, ``PA`` (and premultiplied ``RGBa``/``La``), and ``P`` with a
  ``transparency`` entry: alpha-composited over a white background, so a fully transparent
  pixel becomes ``(255, 255, 255)``.
* ``P`` without transparency: palette looked up to RGB.
* ``CMYK`` (e.g. CMYK JPEG), ``YCbCr``, ``LAB``, ``HSV``: converted to RGB by Pillow.
* High bit depth gray, i.e. 16-bit and 32-bit integer (``I;16``, ``I;16B``, ``I;16L``,
  ``I;16N``, ``I``) and 32-bit float (``F``, e.g. float TIFF): **rescaled linearly from the
  image's own range to 0..255**. The smallest finite value becomes 0 and the largest 255
  (rounded to the nearest integer); a constant image becomes all zeros; NaN counts as the
  minimum (0), ``-inf`` gives 0 and ``+inf`` 255. The result is then copied into R, G and B.
  Note that this stretches contrast: a 16-bit image that only uses values 0..4095 still
  spans the full 0..255.
* Multi-frame files (animated GIF/PNG, multi-page TIFF): the first frame.

numpy arrays of shape ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``:

* ``uint8``: taken as is.
* ``bool``: ``False`` → 0, ``True`` → 255.
* floating point whose finite values all lie in ``[0, 1]``: multiplied by 255 and rounded
  (NaN → 0, infinities clipped).
* every other integer or floating array: min-max rescaled as for 16-bit images above, all
  channels together (so colours keep their relative brightness).
* One channel is copied into R, G and B; a fourth channel is alpha and is composited over
  white after the conversion to ``uint8``.
* Any other shape, a zero-size array, or a dtype that is neither bool, integer nor
  floating point is refused.

Size limit
----------
Before any pixel data is decoded (Pillow reads only the header on open), ``width * height`` is
compared with ``max_pixels`` (:data:`DEFAULT_MAX_PIXELS`, 80 megapixels, by default); a larger
image is refused with an :class:`~sam.errors.ImageLoadError` saying how large it is and how to
proceed. ``max_pixels=None`` turns this check off. The same limit applies to arrays and PIL
images passed in directly. Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``)
is never switched off; an image it refuses is reported as an ``ImageLoadError`` as well.

Memory
------
Decoding a file or bytes draws on :data:`sam.memory.DECODE_BUDGET` (1 GiB by default): the
bytes a decode will need, estimated by :func:`decode_cost` from the header's size and pixel
mode before any pixel is decoded, are taken from the budget and handed back once the decoded
image is converted and freed, so concurrent decodes of huge images take turns instead of
multiplying the peak (one image larger than the whole budget still loads, alone). Conversion
to RGB works in bands of rows, so it needs the decoded image and the result, not full-size
intermediate copies. After a large decode, memory the C allocator kept is returned to the
system (:func:`sam.memory.release_free_memory`).

Every failure (missing file, folder, empty file, not an image, truncated or corrupt data, zero
width or height, too large) is raised as :class:`~sam.errors.ImageLoadError` with a message
that says what the file is and what to do, chained to the original exception.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import threading
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageLoadError
from .memory import DECODE_BUDGET, release_free_memory

__all__ = ["DEFAULT_MAX_PIXELS", "decode_cost", "load_image"]

logger = logging.getLogger(__name__)

#: Largest image, in pixels (width * height), :func:`load_image` accepts unless told otherwise.
#: 80 megapixels is a 10,000 × 8,000 photo: the decoded RGB array alone takes 240 MB, and
#: larger uploads are far more likely to be mistakes or attacks than real annotation work.
#: Pass ``max_pixels=None`` to :func:`load_image` to turn the check off.
DEFAULT_MAX_PIXELS = 80_000_000

#: What a user can convert an unrecognised file to; all of these are readable here.
SUPPORTED_FORMATS = "PNG, JPEG, WebP, TIFF, BMP and GIF"

# Modes whose alpha channel is composited over white.
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Gray modes with more than 8 bits per pixel, rescaled from their own range to 0..255.
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# Elements converted at a time when rescaling, to bound the float64 scratch memory (8 MB);
# also the pixels per band when converting to RGB.
_CHUNK = 1 << 20
# Bytes per pixel of Pillow's decoded storage: 1 for these modes, 2 for 16-bit gray, else 4
# (Pillow keeps RGB, YCbCr, LA, ... in four bytes per pixel).
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
# Scratch memory of one band of the conversion to RGB (a few copies of 2**20 pixels).
_BAND_BYTES = 16 * _CHUNK
# Decodes that cost more than this give freed memory back to the system afterwards.
_TRIM_BYTES = 64 << 20

# warnings.catch_warnings() swaps the process-wide filter list and is not thread-safe, so
# the threads of the app serialise the (header-only, fast) Image.open calls that use it.
_OPEN_LOCK = threading.Lock()

_PILLOW_PIXELS = re.compile(r"\((\d+) pixels\)")


def load_image(
    source: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, copy: bool = True
) -> np.ndarray:
    """Read ``source`` into a new C-contiguous ``(H, W, 3)`` ``uint8`` RGB array.

    Args:
        source: a path (``str`` or ``os.PathLike``), the encoded file as ``bytes``, a binary
            file object (read from its start when it is seekable), a ``PIL.Image.Image`` or a
            numpy array (see the module docstring for accepted shapes and dtypes).
        max_pixels: refuse images with more than this many pixels (width * height), checked
            before pixel data is decoded. ``None`` turns the check off; Pillow's own
            decompression-bomb guard stays on regardless.
        copy: ``False`` returns an array that is already C-contiguous ``(H, W, 3)`` ``uint8``
            as it is, for callers that only read it (the predictor, which gets the app's
            photo on every click: 6.5 MB copied for nothing at 1800x1200).

    Returns:
        ``(H, W, 3)`` ``uint8`` RGB, EXIF orientation applied, owned by the caller (unless
        ``copy=False`` handed back ``source`` itself).

    Raises:
        ImageLoadError: the image is missing, unreadable, corrupt, empty, of an unsupported
            kind, or too large; the message says what to do.
        ValueError: ``max_pixels`` is not a positive integer or ``None``.
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or max_pixels <= 0):
        raise ValueError(
            f"max_pixels must be a positive number of pixels or None, not {max_pixels!r}"
        )

    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels, copy)
    if isinstance(source, Image.Image):
        return _from_pil(source, "the given PIL image", max_pixels, owned=False)
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = memoryview(source).nbytes
        desc = f"the uploaded image data ({size:,} bytes)"
        if size == 0:
            raise ImageLoadError(
                "Cannot read the uploaded image data: it is empty (0 bytes). "
                "Upload the image file again."
            )
        return _decode(io.BytesIO(source), desc, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return _from_path(Path(os.fspath(source)), max_pixels)
    if hasattr(source, "read"):
        return _from_stream(source, max_pixels)
    raise ImageLoadError(
        f"Cannot load an image from a {type(source).__name__}: pass a file path, the file's "
        "bytes, a binary file object, a PIL image or a numpy array."
    )


# -- sources -------------------------------------------------------------------------------


def _from_path(path: Path, max_pixels: int | None) -> np.ndarray:
    desc = f"'{path}'"
    if path.is_dir():
        raise ImageLoadError(f"{desc} is a folder, not an image file. Choose an image file in it.")
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with-block below
    except FileNotFoundError as exc:
        raise ImageLoadError(
            f"Image file not found: {desc}. Check the path and the file name."
        ) from exc
    except PermissionError as exc:
        raise ImageLoadError(
            f"Cannot read {desc}: permission denied. Make the file readable or copy it "
            "somewhere this program can read."
        ) from exc
    except OSError as exc:
        raise ImageLoadError(f"Cannot open {desc}: {exc}. Check the path.") from exc
    with handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise ImageLoadError(
                f"Cannot read {desc}: the file is empty (0 bytes). It was probably not saved "
                "or downloaded completely; re-export or re-download it."
            )
        return _decode(handle, desc, max_pixels)


def _from_stream(stream: IO[bytes], max_pixels: int | None) -> np.ndarray:
    name = getattr(stream, "name", None)
    desc = f"'{name}'" if isinstance(name, str) and name else "the image file object"
    try:
        if stream.seekable():
            stream.seek(0)
        data = stream.read()
    except (OSError, ValueError) as exc:  # ValueError: I/O on a closed file
        raise ImageLoadError(f"Cannot read {desc}: {exc}. Open the file again.") from exc
    if isinstance(data, str):
        raise ImageLoadError(
            f"Cannot read {desc}: it was opened in text mode. Open it in binary mode ('rb')."
        )
    if not data:
        raise ImageLoadError(
            f"Cannot read {desc}: it is empty (0 bytes). Re-export or re-download the image."
        )
    return _decode(io.BytesIO(data), desc, max_pixels)


def _decode(fp: IO[bytes], desc: str, max_pixels: int | None) -> np.ndarray:
    """Identify, size-check, then fully decode the encoded image in ``fp``."""
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _refused_by_pillow(desc, exc, max_pixels) from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(
            f"Cannot read {desc}: not a recognised image format (it may be another kind of "
            f"file with an image extension). Supported: {SUPPORTED_FORMATS}, and most other "
            "formats Pillow reads. Save or convert it as PNG or JPEG and try again."
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _corrupt(desc, exc) from exc

    try:
        _check_size(image.size, desc, max_pixels)
    except ImageLoadError:
        image.close()
        raise
    cost = decode_cost(image.size, image.mode)
    # Exits in reverse order: the decoded image is freed before its bytes go back to the budget.
    with DECODE_BUDGET.hold(cost), image:
        logger.debug("decoding %s: %s %dx%d %s", desc, image.format, *image.size, image.mode)
        _load_pixels(image, desc)
        array = _from_pil(image, desc, max_pixels=None, owned=True)
    if cost > _TRIM_BYTES:
        release_free_memory()
    return array


def decode_cost(size: tuple[int, int], mode: str) -> int:
    """Upper estimate, in bytes, of the memory :func:`load_image` needs to decode an image.

    ``size`` is ``(width, height)`` and ``mode`` the Pillow pixel mode, both known from the
    header alone. Counts Pillow's decoded pixels, an oriented (EXIF-rotated) copy of them, the
    ``(H, W, 3)`` result and the conversion's scratch memory; 16/32-bit gray also needs a raw
    copy of its pixels to rescale them.
    """
    width, height = size
    pixels = width * height
    if mode in _ONE_BYTE_MODES:
        stored = 1
    elif mode.startswith("I;16"):
        stored = 2
    else:
        stored = 4
    scratch = 2 * stored + 1 if mode in _HIGH_DEPTH_MODES else 0
    return pixels * (2 * stored + 3 + scratch) + _BAND_BYTES


def _load_pixels(image: Image.Image, desc: str) -> None:
    """Decode every pixel now, so damage shows up here and not later in the app."""
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _refused_by_pillow(desc, exc, None) from exc
    except MemoryError as exc:
        width, height = image.size
        raise ImageLoadError(
            f"Not enough memory to decode {desc} ({width}×{height}). Downscale the image."
        ) from exc
    except Exception as exc:  # Pillow's decoders raise many types for malformed data
        raise _corrupt(desc, exc) from exc


def _from_pil(image: Image.Image, desc: str, max_pixels: int | None, *, owned: bool) -> np.ndarray:
    """Orient and convert a Pillow image; ``owned`` images may be modified in place."""
    _check_size(image.size, desc, max_pixels)
    if not owned:
        _load_pixels(image, desc)
    try:
        if owned:
            ImageOps.exif_transpose(image, in_place=True)
        else:
            image = ImageOps.exif_transpose(image)
    except Exception as exc:  # a damaged EXIF block must not make the pixels unusable
        logger.warning("ignoring unreadable EXIF orientation of %s: %s", desc, exc)
    array = _pil_to_rgb(image, desc)
    logger.debug("loaded %s as %dx%d RGB", desc, array.shape[1], array.shape[0])
    return array


def _pil_to_rgb(image: Image.Image, desc: str) -> np.ndarray:
    mode = image.mode
    if mode in _HIGH_DEPTH_MODES:
        gray = _to_uint8(np.asarray(image), unit_range=False)
        return _gray_to_rgb(gray)
    # Band by band into the result: converting the whole image at once would hold a full-size
    # RGB(A) copy and the bytes numpy reads it through (0.7 GB more for 79 megapixels).
    width, height = image.size
    out = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, _CHUNK // width)
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(top + rows, height)))
        out[top : top + rows] = np.asarray(_band_to_rgb(band, mode, desc))
    return out


def _band_to_rgb(band: Image.Image, mode: str, desc: str) -> Image.Image:
    """Convert one band of rows (every rule here works pixel by pixel) to an ``RGB`` image."""
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in band.info):
        return _over_white(band.convert("RGBA"))
    if mode == "RGB":
        return band
    try:
        return band.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageLoadError(
            f"Cannot convert {desc} from its pixel mode {mode!r} to RGB. "
            "Save it as an 8-bit RGB PNG or JPEG and try again."
        ) from exc


def _from_array(array: np.ndarray, max_pixels: int | None, copy: bool) -> np.ndarray:
    desc = f"the {array.dtype} array of shape {array.shape}"
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        channels = array.shape[2]
    elif array.ndim == 2:
        channels = 1
    else:
        raise ImageLoadError(
            f"Cannot use {desc} as an image: expected shape (H, W), (H, W, 1), (H, W, 3) or "
            "(H, W, 4)."
        )
    if array.size == 0:
        raise ImageLoadError(f"Cannot use {desc} as an image: it has no pixels.")
    height, width = array.shape[:2]
    _check_size((width, height), desc, max_pixels)

    kind = array.dtype.kind
    if array.dtype == np.uint8:
        pixels = array
    elif kind == "b":
        pixels = array.astype(np.uint8) * np.uint8(255)
    elif kind in "iu":
        pixels = _to_uint8(array, unit_range=False)
    elif kind == "f":
        pixels = _to_uint8(array, unit_range=True)
    else:
        raise ImageLoadError(
            f"Cannot use {desc} as an image: its dtype must be bool, an integer or a floating "
            "point type."
        )

    if channels == 1:
        return _gray_to_rgb(pixels.reshape(height, width))
    if channels == 4:
        rgba = Image.fromarray(np.ascontiguousarray(pixels), mode="RGBA")
        return _writeable(np.asarray(_over_white(rgba)))
    if copy and pixels is array:  # the caller owns the result, not a view of its input
        return pixels.copy(order="C")
    return np.ascontiguousarray(pixels)


# -- pixel helpers -------------------------------------------------------------------------


def _to_uint8(values: np.ndarray, *, unit_range: bool) -> np.ndarray:
    """Map ``values`` linearly onto 0..255 (see the module docstring for the rule).

    With ``unit_range`` (floating input only), values whose finite part lies in [0, 1] are
    multiplied by 255 instead of being stretched to their own range.
    """
    flat = np.ascontiguousarray(values).reshape(-1)
    out = np.zeros(flat.shape, dtype=np.uint8)
    bounds = _finite_range(flat)
    if bounds is None:  # nothing but NaN / inf
        return out.reshape(values.shape)
    low, high = bounds
    if unit_range and low >= 0.0 and high <= 1.0:
        offset, scale = 0.0, 255.0
    elif high > low:
        offset, scale = low, 255.0 / (high - low)
    else:  # constant image
        return out.reshape(values.shape)
    for start in range(0, flat.size, _CHUNK):
        block = flat[start : start + _CHUNK].astype(np.float64)
        block -= offset
        block *= scale
        np.nan_to_num(block, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        np.clip(block, 0.0, 255.0, out=block)
        np.rint(block, out=block)
        out[start : start + _CHUNK] = block
    return out.reshape(values.shape)


def _finite_range(flat: np.ndarray) -> tuple[float, float] | None:
    """Smallest and largest finite value of a 1-D array, or ``None`` if there is none."""
    if flat.dtype.kind in "iu":
        return float(flat.min()), float(flat.max())
    low, high = math.inf, -math.inf
    for start in range(0, flat.size, _CHUNK):
        block = flat[start : start + _CHUNK]
        finite = block[np.isfinite(block)]
        if finite.size:
            low = min(low, float(finite.min()))
            high = max(high, float(finite.max()))
    return None if low > high else (low, high)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _over_white(rgba: Image.Image) -> Image.Image:
    """Composite an ``RGBA`` image over an opaque white background, giving ``RGB``."""
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _writeable(array: np.ndarray) -> np.ndarray:
    # np.asarray(pil_image) wraps an immutable bytes buffer; hand the caller a normal array.
    if array.flags.writeable and array.flags.c_contiguous:
        return array
    return np.array(array, order="C", copy=True)


# -- errors ----------------------------------------------------------------------------------


def _check_size(size: tuple[int, int], desc: str, max_pixels: int | None) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageLoadError(
            f"Cannot use {desc}: it has zero width or height ({width}×{height}). "
            "Re-export the image."
        )
    pixels = width * height
    if max_pixels is not None and pixels > max_pixels:
        factor = math.sqrt(max_pixels / pixels)
        fit_w, fit_h = max(1, int(width * factor)), max(1, int(height * factor))
        raise ImageLoadError(
            f"{_capitalised(desc)} is too large: {width}×{height} = {pixels / 1e6:.1f} "
            f"megapixels, over the limit of {max_pixels / 1e6:.1f} megapixels "
            f"({max_pixels:,} pixels). Downscale the image (to {fit_w}×{fit_h} or smaller), "
            "or raise the limit with the max_pixels argument of load_image "
            "(max_pixels=None turns the check off)."
        )


def _refused_by_pillow(desc: str, exc: Exception, max_pixels: int | None) -> ImageLoadError:
    """Explain a refusal by Pillow's decompression-bomb guard (which we never turn off)."""
    match = _PILLOW_PIXELS.search(str(exc))
    pixels = int(match.group(1)) if match else None
    size = f"{pixels / 1e6:.1f} megapixels" if pixels else "too many pixels"
    guard = Image.MAX_IMAGE_PIXELS
    guard_text = f" ({guard / 1e6:.1f} megapixels)" if guard else ""
    message = (
        f"{_capitalised(desc)} is too large: it has {size}, more than Pillow's "
        f"decompression-bomb guard allows{guard_text}. The guard stays on to protect the "
        "server's memory. Downscale the image and load it again."
    )
    if pixels is not None and max_pixels is not None and pixels > max_pixels:
        message += f" It is also over the limit of {max_pixels / 1e6:.1f} megapixels (max_pixels)."
    return ImageLoadError(message)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _corrupt(desc: str, exc: BaseException) -> ImageLoadError:
    detail = str(exc) or type(exc).__name__
    return ImageLoadError(
        f"Cannot read {desc}: the file is truncated or corrupt ({detail}). It was probably not "
        "saved or downloaded completely; re-export or re-download it."
    )


# What counts as an image file in a folder (a project, ``python -m sam.precompute``).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: Path) -> list[str]:
    """Image files below ``folder`` (recursively, hidden folders skipped), as sorted relative
    paths with forward slashes."""
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(rel.as_posix())
    return sorted(found)
