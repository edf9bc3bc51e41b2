"""A second, independent ShapesWorld renderer (OpenCV), for shift tests.

Same world (6 colours x 5 shapes, :mod:`regionlab.shapes.vocab`), other drawing code and other
statistics than :func:`regionlab.shapes.scenes.render_scene`: OpenCV primitives with
``LINE_AA`` edges instead of supersampled PIL polygons; its own shape geometry (stars with
5-6 points and a random inner radius, crosses with random arm widths, triangles and squares
stretched by an aspect ratio, ellipses); dark or light outlines; a lighting ramp across each
object; textured backgrounds (stripes, checkers, blobs, vignettes); sensor noise and JPEG
artefacts; a wider range of sizes. Objects do not overlap (masks stay exact), as in the first
renderer, so referring expressions keep one right answer.

Nothing is tuned on these scenes: they measure how results transfer.
"""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

from .scenes import Scene, SceneObject, random_objects
from .vocab import COLOURS

#: Seed namespace of this renderer's scenes (disjoint from the first renderer's splits).
CV_NAMESPACE = 41


def _rgb(rng: np.random.Generator, colour: str) -> np.ndarray:
    hue = (COLOURS[colour] + rng.uniform(-9, 9)) % 360
    sat = rng.uniform(0.65, 1.0)
    val = rng.uniform(0.92, 1.0) if colour == "yellow" else rng.uniform(0.7, 1.0)
    return np.array(colorsys.hsv_to_rgb(hue / 360, sat, val)) * 255


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    grey = rng.uniform(40, 215)
    tint = rng.normal(0, 8, 3)
    img = np.full((size, size, 3), grey, np.float64) + tint
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) / size
    kind = rng.integers(4)
    if kind == 0:  # stripes
        period = rng.uniform(0.08, 0.3)
        angle = rng.uniform(0, math.pi)
        t = np.sin(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period)
        img += (t * rng.uniform(6, 18))[..., None]
    elif kind == 1:  # checkers
        k = int(rng.integers(3, 9))
        chk = ((np.floor(xs * k) + np.floor(ys * k)) % 2) * 2 - 1
        img += (chk * rng.uniform(5, 15))[..., None]
    elif kind == 2:  # soft blobs
        blobs = rng.normal(0, 1, (8, 8))
        img += (cv2.resize(blobs, (size, size), interpolation=cv2.INTER_CUBIC)
                * rng.uniform(6, 16))[..., None]
    # a lighting ramp / vignette on every background
    cx, cy = rng.uniform(0, 1, 2)
    img *= (1.1 - 0.35 * np.hypot(xs - cx, ys - cy))[..., None]
    return np.clip(img, 0, 255)


def _polygon(shape: str, rng: np.random.Generator, cx: float, cy: float, r: float,
             rot: float) -> np.ndarray:
    """Vertices (N, 2) in pixels; this renderer's own geometry."""
    if shape == "triangle":
        ang = rot + np.array([0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.normal(0, 0.08, 3)
        rad = np.full(3, r)
    elif shape == "square":
        ang = rot + np.arange(4) * math.pi / 2 + math.pi / 4
        rad = np.full(4, r)
    elif shape == "star":
        points = int(rng.choice([5, 5, 6]))
        ang = rot + np.arange(2 * points) * math.pi / points
        rad = np.where(np.arange(2 * points) % 2 == 0, r, r * rng.uniform(0.38, 0.52))
    elif shape == "cross":
        w = rng.uniform(0.26, 0.4)
        base = np.array([(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w),
                         (-1, -w), (-1, w), (-w, w), (-w, 1)]) * r
        c, s = math.cos(rot), math.sin(rot)
        return base @ np.array([[c, s], [-s, c]]) + np.array([cx, cy])
    else:
        raise ValueError(f"no polygon for {shape!r}")
    pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    aspect = rng.uniform(0.85, 1.15)  # a mild stretch along the shape's own axis
    pts[:, 0] *= aspect
    c, s = math.cos(rot), math.sin(rot)
    return pts @ np.array([[c, s], [-s, c]]) + np.array([cx, cy])


def _draw_mask(shape: str, rng: np.random.Generator, size: int, cx: float, cy: float, r: float,
               rot: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] (OpenCV LINE_AA at 16x sub-pixel precision)."""
    layer = np.zeros((size, size), np.uint8)
    shift = 4
    if shape == "circle":
        axes = (int(round(r * 16)), int(round(r * rng.uniform(0.9, 1.0) * 16)))
        cv2.ellipse(layer, (int(round(cx * 16)), int(round(cy * 16))), axes,
                    math.degrees(rot), 0, 360, 255, -1, cv2.LINE_AA, shift)
    else:
        pts = np.round(_polygon(shape, rng, cx, cy, r, rot) * 16).astype(np.int32)
        cv2.fillPoly(layer, [pts], 255, cv2.LINE_AA, shift)
    return layer.astype(np.float64) / 255.0


def render_scene_cv(seed: int | tuple[int, ...], size: int = 64,
                    objects: list[tuple[str, str]] | None = None,
                    n_objects: tuple[int, int] = (1, 6),
                    scale: tuple[float, float] = (0.08, 0.2)) -> Scene:
    """One scene drawn by this renderer, deterministic from ``seed``.

    ``objects`` fixes the (colour, shape) of each object (dropped if it cannot be placed);
    otherwise ``n_objects`` gives the inclusive range of random objects."""
    seed_t = (seed,) if isinstance(seed, int) else tuple(seed)
    rng = np.random.default_rng([CV_NAMESPACE, *seed_t])
    canvas = _background(rng, size)
    if objects is None:
        objects = random_objects(rng, *n_objects)
    taken = np.zeros((size, size), bool)
    out: list[SceneObject] = []
    for colour, shape in objects:
        for _attempt in range(100):
            r = rng.uniform(*scale) * size * (1.15 if shape in ("triangle", "star") else 1.0)
            cx, cy = rng.uniform(r + 1, size - r - 1, 2) if size > 2 * r + 2 else (size / 2,) * 2
            rot = rng.uniform(0, 2 * math.pi)
            alpha = _draw_mask(shape, rng, size, cx, cy, r, rot)
            mask = alpha >= 0.5
            grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            if mask.sum() >= 4 and not (grown & taken).any():
                break
        else:
            continue
        taken |= mask
        rgb = _rgb(rng, colour)
        # a lighting ramp across the object, then an optional outline
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:size, 0:size]
        ramp = ((xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)) / max(r, 1)
        shade = 1 + rng.uniform(0.0, 0.12) * np.clip(ramp, -1, 1)
        fill = np.clip(rgb[None, None] * shade[..., None], 0, 255)
        canvas = canvas * (1 - alpha[..., None]) + fill * alpha[..., None]
        if rng.uniform() < 0.5:
            edge = alpha - cv2.erode(alpha, np.ones((3, 3), np.uint8))
            tone = rgb * rng.uniform(0.45, 0.7)
            canvas = canvas * (1 - edge[..., None]) + tone[None, None] * edge[..., None]
        ys_m, xs_m = np.nonzero(mask)
        box = (int(xs_m.min()), int(ys_m.min()), int(xs_m.max()) + 1, int(ys_m.max()) + 1)
        out.append(SceneObject(colour, shape, mask, box, (float(cx), float(cy)), float(r)))
    canvas = canvas + rng.normal(0, rng.uniform(1, 6), canvas.shape)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    quality = int(rng.integers(45, 95))
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if ok:
        image = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return Scene(image=image, objects=out, background="cv", seed=seed_t)
