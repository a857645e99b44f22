"""load_image: every input kind gives the same RGB pixels, odd modes convert sensibly, and
every way a file can be unusable ends in an ImageLoadError a user can act on."""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from sam import image_io, memory
from sam.errors import ImageLoadError
from sam.image_io import DEFAULT_MAX_PIXELS, decode_cost, load_image
from sam.memory import DEFAULT_DECODE_BUDGET, ByteBudget

PHOTOS = Path(__file__).resolve().parents[2] / "static" / "examples"
PHOTO_NAMES = ("dog.jpg", "dogs.jpg", "groceries.jpg", "truck.jpg")
ORIENTATION = 0x0112  # the EXIF Orientation tag


def photo(name: str = "dog.jpg") -> Path:
    path = PHOTOS / name
    if not path.is_file():
        pytest.fail(f"example photo missing: {path}")
    return path


def pillow_rgb(path: Path) -> np.ndarray:
    """What Pillow itself decodes, as displayed: the reference for photos."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def save(image: Image.Image, path: Path, **params) -> Path:
    image.save(path, **params)
    return path


def pattern(height: int = 6, width: int = 10) -> np.ndarray:
    """An RGB image with no symmetry, so any flip or rotation shows."""
    rng = np.random.default_rng(height * 1000 + width)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` × ``height`` RGB pixels but carries no pixel data at all.

    Loading it can only fail, so an error about its size proves the size was checked before
    any decoding was attempted.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def assert_rgb(array: np.ndarray, height: int, width: int) -> None:
    assert isinstance(array, np.ndarray)
    assert array.shape == (height, width, 3)
    assert array.dtype == np.uint8
    assert array.flags.c_contiguous
    assert array.flags.writeable


# -- photos and input kinds -----------------------------------------------------------------


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_photo_equals_pillows_own_rgb_decode(name: str) -> None:
    path = photo(name)
    expected = pillow_rgb(path)
    loaded = load_image(path)
    assert_rgb(loaded, *expected.shape[:2])
    np.testing.assert_array_equal(loaded, expected)


def test_every_source_kind_gives_the_same_array() -> None:
    path = photo("dog.jpg")
    reference = load_image(str(path))
    data = path.read_bytes()
    with open(path, "rb") as handle:
        from_open_file = load_image(handle)
    with Image.open(path) as image:
        from_pil = load_image(image)
    sources = {
        "Path": load_image(path),
        "bytes": load_image(data),
        "bytearray": load_image(bytearray(data)),
        "memoryview": load_image(memoryview(data)),
        "BytesIO": load_image(io.BytesIO(data)),
        "open file": from_open_file,
        "PIL image": from_pil,
        "ndarray": load_image(reference.copy()),
    }
    for kind, array in sources.items():
        assert_rgb(array, 534, 800)
        np.testing.assert_array_equal(array, reference, err_msg=kind)


def test_file_object_is_read_from_its_start() -> None:
    stream = io.BytesIO(photo().read_bytes())
    stream.seek(0, io.SEEK_END)  # e.g. an upload buffer just written to
    np.testing.assert_array_equal(load_image(stream), load_image(photo()))


def test_result_is_a_new_array_the_caller_owns() -> None:
    source = pattern()
    original = source.copy()
    loaded = load_image(source)
    np.testing.assert_array_equal(loaded, original)
    assert not np.shares_memory(loaded, source)
    loaded[:] = 0  # writeable, and the caller's array is untouched
    np.testing.assert_array_equal(source, original)


def test_copy_false_lends_an_rgb_array_and_converts_anything_else() -> None:
    source = pattern()
    assert load_image(source, copy=False) is source
    gray = source[..., 0].copy()
    np.testing.assert_array_equal(load_image(gray, copy=False), load_image(gray))
    strided = source[:, ::2]
    lent = load_image(strided, copy=False)
    assert lent.flags.c_contiguous
    np.testing.assert_array_equal(lent, strided)


# -- EXIF orientation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "rotate"),
    [(1, lambda a: a), (3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)),
     (8, lambda a: np.rot90(a, 1))],
)  # fmt: skip
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, rotate) -> None:
    stored = pattern(6, 10)  # as the camera wrote the pixels
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path = save(Image.fromarray(stored), tmp_path / "rotated.png", exif=exif)

    loaded = load_image(path)

    expected = rotate(stored)  # as a viewer displays it
    assert loaded.shape == expected.shape
    if orientation in (6, 8):
        assert loaded.shape == (10, 6, 3)  # portrait: width and height swapped
    np.testing.assert_array_equal(loaded, expected)


def test_exif_orientation_of_a_jpeg(tmp_path: Path) -> None:
    y, x = np.mgrid[0:48, 0:80]
    stored = np.stack([x * 3, y * 5, 255 - x * 3], axis=-1).astype(np.uint8)
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # rotate 90° clockwise to display
    path = save(Image.fromarray(stored), tmp_path / "phone.jpg", exif=exif, quality=95)

    loaded = load_image(path)

    assert loaded.shape == (80, 48, 3)
    error = np.abs(loaded.astype(int) - np.rot90(stored, -1).astype(int))
    assert error.mean() < 3, error.mean()


def test_a_given_pil_image_is_not_rotated_in_place(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    path = save(Image.fromarray(pattern(6, 10)), tmp_path / "r.png", exif=exif)
    with Image.open(path) as image:
        assert load_image(image).shape == (10, 6, 3)
        assert image.size == (10, 6)  # the caller's image still has its own size


# -- Pillow modes -------------------------------------------------------------------------


def test_gray_is_replicated_to_rgb(tmp_path: Path) -> None:
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    loaded = load_image(save(Image.fromarray(gray, mode="L"), tmp_path / "g.png"))
    assert_rgb(loaded, 6, 10)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[:, :, channel], gray)


def test_one_bit_image_becomes_black_and_white(tmp_path: Path) -> None:
    bits = np.zeros((5, 7), dtype=bool)
    bits[1:3, 2:6] = True
    loaded = load_image(save(Image.fromarray(bits), tmp_path / "bits.png"))
    np.testing.assert_array_equal(loaded[:, :, 0], np.where(bits, 255, 0))
    np.testing.assert_array_equal(loaded[:, :, 0], loaded[:, :, 2])


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 0)  # fully transparent: shows the white background
    rgba[0, 1] = (10, 20, 30, 255)  # opaque: its own colour
    rgba[1, 0] = (0, 0, 0, 128)  # half transparent black: mid gray
    rgba[1, 1] = (200, 100, 0, 64)
    loaded = load_image(save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "a.png"))

    assert tuple(loaded[0, 0]) == (255, 255, 255)
    assert tuple(loaded[0, 1]) == (10, 20, 30)
    alpha = rgba[1, :, 3:4] / 255.0
    expected = rgba[1, :, :3] * alpha + 255 * (1 - alpha)
    np.testing.assert_allclose(loaded[1], expected, atol=1)


def test_gray_with_alpha_is_composited_over_white(tmp_path: Path) -> None:
    la = np.array([[[50, 0], [50, 255]]], dtype=np.uint8)
    loaded = load_image(save(Image.fromarray(la, mode="LA"), tmp_path / "la.png"))
    np.testing.assert_array_equal(loaded, [[[255, 255, 255], [50, 50, 50]]])


def palette_image(indices: np.ndarray) -> Image.Image:
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 40, 40, 40])
    return image


def test_palette_image_is_looked_up(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [2, 3]])
    loaded = load_image(save(palette_image(indices), tmp_path / "p.png"))
    np.testing.assert_array_equal(loaded, [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [40, 40, 40]]])


def test_palette_transparency_becomes_white(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [2, 3]])
    path = save(palette_image(indices), tmp_path / "pt.png", transparency=1)
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" in check.info
    loaded = load_image(path)
    np.testing.assert_array_equal(
        loaded, [[[255, 0, 0], [255, 255, 255]], [[0, 0, 255], [40, 40, 40]]]
    )


def test_palette_transparency_in_a_gif(tmp_path: Path) -> None:
    indices = np.array([[0, 1, 2]])
    loaded = load_image(save(palette_image(indices), tmp_path / "t.gif", transparency=0))
    np.testing.assert_array_equal(loaded, [[[255, 255, 255], [0, 255, 0], [0, 0, 255]]])


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    y, x = np.mgrid[0:64, 0:96]
    rgb = np.stack([x * 2, y * 3, x + y], axis=-1).astype(np.uint8)
    path = save(Image.fromarray(rgb).convert("CMYK"), tmp_path / "print.jpg", quality=95)
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    loaded = load_image(path)
    assert_rgb(loaded, 64, 96)
    assert np.abs(loaded.astype(int) - rgb).mean() < 3


def test_sixteen_bit_png_is_stretched_from_its_own_range(tmp_path: Path) -> None:
    values = np.array([[1000, 2000, 3000], [26000, 49000, 50000]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "depth.png")
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I")
    loaded = load_image(path)
    assert_rgb(loaded, 2, 3)
    gray = loaded[:, :, 0]
    assert gray[0, 0] == 0  # the minimum
    assert gray[1, 2] == 255  # the maximum
    expected = np.rint((values.astype(float) - 1000) / 49000 * 255)
    np.testing.assert_array_equal(gray, expected)
    np.testing.assert_array_equal(loaded[:, :, 1], gray)


def test_big_endian_sixteen_bit_pil_image() -> None:
    values = np.array([[0, 300], [600, 65535]], dtype=">u2")
    image = Image.fromarray(values)
    assert image.mode == "I;16B"
    gray = load_image(image)[:, :, 0]
    np.testing.assert_array_equal(gray, np.rint(values.astype(float) / 65535 * 255))


def test_constant_sixteen_bit_image_is_black(tmp_path: Path) -> None:
    values = np.full((3, 4), 777, dtype=np.uint16)
    loaded = load_image(save(Image.fromarray(values), tmp_path / "flat.png"))
    assert_rgb(loaded, 3, 4)
    assert not loaded.any()


def test_32_bit_integer_image_is_stretched() -> None:
    values = np.array([[-100000, 0], [50000, 100000]], dtype=np.int32)
    image = Image.fromarray(values)
    assert image.mode == "I"
    gray = load_image(image)[:, :, 0]
    np.testing.assert_array_equal(gray, [[0, 128], [191, 255]])


def test_float_tiff_is_stretched_and_nan_counts_as_minimum(tmp_path: Path) -> None:
    values = np.array([[-1.0, 0.0, 1.0], [2.0, 3.0, np.nan]], dtype=np.float32)
    path = save(Image.fromarray(values), tmp_path / "height.tif")
    with Image.open(path) as check:
        assert check.mode == "F"
    gray = load_image(path)[:, :, 0]
    np.testing.assert_array_equal(gray, [[0, 64, 128], [191, 255, 0]])


@pytest.mark.parametrize("size", [(1, 1), (7, 1), (1, 7)])
def test_tiny_images(tmp_path: Path, size: tuple[int, int]) -> None:
    width, height = size
    pixels = pattern(height, width)
    loaded = load_image(save(Image.fromarray(pixels), tmp_path / "tiny.png"))
    assert_rgb(loaded, height, width)
    np.testing.assert_array_equal(loaded, pixels)


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (4, 3), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    loaded = load_image(path)
    assert_rgb(loaded, 3, 4)
    assert (loaded == (255, 0, 0)).all()


# -- numpy arrays ---------------------------------------------------------------------------


def test_bool_array_is_0_or_255() -> None:
    mask = np.array([[True, False], [False, True]])
    loaded = load_image(mask)
    assert_rgb(loaded, 2, 2)
    np.testing.assert_array_equal(loaded[:, :, 1], [[255, 0], [0, 255]])


def test_uint16_array_is_stretched() -> None:
    values = np.array([[10, 20], [30, 1030]], dtype=np.uint16)
    gray = load_image(values)[:, :, 0]
    np.testing.assert_array_equal(gray, [[0, 2], [5, 255]])


def test_unit_float_array_is_scaled_by_255() -> None:
    values = np.array([[0.0, 0.5], [0.25, 1.0]], dtype=np.float32)
    colour = np.stack([values, values / 2, np.zeros_like(values)], axis=-1)
    loaded = load_image(colour)
    np.testing.assert_array_equal(loaded[:, :, 0], [[0, 128], [64, 255]])
    np.testing.assert_array_equal(loaded[:, :, 1], [[0, 64], [32, 128]])


def test_dark_unit_float_array_is_not_stretched() -> None:
    # All values in [0, 1]: a dark image stays dark instead of being stretched to 255.
    values = np.full((2, 2), 0.2)
    values[0, 0] = 0.1
    gray = load_image(values)[:, :, 0]
    np.testing.assert_array_equal(gray, [[26, 51], [51, 51]])


def test_unit_float_array_with_nan() -> None:
    values = np.array([[np.nan, 1.0]], dtype=np.float64)
    np.testing.assert_array_equal(load_image(values)[:, :, 0], [[0, 255]])


def test_float_array_outside_unit_range_is_stretched() -> None:
    values = np.array([[-2.0, 0.0], [np.nan, 2.0]])
    np.testing.assert_array_equal(load_image(values)[:, :, 0], [[0, 128], [0, 255]])


def test_float_array_without_finite_values_is_black() -> None:
    assert not load_image(np.full((2, 3), np.nan)).any()


def test_single_channel_and_rgba_arrays() -> None:
    gray = np.array([[[7], [9]]], dtype=np.uint8)
    np.testing.assert_array_equal(load_image(gray), [[[7, 7, 7], [9, 9, 9]]])
    rgba = np.array([[[1, 2, 3, 0], [1, 2, 3, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(load_image(rgba), [[[255, 255, 255], [1, 2, 3]]])


def test_non_contiguous_array() -> None:
    source = pattern(8, 12)
    view = source[::2, ::-1]
    loaded = load_image(view)
    assert loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, view)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros(16, np.uint8),
        np.zeros((1, 4, 4, 3), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((4, 0), np.float32),
        np.zeros((2, 2), np.complex64),
        np.array([["a", "b"]]),
    ],
    ids=["2ch", "5ch", "1d", "4d", "no-rows", "no-cols", "complex", "str"],
)
def test_bad_arrays_are_refused(array: np.ndarray) -> None:
    with pytest.raises(ImageLoadError, match=re.escape(str(array.shape))):
        load_image(array)


def test_unsupported_source_type() -> None:
    with pytest.raises(ImageLoadError, match="file path"):
        load_image(42)


# -- unusable files -------------------------------------------------------------------------


def load_error(source, **kwargs) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(source, **kwargs)
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nowhere.png")
    assert "not found" in str(error) and "nowhere.png" in str(error)
    assert isinstance(error.__cause__, FileNotFoundError)


def test_directory(tmp_path: Path) -> None:
    error = load_error(tmp_path)
    assert "folder" in str(error) and str(tmp_path) in str(error)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    error = load_error(path)
    assert "the file is empty (0 bytes)" in str(error)
    assert "empty.jpg" in str(error)


@pytest.mark.parametrize("source", [b"", io.BytesIO()], ids=["bytes", "stream"])
def test_empty_data(source) -> None:
    assert "empty (0 bytes)" in str(load_error(source))


def test_text_file_renamed_to_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are my notes, not a picture\n" * 20)
    error = load_error(path)
    message = str(error)
    assert "not a recognised image format" in message
    assert "PNG, JPEG" in message and "notes.png" in message
    assert error.__cause__ is not None


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = photo("dog.jpg").read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    error = load_error(path)
    assert "truncated or corrupt" in str(error)
    assert "re-download" in str(error) and "half.jpg" in str(error)
    assert isinstance(error.__cause__, OSError)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_jpeg_as_bytes() -> None:
    data = photo("truck.jpg").read_bytes()
    assert "truncated or corrupt" in str(load_error(data[: len(data) // 2]))


def test_corrupt_png_data(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(pattern(64, 64)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 4
    (length,) = struct.unpack(">I", data[start - 8 : start - 4])
    middle = start + length // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path = tmp_path / "damaged.png"
    path.write_bytes(bytes(data))
    error = load_error(path)
    assert "truncated or corrupt" in str(error) and "damaged.png" in str(error)
    assert error.__cause__ is not None


def test_zero_width_pil_image() -> None:
    assert "zero width or height" in str(load_error(Image.new("RGB", (0, 5))))


# -- size limits ----------------------------------------------------------------------------


def test_default_limit() -> None:
    assert DEFAULT_MAX_PIXELS == 80_000_000


def test_over_the_limit_is_refused_with_the_size_and_what_to_do() -> None:
    path = photo("dog.jpg")  # 800 × 534
    message = str(load_error(path, max_pixels=100_000))
    assert "800×534 = 0.4 megapixels" in message
    assert "0.1 megapixels" in message  # the limit
    assert "Downscale" in message and "max_pixels" in message
    assert "dog.jpg" in message


def test_limit_is_inclusive() -> None:
    assert load_image(photo("dog.jpg"), max_pixels=800 * 534).shape == (534, 800, 3)
    load_error(photo("dog.jpg"), max_pixels=800 * 534 - 1)


def test_limit_applies_to_arrays_and_pil_images() -> None:
    assert "10×10 = 0.0 megapixels" in str(load_error(np.zeros((10, 10)), max_pixels=99))
    assert "megapixels" in str(load_error(Image.new("L", (10, 10)), max_pixels=99))


def test_huge_header_is_refused_before_decoding() -> None:
    data = png_header_only(9000, 9000)  # 81 MP: over our limit, under Pillow's guard
    started = time.perf_counter()
    message = str(load_error(data))
    assert time.perf_counter() - started < 1.0
    assert "9000×9000 = 81.0 megapixels" in message
    assert "80.0 megapixels" in message and "max_pixels" in message


def test_20000_by_20000_header_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(20000, 20000))
    started = time.perf_counter()
    message = str(load_error(path))
    assert time.perf_counter() - started < 1.0
    assert "400.0 megapixels" in message and "bomb.png" in message
    assert "Downscale" in message


def test_pillows_bomb_guard_stays_on_without_our_limit() -> None:
    before = Image.MAX_IMAGE_PIXELS
    assert before is not None
    # 90 MP: above Pillow's warning threshold (~89.5 MP), which must become an error.
    error = load_error(png_header_only(10000, 9000), max_pixels=None)
    assert "decompression-bomb" in str(error) and "90.0 megapixels" in str(error)
    assert isinstance(error.__cause__, Image.DecompressionBombWarning)
    error = load_error(png_header_only(20000, 20000), max_pixels=None)
    assert isinstance(error.__cause__, Image.DecompressionBombError)
    assert before == Image.MAX_IMAGE_PIXELS


def test_no_limit_still_loads_normal_images() -> None:
    assert load_image(photo("dog.jpg"), max_pixels=None).shape == (534, 800, 3)


@pytest.mark.parametrize("bad", [0, -5])
def test_bad_max_pixels(bad: int) -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(photo(), max_pixels=bad)


# -- memory: decodes share a byte budget ----------------------------------------------------


def wait_for(condition, what: str) -> None:
    """Wait (up to 30 s) for ``condition()`` to hold; threads here only take milliseconds."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting until {what}"
        time.sleep(0.005)


