"""Region embeddings by simple image edits, side by side with MaskInversion.

All methods share one signature: ``region_embeddings(clip, image, masks, method) -> (P, D)``
unnormalised embeddings in the CLIP's joint space.

- ``global``: the whole image (the same embedding for every mask).
- ``crop``: the mask's tight bounding box, stretched to the model input.
- ``masked-crop``: OVSeg's recipe -- tight box, pixels outside the mask set to the CLIP mean
  colour (exactly 0 after normalisation), stretched to the model input.
- ``blur``: ReCLIP's recipe -- the whole image Gaussian-blurred, original pixels pasted back
  inside the mask's box. ``sigma`` defaults to 100 px for a 640 px image, scaled with the
  longest image side (6.4 px for a 64 px scene).
- ``red-circle``: a red ellipse drawn around the mask's box on the full image.
- ``maskinversion``: :func:`regionlab.region.maskinversion.invert`.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from ..errors import InputError
from ..inputs import load_image, load_masks

METHODS = ("global", "crop", "masked-crop", "blur", "red-circle", "maskinversion")


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box (x0, y0, x1, y1) of a non-empty mask, exclusive upper bounds."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def mean_colour(clip) -> np.ndarray:
    return np.rint(np.asarray(clip.mean) * 255).astype(np.uint8)


def crop_view(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = mask_box(mask)
    return image[y0:y1, x0:x1]


def masked_crop_view(image: np.ndarray, mask: np.ndarray, fill: np.ndarray,
                     square: bool = False) -> np.ndarray:
    """Tight box (or the enclosing square with ``square``), outside-mask pixels = ``fill``."""
    x0, y0, x1, y1 = mask_box(mask)
    if square:
        side = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        x0, y0 = cx - side // 2, cy - side // 2
        x1, y1 = x0 + side, y0 + side
        pad = side
        img = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
        msk = np.pad(mask, ((pad, pad), (pad, pad)))
        x0, x1, y0, y1 = x0 + pad, x1 + pad, y0 + pad, y1 + pad
    else:
        img, msk = image, mask
    crop = img[y0:y1, x0:x1].copy()
    crop[~msk[y0:y1, x0:x1]] = fill
    return crop


def blur_sigma(image_shape: tuple[int, int], sigma: float | None = None) -> float:
    return float(sigma) if sigma is not None else 100.0 * max(image_shape) / 640.0


def blur_view(image: np.ndarray, box, sigma: float) -> np.ndarray:
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=sigma)))
    out = blurred.copy()
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = image[y0:y1, x0:x1]
    return out


def red_circle_view(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = mask_box(mask)
    pil = Image.fromarray(image)
    width = max(1, round(max(image.shape[:2]) / 100))
    pad = width
    ImageDraw.Draw(pil).ellipse([x0 - pad, y0 - pad, x1 + pad, y1 + pad], outline=(255, 0, 0),
                                width=width)
    return np.asarray(pil)


def region_views(clip, image: np.ndarray, masks: np.ndarray, method: str,
                 sigma: float | None = None) -> list[np.ndarray]:
    """The edited images that ``method`` embeds, one per mask."""
    if method == "crop":
        return [crop_view(image, m) for m in masks]
    if method == "masked-crop":
        fill = mean_colour(clip)
        return [masked_crop_view(image, m, fill) for m in masks]
    if method == "blur":
        s = blur_sigma(image.shape[:2], sigma)
        return [blur_view(image, mask_box(m), s) for m in masks]
    if method == "red-circle":
        return [red_circle_view(image, m) for m in masks]
    raise InputError(f"method {method!r} has no image views")


def region_embeddings(clip, image, masks, method: str = "maskinversion", *,
                      sigma: float | None = None, **mi_options) -> torch.Tensor:
    """(P, D) unnormalised region embeddings of ``masks`` on ``image`` by ``method``."""
    if method not in METHODS:
        raise InputError(f"unknown region method {method!r}; choose from {METHODS}")
    img = load_image(image)
    mk = load_masks(masks, img.shape[:2])
    if method == "maskinversion":
        from .maskinversion import invert

        return invert(clip, img, mk, **mi_options).embeddings
    if method == "global":
        return clip.encode_images([img]).expand(len(mk), -1).clone()
    return clip.encode_images(region_views(clip, img, mk, method, sigma))
