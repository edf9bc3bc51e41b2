"""One validation layer for images, masks, text and numbers (used by the UI, the API and the CLI).

Every rejection raises :class:`regionlab.errors.InputError` with a specific message.
"""

from __future__ import annotations

import io
import math
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from .config import LIMITS, Limits
from .errors import InputError

ImageLike = "Image.Image | np.ndarray | str | Path | bytes"


DECODE_HELP = "not a recognised image format (PNG, JPEG, GIF, WebP, BMP, TIFF)"


def too_large_to_decode(what: str = "image", limits: Limits = LIMITS) -> str:
    return (f"{what} is too large to decode; the limit is "
            f"{limits.max_image_pixels / 1e6:g} megapixels")


def _too_large(w: int, h: int, limits: Limits) -> InputError:
    return InputError(
        f"image is {w}x{h} ({w * h / 1e6:.1f} megapixels); the limit is "
        f"{limits.max_image_pixels / 1e6:g} megapixels"
    )


def _decode(source, limits: Limits = LIMITS, what: str = "image") -> Image.Image:
    """Open and decode an encoded image; the pixel limit is checked before decoding."""
    try:
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise InputError(f"{what} file not found: {path}")
            if path.stat().st_size == 0:
                raise InputError(f"cannot decode {what}: the file is empty (0 bytes)")
            img = Image.open(path)
        elif isinstance(source, (bytes, bytearray)):
            if not source:
                raise InputError(f"cannot decode {what}: no data (0 bytes)")
            img = Image.open(io.BytesIO(source))
        else:
            raise InputError(f"unsupported {what} type {type(source).__name__}")
        w, h = img.size
        if w * h > limits.max_image_pixels:
            raise _too_large(w, h, limits)
        img.load()
        return img
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(too_large_to_decode(what, limits)) from None
    except UnidentifiedImageError:
        raise InputError(f"cannot decode {what}: {DECODE_HELP}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot decode {what}: {exc}") from None