class GatedDecodes:
    """Replaces the pixel decoding of load_image: counts the decodes running at once and the
    budget they hold, and keeps each one waiting until the test opens the gate."""

    def __init__(self, monkeypatch, budget: ByteBudget) -> None:
        self.budget = budget
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most_running = 0
        self.most_held = 0
        real = image_io._load_pixels

        def decode(image: Image.Image, desc: str) -> None:
            with self.lock:
                self.running += 1
                self.most_running = max(self.most_running, self.running)
                self.most_held = max(self.most_held, budget.in_use)
            try:
                self.gate.wait()
                real(image, desc)
            finally:
                with self.lock:
                    self.running -= 1

        monkeypatch.setattr(image_io, "_load_pixels", decode)
        monkeypatch.setattr(image_io, "DECODE_BUDGET", budget)


def test_concurrent_large_decodes_stay_within_the_byte_budget(tmp_path: Path, monkeypatch):
    """Six users open a large image at once: only as many decode as the budget has room for
    (two here); the others wait their turn, and everyone gets the pixels."""
    rgb = pattern(300, 400)
    path = save(Image.fromarray(rgb), tmp_path / "large.png")
    cost = decode_cost((400, 300), "RGB")
    decodes = GatedDecodes(monkeypatch, ByteBudget(2 * cost + cost // 2))
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(load_image(path))) for _ in range(6)]
    for thread in threads:
        thread.start()
    wait_for(lambda: decodes.running == 2 and decodes.budget.waiting == 4, "2 run, 4 wait")
    decodes.gate.set()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 6 and all(np.array_equal(r, rgb) for r in results)
    assert decodes.most_running == 2
    assert decodes.most_held <= decodes.budget.limit
    assert decodes.budget.in_use == 0


