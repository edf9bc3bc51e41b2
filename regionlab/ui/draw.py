"""Drawing for the app: region overlays, click markers, boxes, heatmaps (pure numpy/PIL/cv2)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def _thickness(shape: tuple[int, ...]) -> int:
    return max(1, round(max(shape[:2]) / 200))


def overlay_regions(image: np.ndarray, masks: Sequence[np.ndarray],
                    colours: Sequence[tuple[int, int, int]], alpha: float = 0.0,
                    highlight: int | None = None) -> np.ndarray:
    """Regions outlined in their colours on a copy of ``image``, each outline on a white
    halo so that it shows on any background; the ``highlight`` region's outline is thicker.

    Inside the regions the image is left as it is by default, so objects keep their apparent
    colours (a tinted blue circle under a green region looked teal); ``alpha`` > 0 adds a
    tint of the region's colour. Outlines follow holes too."""
    out = image.astype(np.float32).copy()
    if alpha > 0:
        for mask, colour in zip(masks, colours):
            m = np.asarray(mask, dtype=bool)
            out[m] = out[m] * (1 - alpha) + np.array(colour, np.float32) * alpha
    out = np.clip(out, 0, 255).astype(np.uint8)
    t = _thickness(image.shape)
    for i, (mask, colour) in enumerate(zip(masks, colours)):
        contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_LIST,
                                       cv2.CHAIN_APPROX_NONE)
        line = 2 * t if i == highlight else t
        cv2.drawContours(out, contours, -1, (255, 255, 255), line + 2 * t)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in colour), line)
    return out


def draw_points(image: np.ndarray, points: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """Positive clicks as green discs, negative ones as red discs (white rim)."""
    out = image.copy()
    r = max(3, round(max(image.shape[:2]) / 90))
    for x, y, label in points:
        colour = (40, 200, 60) if label else (230, 40, 40)
        cv2.circle(out, (int(x), int(y)), r + 1, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(out, (int(x), int(y)), r, colour, -1, cv2.LINE_AA)
    return out


def draw_box(image: np.ndarray, box: Sequence[float], colour=(255, 215, 0), label: str = "",
             thickness: int | None = None) -> np.ndarray:
    """A rectangle (x0, y0, x1, y1 exclusive) with an optional text label."""
    out = image.copy()
    t = thickness or _thickness(image.shape)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), tuple(colour), t)
    if label:
        scale = max(0.35, max(image.shape[:2]) / 900)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = max(th + 2, y0 - 2)
        cv2.rectangle(out, (x0, ty - th - 2), (x0 + tw + 2, ty + 2), tuple(colour), -1)
        cv2.putText(out, label, (x0 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def place_labels(boxes: Sequence[Sequence[float]], sizes: Sequence[tuple[int, int]],
                 image_shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """Top-left corners for label rectangles of ``sizes`` (w, h), one per box, in order: the
    first of these spots that stays inside the image and overlaps no label placed before it:
    above the box, inside its top, below it, inside its bottom, then sliding right along
    those rows; when none is free, the least-overlapping one."""
    h_img, w_img = image_shape[:2]
    placed: list[tuple[int, int, int, int]] = []
    out = []

    def overlap(a, b) -> int:
        return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))

    for (x0, y0, x1, y1), (tw, th) in zip(boxes, sizes):
        x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
        rows = [y0 - th - 1, y0 + 1, y1 + 1, y1 - th - 1]
        xs = [x0] + list(range(x0 + tw // 2, max(x0, x1 - tw) + 1, max(1, tw // 2)))
        best, best_cost = None, None
        for ty in rows:
            for tx in xs:
                tx, ty_c = min(max(0, tx), max(0, w_img - tw)), min(max(0, ty), max(0, h_img - th))
                rect = (tx, ty_c, tx + tw, ty_c + th)
                cost = sum(overlap(rect, r) for r in placed)
                if best_cost is None or cost < best_cost:
                    best, best_cost = rect, cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        placed.append(best)
        out.append((best[0], best[1]))
    return out


def draw_labelled_boxes(image: np.ndarray, boxes: Sequence[Sequence[float]], labels: list[str],
                        colours: list[tuple[int, int, int]],
                        thicknesses: list[int] | None = None) -> np.ndarray:
    """Every box first, then every label where it overlaps no other label
    (:func:`place_labels`, in the given order: put the most important first)."""
    out = image.copy()
    ts = thicknesses or [_thickness(image.shape)] * len(boxes)
    for (x0, y0, x1, y1), c, t in zip(boxes, colours, ts):
        x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), tuple(c), t)
    scale = max(0.35, max(image.shape[:2]) / 900)
    sizes = []
    for label in labels:
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        sizes.append((tw + 2, th + 4))
    for (tx, ty), (tw, th), label, c in zip(place_labels(boxes, sizes, image.shape), sizes,
                                            labels, colours):
        cv2.rectangle(out, (tx, ty), (tx + tw - 1, ty + th - 1), tuple(c), -1)
        cv2.putText(out, label, (tx + 1, ty + th - 3), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return out


def draw_marker(image: np.ndarray, x: int, y: int, colour=(255, 215, 0)) -> np.ndarray:
    """A cross marking the first corner of a box being drawn."""
    out = image.copy()
    r = max(4, round(max(image.shape[:2]) / 60))
    t = _thickness(image.shape)
    cv2.line(out, (x - r, y), (x + r, y), colour, t, cv2.LINE_AA)
    cv2.line(out, (x, y - r), (x, y + r), colour, t, cv2.LINE_AA)
    return out


def heatmap(values: np.ndarray, image: np.ndarray | None = None, alpha: float = 0.55,
            cmap: str = "jet") -> np.ndarray:
    """A map in [0, 1] (H, W) coloured with ``cmap`` and blended over ``image`` if given
    (resized to the image)."""
    from matplotlib import colormaps

    v = np.clip(np.nan_to_num(np.asarray(values, np.float32)), 0.0, 1.0)
    if image is not None and v.shape != image.shape[:2]:
        v = cv2.resize(v, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    rgb = (colormaps[cmap](v)[..., :3] * 255).astype(np.float32)
    if image is None:
        return rgb.astype(np.uint8)
    return np.clip(image.astype(np.float32) * (1 - alpha) + rgb * alpha, 0, 255).astype(np.uint8)


def mask_outline(image: np.ndarray, mask: np.ndarray, colour=(255, 255, 255)) -> np.ndarray:
    """The mask's outline drawn on ``image``."""
    out = image.copy()
    contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, colour, _thickness(image.shape))
    return out


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box (x0, y0, x1, y1 exclusive) of a mask, None if empty."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def box_mask(box: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    """A boolean (H, W) mask filled inside the box (x0, y0, x1, y1 exclusive)."""
    h, w = shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    m = np.zeros((h, w), bool)
    m[max(0, y0):max(0, min(h, y1)), max(0, x0):max(0, min(w, x1))] = True
    return m
