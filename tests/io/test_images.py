"""User images: every accepted kind, every PIL mode, and every kind of bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mgtoolkit.errors import InvalidInputError
from mgtoolkit.io.images import MAX_SIDE, example_image, load_image


def _png(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def rgb():
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((40, 60, 3)) * 255).astype("uint8"), "RGB")


def test_example_image_is_bundled_and_small():
    path = example_image()
    assert path.is_file() and path.stat().st_size < 50_000
    assert load_image(path).mode == "RGB"


@pytest.mark.parametrize("kind", ["path", "str", "bytes", "file", "pil", "array"])
def test_accepted_kinds(tmp_path, rgb, kind):
    path = tmp_path / "pic.png"
    rgb.save(path)
    given = {
        "path": path,
        "str": str(path),
        "bytes": path.read_bytes(),
        "file": io.BytesIO(path.read_bytes()),
        "pil": rgb,
        "array": np.asarray(rgb),
    }[kind]
    out = load_image(given)
    assert out.mode == "RGB" and out.size == (60, 40)
    assert np.array_equal(np.asarray(out), np.asarray(rgb))


def test_rgba_is_composited_on_white():
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    assert np.asarray(load_image(img))[0, 0].tolist() == [255, 255, 255]
    half = Image.new("RGBA", (8, 8), (0, 0, 0, 128))
    assert 120 < np.asarray(load_image(_png(half)))[0, 0, 0] < 135


@pytest.mark.parametrize("mode", ["CMYK", "P", "L", "LA", "1", "I;16", "I", "F"])
def test_modes_become_rgb(mode):
    base = Image.new("RGB", (10, 6), (10, 200, 30))
    img = (
        base.convert(mode)
        if mode not in ("I;16", "I", "F")
        else Image.new(mode, (10, 6), 40000 if mode != "F" else 0.5)
    )
    out = load_image(img)
    assert out.mode == "RGB" and out.size == (10, 6)


def test_16_bit_png_bytes():
    a = (np.linspace(0, 65535, 64 * 32).reshape(32, 64)).astype(np.uint16)
    out = np.asarray(load_image(_png(Image.fromarray(a))))
    assert out.shape == (32, 64, 3) and out.max() == 255 and out.min() == 0


def test_jpeg_cmyk_bytes():
    out = load_image(_png(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"))
    r, g, b = np.asarray(out)[8, 8]
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (30, 10), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    out = load_image(_png(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (10, 30)


def test_huge_image_is_downscaled_keeping_aspect():
    out = load_image(Image.new("RGB", (4000, 1000)))
    assert out.size == (MAX_SIDE, 256)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((20, 30), np.uint8),
        np.ones((20, 30, 4), np.float32),
        np.full((20, 30, 3), 4095, np.uint16),
        np.zeros((20, 30, 1), np.uint8),
    ],
)
def test_arrays(array):
    assert load_image(array).size == (30, 20)


def test_bad_inputs_name_the_image_field(tmp_path, rgb):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    good = _png(rgb)
    cases = {
        "zero-byte file": empty,
        "zero bytes": b"",
        "text file": text,
        "missing file": tmp_path / "nope.png",
        "truncated": good[: len(good) // 2],
        "corrupt": good[:40] + b"\x00" * 200 + good[240:],
        "None": None,
        "number": 42,
        "wrong array": np.zeros((3, 4, 5, 6)),
        "nan array": np.full((4, 4), np.nan),
    }
    for name, value in cases.items():
        with pytest.raises(InvalidInputError) as err:
            load_image(value)
        assert err.value.field == "image", name
        assert "\n" not in str(err.value), name


def test_decompression_bomb_is_refused_before_decoding():
    header = _png(Image.new("1", (20000, 20000)))  # tiny file, 400 megapixels
    with pytest.raises(InvalidInputError) as err:
        load_image(header)
    assert err.value.field == "image" and "pixels" in str(err.value)