def test_an_image_larger_than_the_whole_budget_loads_alone(tmp_path: Path, monkeypatch):
    rgb = pattern(300, 400)
    path = save(Image.fromarray(rgb), tmp_path / "huge.png")
    decodes = GatedDecodes(monkeypatch, ByteBudget(decode_cost((400, 300), "RGB") // 3))
    decodes.gate.set()
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(load_image(path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 3 and all(np.array_equal(r, rgb) for r in results)
    assert decodes.most_running == 1
    assert decodes.budget.in_use == 0


def test_failed_decodes_give_their_budget_back(tmp_path: Path, monkeypatch):
    """A corrupt or truncated file fails to decode; the bytes it held are free again, so the
    next image still loads (a leak would make every later decode wait forever)."""
    buffer = io.BytesIO()
    Image.fromarray(pattern(300, 400)).save(buffer, "PNG")
    data = buffer.getvalue()
    budget = ByteBudget(decode_cost((400, 300), "RGB"))
    monkeypatch.setattr(image_io, "DECODE_BUDGET", budget)
    corrupt = bytearray(data)
    middle = corrupt.index(b"IDAT") + 200
    corrupt[middle : middle + 64] = bytes(b ^ 0xFF for b in corrupt[middle : middle + 64])
    for bad in (bytes(corrupt), data[: len(data) // 2]):
        for _ in range(3):
            assert "truncated or corrupt" in str(load_error(bad))
            assert budget.in_use == 0 and budget.waiting == 0
    assert load_image(data).shape == (300, 400, 3)


def test_decode_cost_covers_pillows_pixels_and_the_result() -> None:
    pixels = 10000 * 7900
    assert decode_cost((10000, 7900), "RGB") >= pixels * (4 + 3)  # Pillow keeps RGB in 4 bytes
    assert decode_cost((10000, 7900), "L") >= pixels * (1 + 3)
    assert decode_cost((10000, 7900), "I;16") > decode_cost((10000, 7900), "L")
    # One 79 MP RGB image fits the default budget, two do not: they decode one after another.
    assert decode_cost((10000, 7900), "RGB") <= DEFAULT_DECODE_BUDGET
    assert 2 * decode_cost((10000, 7900), "RGB") > DEFAULT_DECODE_BUDGET


@pytest.mark.parametrize("mode", ["RGB", "L", "1", "P", "PT", "RGBA", "LA", "CMYK", "YCbCr"])
def test_conversion_in_bands_matches_pillow_whole_image(mode: str, monkeypatch) -> None:
    """RGB conversion runs band by band (here 5 rows per band): seams would show as rows that
    differ from Pillow converting the whole image at once."""
    monkeypatch.setattr(image_io, "_CHUNK", 5 * 11)
    rgba = Image.fromarray(np.random.default_rng(3).integers(0, 256, (23, 11, 4), np.uint8))
    if mode == "PT":
        image = rgba.convert("RGB").quantize(16)
        image.info["transparency"] = 3
        expected = Image.alpha_composite(
            Image.new("RGBA", image.size, "white"), image.convert("RGBA")
        ).convert("RGB")
    elif mode in ("RGBA", "LA"):
        image = rgba.convert(mode)
        expected = Image.alpha_composite(
            Image.new("RGBA", image.size, "white"), image.convert("RGBA")
        ).convert("RGB")
    else:
        image = rgba.convert("RGB").convert(mode)
        expected = image.convert("RGB")
    assert np.array_equal(load_image(image), np.asarray(expected))


MEMORY_SCRIPT = """
import gc, sys, threading, time
import numpy as np, psutil
from PIL import Image
from sam.image_io import load_image

path = sys.argv[1]
Image.new("RGB", (10000, 7900), "white").save(path)  # 79 MP, a few hundred KB on disk
process = psutil.Process()

def peak_of(n):
    gc.collect()
    base = process.memory_info().rss
    peak, done = [base], threading.Event()
    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.002)
    watcher = threading.Thread(target=watch)
    watcher.start()
    shapes = []  # each user drops its pixels at once: only decoding is measured
    loaders = [threading.Thread(target=lambda: shapes.append(load_image(path).shape))
               for _ in range(n)]
    for t in loaders: t.start()
    for t in loaders: t.join()
    done.set(); watcher.join()
    assert shapes == [(7900, 10000, 3)] * n
    gc.collect()
    return peak[0] - base, process.memory_info().rss - base

one, _ = peak_of(1)
four, after = peak_of(4)
print(one, four, after)
"""


@pytest.mark.slow
def test_four_concurrent_79_megapixel_loads_take_turns(tmp_path: Path):
    """The issue's case, measured in a fresh process: four 79 MP images loaded at once peak
    near one load (not four times it: 2.8 GB measured before the budget), and the memory goes
    back to the system afterwards."""
    script = tmp_path / "measure.py"
    script.write_text(MEMORY_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "blank.png")],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    one, four, after = (int(v) for v in result.stdout.split())
    assert one > 237e6  # the RGB result alone is 237 MB: the measurement saw the load
    assert four < 2 * one, f"4 loads peaked at {four >> 20} MiB, one at {one >> 20} MiB"
    if memory._malloc_trim() is not None:  # glibc: freed pages go back to the system
        assert after < 100 * 2**20, f"{after >> 20} MiB still held after the loads"
