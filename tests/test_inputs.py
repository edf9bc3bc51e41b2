"""The validation layer: image decoding, masks, text, classes, numbers (+ property tests)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from regionlab.config import Limits
from regionlab.errors import InputError
from regionlab.inputs import (
    check_classes,
    check_number,
    check_text,
    load_image,
    load_mask,
    load_masks,
)
from regionlab.region.baselines import mask_box


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_corrupt_and_truncated_images():
    with pytest.raises(InputError, match="cannot decode"):
        load_image(b"this is not an image")
    data = png_bytes(Image.new("RGB", (64, 64), (10, 200, 30)))
    with pytest.raises(InputError, match="cannot decode"):
        load_image(data[: len(data) // 2])
    with pytest.raises(InputError, match="not found"):
        load_image("/no/such/file.png")


def test_zero_size_and_one_pixel():
    with pytest.raises(InputError, match="empty"):
        load_image(np.zeros((0, 5, 3), np.uint8))
    one = load_image(np.full((1, 1, 3), 7, np.uint8))
    assert one.shape == (1, 1, 3)


def test_modes_are_converted():
    assert load_image(png_bytes(Image.new("I;16", (8, 8), 65535))).max() == 255
    cmyk = load_image(png_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    assert cmyk.shape == (8, 8, 3) and cmyk[0, 0, 0] > 200 and cmyk[0, 0, 1] < 60
    pal = Image.new("P", (8, 8))
    pal.putpalette([255, 0, 0] * 256)
    assert tuple(load_image(png_bytes(pal))[0, 0]) == (255, 0, 0)
    rgba = Image.new("RGBA", (8, 8), (0, 0, 255, 0))  # fully transparent -> white
    assert tuple(load_image(png_bytes(rgba))[0, 0]) == (255, 255, 255)
    grey = load_image(np.full((4, 5), 100, np.uint8))
    assert grey.shape == (4, 5, 3)
    assert load_image(np.ones((3, 3, 3), np.float32)).max() == 255
    assert load_image(np.full((2, 2, 3), 65535, np.uint16)).max() == 255


def test_exif_rotation_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    arr = load_image(png_bytes(img, "JPEG", exif=exif.tobytes()))
    assert arr.shape == (40, 20, 3)


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in [(255, 0, 0), (0, 255, 0)]]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    arr = load_image(buf.getvalue())
    assert arr.shape == (10, 10, 3) and arr[0, 0, 0] > 200


def test_huge_images_refused_or_downscaled():
    big = Image.new("RGB", (3000, 1000))
    out = load_image(big, Limits(max_side=1500))
    assert out.shape == (500, 1500, 3)
    with pytest.raises(InputError, match="megapixels"):
        load_image(Image.new("L", (8000, 7000)))


def test_masks():
    m = load_mask(np.array([[0, 255], [255, 0]], np.uint8))
    assert m.dtype == bool and m.tolist() == [[False, True], [True, False]]
    assert load_mask(np.array([[0.2, 0.6]])).tolist() == [[False, True]]
    assert load_mask(np.array([[0, 1]], np.int64)).tolist() == [[False, True]]
    resized = load_mask(np.ones((3, 3), bool), size=(6, 9))
    assert resized.shape == (6, 9) and resized.all()
    with pytest.raises(InputError, match="2-D"):
        load_mask(np.zeros((2, 2, 2, 2)))
    with pytest.raises(InputError, match="NaN"):
        load_mask(np.array([[np.nan, 1.0]]))
    with pytest.raises(InputError, match="unsupported dtype"):
        load_mask(np.array([["a", "b"]]))
    with pytest.raises(InputError, match="empty"):
        load_masks([np.zeros((4, 4), bool)], (4, 4))
    with pytest.raises(InputError, match="limit"):
        load_masks([np.ones((2, 2), bool)] * 3, (2, 2), Limits(max_masks=2))


def test_text_and_classes():
    assert check_text("  the  red\tstar\x00 ") == "the red star"
    for bad in ["", "   ", "\n\t"]:
        with pytest.raises(InputError, match="empty"):
            check_text(bad)
    with pytest.raises(InputError, match="limit"):
        check_text("x" * 10_000)
    with pytest.raises(InputError, match="must be a string"):
        check_text(None)
    assert check_classes("cat, dog,  , sofa") == ["cat", "dog", "sofa"]
    assert check_classes(['a "quoted" name', "café", "猫"]) == ['a "quoted" name', "café", "猫"]
    with pytest.raises(InputError, match="duplicate"):
        check_classes(["Cat", "cat"])
    with pytest.raises(InputError, match="empty"):
        check_classes(" , ,")
    with pytest.raises(InputError, match="limit"):
        check_classes([f"c{i}" for i in range(2001)])


def test_numbers():
    assert check_number("3", "n", 0, 5, integer=True) == 3
    for bad in ["x", float("nan"), float("inf"), 6, -1]:
        with pytest.raises(InputError):
            check_number(bad, "n", 0, 5)
    with pytest.raises(InputError, match="integer"):
        check_number(2.5, "n", 0, 5, integer=True)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), data=st.data())
def test_mask_box_contains_mask(h, w, data):
    ys = data.draw(st.lists(st.integers(0, h - 1), min_size=1, max_size=20))
    xs = data.draw(st.lists(st.integers(0, w - 1), min_size=len(ys), max_size=len(ys)))
    m = np.zeros((h, w), bool)
    m[ys, xs] = True
    x0, y0, x1, y1 = mask_box(m)
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert m[y0:y1, x0:x1].sum() == m.sum()
    assert m[y0, x0:x1].any() and m[y1 - 1, x0:x1].any()  # tight


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), th=st.integers(1, 60), tw=st.integers(1, 60),
       seed=st.integers(0, 1000))
def test_mask_resize_keeps_shape_and_binary(h, w, th, tw, seed):
    m = np.random.default_rng(seed).random((h, w))
    out = load_mask(m, size=(th, tw))
    assert out.shape == (th, tw) and out.dtype == bool
    if (m >= 0.5).all():
        assert out.all()
    if not (m >= 0.5).any():
        assert not out.any()