def load_image(source, limits: Limits = LIMITS) -> np.ndarray:
    """Any image input -> RGB uint8 array (H, W, 3).

    Accepts a PIL image, a path, encoded bytes, or an array (H, W), (H, W, 1|3|4) of uint8,
    uint16, bool or float in [0, 1]. EXIF orientation is applied; the first frame of an
    animation is used; alpha is composited on white; 16-bit is scaled to 8 bit; CMYK, palette
    and grey images are converted. Images above ``max_image_pixels`` are refused; images whose
    longest side exceeds ``max_side`` are downscaled (aspect ratio kept).
    """
    if isinstance(source, np.ndarray):
        arr = _array_to_rgb(source)
    else:
        img = source if isinstance(source, Image.Image) else _decode(source, limits)
        w, h = img.size
        if w * h > limits.max_image_pixels:
            raise _too_large(w, h, limits)
        if getattr(img, "is_animated", False):
            img = next(iter(ImageSequence.Iterator(img))).copy()
        img = ImageOps.exif_transpose(img)
        arr = _pil_to_rgb(img)
    h, w = arr.shape[:2]
    if h < 1 or w < 1:
        raise InputError(f"image is empty ({w}x{h})")
    if h * w > limits.max_image_pixels:
        raise _too_large(w, h, limits)
    if max(h, w) > limits.max_side:
        scale = limits.max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        arr = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.BICUBIC))
    return np.ascontiguousarray(arr)


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if a.max() > 255 else 255.0
        return _array_to_rgb((np.clip(a / hi, 0, 1) * 255).astype(np.uint8))
    if img.mode == "F":
        return _array_to_rgb(np.asarray(img, dtype=np.float32))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def _array_to_rgb(a: np.ndarray) -> np.ndarray:
    if a.size == 0:
        raise InputError(f"image array is empty (shape {a.shape})")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InputError(f"image array must be HxW, HxWx3 or HxWx4, got shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a.astype(np.float64) / 65535 * 255).round().astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise InputError("image contains NaN or infinite values")
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    elif a.dtype != np.uint8:
        if a.min() < 0 or a.max() > 255:
            raise InputError(f"integer image values must lie in 0..255, got {a.min()}..{a.max()}")
        a = a.astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float64) / 255
        a = (a[..., :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
    return a


def _binarise_int(a: np.ndarray) -> np.ndarray:
    """Integer mask -> bool: 0/1 masks are inside where non-zero, others (0/255 PNGs) where
    above 127."""
    return a > (127 if a.max() > 1 else 0)


def _image_mask(img: Image.Image) -> np.ndarray:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return np.asarray(img.convert("RGBA").getchannel("A")) > 127
    if img.mode == "1":
        return np.asarray(img, dtype=bool)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return _binarise_int(np.asarray(img, dtype=np.int64))
    return _binarise_int(np.asarray(img.convert("L")))


def _same_aspect(shape: tuple[int, int], size: tuple[int, int]) -> bool:
    """Is ``size`` a scaled copy of ``shape``: one scale s with both ``h*s`` and ``w*s`` within
    half a pixel (rounding) of ``size``, or aspect ratios within 2 %?"""
    (h, w), (th, tw) = shape, size
    lo = max((th - 0.5) / h, (tw - 0.5) / w)
    hi = min((th + 0.5) / h, (tw + 0.5) / w)
    return lo <= hi or abs((h / w) / (th / tw) - 1) <= 0.02


def load_mask(source, size: tuple[int, int] | None = None, name: str = "mask") -> np.ndarray:
    """Any mask input -> boolean array (H, W).

    Arrays may be bool, integer (0/1: inside where non-zero; otherwise, e.g. 0/255 PNGs, inside
    above 127) or float (thresholded at 0.5). A path, bytes or PIL image follows the same rule
    on its grey values (8 or 16 bit), or uses its alpha channel if it has transparency. If
    ``size`` = (H, W) is given and differs, a mask of the same aspect ratio is resized with
    nearest-neighbour sampling; another aspect ratio is refused (it belongs to another image).
    """
    if isinstance(source, (str, Path, bytes, bytearray, Image.Image)):
        img = source if isinstance(source, Image.Image) else _decode(source, what=name)
        arr = _image_mask(img)
    elif isinstance(source, np.ndarray):
        a = source
        if a.ndim == 3 and a.shape[2] in (1, 3, 4):
            a = a[..., 3] if a.shape[2] == 4 else a[..., 0]
        if a.ndim != 2:
            raise InputError(f"{name} must be a 2-D array, got shape {source.shape}")
        if a.size == 0:
            raise InputError(f"{name} is empty (shape {a.shape})")
        if a.dtype == bool:
            arr = a
        elif np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                raise InputError(f"{name} contains NaN or infinite values")
            arr = a >= 0.5
        elif np.issubdtype(a.dtype, np.integer):
            arr = _binarise_int(a)
        else:
            raise InputError(f"{name} has unsupported dtype {a.dtype}")
    else:
        raise InputError(f"{name}: unsupported type {type(source).__name__}")
    if size is not None and arr.shape != tuple(size):
        if not _same_aspect(arr.shape, tuple(size)):
            raise InputError(
                f"{name} is {arr.shape[1]}x{arr.shape[0]} but the image is {size[1]}x{size[0]}: "
                f"a mask must have the image's size (or be a scaled copy of that size)"
            )
        img = Image.fromarray(arr.astype(np.uint8) * 255)
        arr = np.asarray(img.resize((size[1], size[0]), Image.Resampling.NEAREST)) > 127
    return np.ascontiguousarray(arr)


def load_masks(
    sources, size: tuple[int, int], limits: Limits = LIMITS, allow_empty: bool = False
) -> np.ndarray:
    """A list of masks -> boolean array (P, H, W) at the image size; empty masks are refused
    unless ``allow_empty``."""
    if sources is None:
        sources = []
    if isinstance(sources, np.ndarray) and sources.ndim == 2:
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise InputError("no masks given: provide at least one region mask")
    if len(sources) > limits.max_masks:
        raise InputError(f"{len(sources)} masks given; the limit is {limits.max_masks} per call")
    masks = np.stack([load_mask(s, size, name=f"mask {i}") for i, s in enumerate(sources)])
    if not allow_empty:
        for i, m in enumerate(masks):
            if not m.any():
                raise InputError(f"mask {i} is empty (no pixel inside)")
    return masks


def check_text(
    text, what: str = "text", limits: Limits = LIMITS, max_chars: int | None = None
) -> str:
    """Normalise (NFC, control characters -> space, collapse spaces) and bound a text."""
    if not isinstance(text, str):
        raise InputError(f"{what} must be a string, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)
    text = " ".join(text.split())
    if not text:
        raise InputError(f"{what} is empty")
    limit = max_chars or limits.max_text_chars
    if len(text) > limit:
        raise InputError(f"{what} has {len(text)} characters; the limit is {limit}")
    return text


def check_classes(classes, limits: Limits = LIMITS) -> list[str]:
    """A class list (list or comma-separated string) -> cleaned, de-duplicated list.

    Blank names are dropped, duplicates (case-insensitive) are refused with their name.
    """
    if isinstance(classes, str):
        classes = classes.split(",")
    names = [
        check_text(c, "class name", limits, limits.max_class_chars)
        for c in classes
        if isinstance(c, str) and c.strip()
    ]
    if not names:
        raise InputError("the class list is empty")
    if len(names) > limits.max_classes:
        raise InputError(f"{len(names)} classes given; the limit is {limits.max_classes}")
    seen: dict[str, str] = {}
    for n in names:
        key = n.casefold()
        if key in seen:
            raise InputError(f"duplicate class name {n!r}")
        seen[key] = n
    return names


def check_number(value, what: str, lo: float, hi: float, integer: bool = False):
    """Bounds-check a number (finite, lo <= value <= hi)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{what} must be finite, got {value!r}")
    if integer:
        if v != int(v):
            raise InputError(f"{what} must be an integer, got {value!r}")
        v = int(v)
    if not lo <= v <= hi:
        raise InputError(f"{what} must lie in [{lo}, {hi}], got {value!r}")
    return v
