"""Reading every kind of image file a user may have, and refusing bad ones clearly."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sam.errors import ImageLoadError
from sam.image_io import load_image


@pytest.fixture
def photo(shared_images):
    return shared_images / "dog.jpg"


def test_photo_and_every_input_kind_agree(photo):
    expected = np.asarray(Image.open(photo).convert("RGB"))
    from_path = load_image(photo)
    assert from_path.shape == expected.shape and from_path.dtype == np.uint8
    np.testing.assert_array_equal(from_path, expected)
    assert from_path.flags.c_contiguous
    np.testing.assert_array_equal(load_image(str(photo)), expected)
    np.testing.assert_array_equal(load_image(photo.read_bytes()), expected)
    with open(photo, "rb") as fh:
        np.testing.assert_array_equal(load_image(fh), expected)
        assert not fh.closed  # the caller's file stays open
    np.testing.assert_array_equal(load_image(Image.open(photo)), expected)
    np.testing.assert_array_equal(load_image(expected), expected)


@pytest.mark.parametrize(
    ("orientation", "transpose"),
    [
        (6, Image.Transpose.ROTATE_270),
        (8, Image.Transpose.ROTATE_90),
        (3, Image.Transpose.ROTATE_180),
    ],
)
def test_exif_orientation_is_applied(tmp_path, orientation, transpose):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.png"
    Image.fromarray(pixels).save(path, exif=exif)
    out = load_image(path)
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(pixels).transpose(transpose)))


def saved(tmp_path, img: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    img.save(path, **kwargs)
    return load_image(path)


def test_gray_palette_and_alpha(tmp_path):
    gray = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    out = saved(tmp_path, gray, "gray.png")
    assert out.shape == (16, 16, 3) and (out[..., 0] == out[..., 2]).all()
    assert out[0, 5, 1] == 5

    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 255, 0)  # fully transparent blue -> white
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black -> mid gray
    out = saved(tmp_path, Image.fromarray(rgba, "RGBA"), "rgba.png")
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 1]) == (255, 255, 255)
    assert abs(int(out[0, 2, 0]) - 127) <= 1

    la = Image.fromarray(
        np.stack([np.full((4, 4), 10, np.uint8), np.zeros((4, 4), np.uint8)], -1), "LA"
    )
    assert tuple(saved(tmp_path, la, "la.png")[0, 0]) == (255, 255, 255)

    palette = Image.fromarray(np.asarray(Image.open(tmp_path / "gray.png"))).convert("P")
    assert saved(tmp_path, palette, "p.png").shape == (16, 16, 3)
    transparent = Image.new("P", (4, 4), 0)
    transparent.putpalette([0, 0, 0, 200, 10, 10])
    transparent.info["transparency"] = 0
    assert tuple(saved(tmp_path, transparent, "pt.png", transparency=0)[0, 0]) == (255, 255, 255)


def test_cmyk_jpeg(tmp_path):
    out = saved(tmp_path, Image.new("CMYK", (8, 6), (0, 255, 255, 0)), "cmyk.jpg")
    assert out.shape == (6, 8, 3)
    assert out[0, 0, 0] > 200 and out[0, 0, 1] < 60  # red


def test_16_bit_png_and_float_tiff_are_rescaled(tmp_path):
    values = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)
    out = saved(tmp_path, Image.fromarray(values), "deep.png")
    assert out[0, 0, 0] == 0 and out[1, 1, 0] == 255 and out[0, 1, 0] == 64
    floats = np.array([[-1.5, 0.0], [0.5, 2.5]], dtype=np.float32)
    out = saved(tmp_path, Image.fromarray(floats, "F"), "float.tif")
    assert out[0, 0, 0] == 0 and out[1, 1, 0] == 255


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1)])
def test_tiny_images(tmp_path, shape):
    out = saved(tmp_path, Image.new("RGB", shape[::-1], (1, 2, 3)), "tiny.png")
    assert out.shape == (*shape, 3) and tuple(out[0, 0]) == (1, 2, 3)


def test_arrays():
    assert load_image(np.ones((2, 3), dtype=bool))[0, 0, 0] == 255
    assert load_image(np.full((2, 3, 1), 7, np.uint8)).shape == (2, 3, 3)
    unit = load_image(np.array([[0.0, 1.0]], dtype=np.float32))
    assert unit[0, 0, 0] == 0 and unit[0, 1, 0] == 255
    wide = load_image(np.array([[0, 4095]], dtype=np.uint16))
    assert wide[0, 1, 0] == 255
    for bad in (np.zeros((2, 3, 2), np.uint8), np.zeros((2,), np.uint8), np.zeros((0, 4, 3))):
        with pytest.raises(ImageLoadError, match="array"):
            load_image(bad)


def test_missing_folder_and_empty_file(tmp_path):
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError, match="is a folder"):
        load_image(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty \(0 bytes\)"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageLoadError, match=r"empty \(0 bytes\)"):
        load_image(b"")


def test_text_file_renamed_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("shopping list: eggs, milk")
    with pytest.raises(ImageLoadError, match="not a recognised image format"):
        load_image(path)


def test_truncated_jpeg(photo, tmp_path):
    path = tmp_path / "half.jpg"
    data = photo.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(path)


def test_corrupt_png(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(
        buffer, format="PNG"
    )
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 40
    data[start : start + 200] = bytes(200)
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(bytes(data))


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size (its pixel data is never reached)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))


def test_over_the_limit_is_refused_before_decoding(tmp_path, photo):
    with pytest.raises(ImageLoadError, match=r"9000×9500 = 85\.5 megapixels, over the limit"):
        load_image(huge_png_header(9000, 9500))
    with pytest.raises(ImageLoadError, match="too large to open safely.*Downscale"):
        load_image(huge_png_header(20000, 20000))
    with pytest.raises(ImageLoadError, match="over the limit of 0.1 megapixels"):
        load_image(photo, max_pixels=100_000)


def test_pillow_bomb_guard_stays_on_without_our_limit():
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(huge_png_header(20000, 20000), max_pixels=None)
    with pytest.raises(ImageLoadError, match="decompression bomb"):  # Pillow's warning level
        load_image(huge_png_header(9000, 10000), max_pixels=None)
