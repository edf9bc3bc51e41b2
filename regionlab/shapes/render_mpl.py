"""A third, independent ShapesWorld renderer (matplotlib's Agg), the shift set of issue 27.

The bundled CLIP is trained on scenes of the first renderer (:mod:`regionlab.shapes.scenes`)
and, from stage 11 on, of the second (:mod:`regionlab.shapes.render_cv`). Nothing is trained or
tuned on this one: it measures how results transfer to drawing code the models never saw.

Same world (6 colours x 5 shapes), other drawing code and statistics: matplotlib patches
rasterised by Agg at the target size (no supersampling); ellipses; squares with rounded
corners; triangles and stars with rounded joins; crosses with their own arm widths; hatch
textures in a darker or lighter tone of the object's colour; thin dark or white outlines; drop
shadows (not part of the mask); paper, graph-paper, dotted-clutter and dark vignette
backgrounds; an optional defocus blur. Objects do not overlap (masks stay exact), so referring
expressions keep one right answer.
"""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

from .scenes import Scene, SceneObject, random_objects
from .vocab import COLOURS

#: Seed namespace of this renderer's scenes (disjoint from the other renderers').
MPL_NAMESPACE = 53
HATCHES = ("//", "\\\\", "..", "xx", "--", "||", "oo")


def _rgb(rng: np.random.Generator, colour: str) -> tuple[float, float, float]:
    hue = (COLOURS[colour] + rng.uniform(-10, 10)) % 360
    sat = rng.uniform(0.6, 1.0)
    val = {"yellow": (0.9, 1.0), "orange": (0.8, 1.0)}.get(colour, (0.68, 1.0))
    val = rng.uniform(*val)
    return colorsys.hsv_to_rgb(hue / 360, sat, val)


def _grey(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, 0.12), rng.uniform(lo, hi))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Float RGB in [0, 1], desaturated so object colours stay unambiguous."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) / size
    kind = int(rng.integers(4))
    if kind == 3:  # dark, with a vignette
        base = np.array(_grey(rng, 0.08, 0.3))
        light = 1.15 - 0.6 * np.hypot(xs - 0.5, ys - 0.5)
        return np.clip(base[None, None] * light[..., None], 0, 1)
    a, b = np.array(_grey(rng, 0.55, 0.95)), np.array(_grey(rng, 0.45, 0.9))
    t = np.clip(np.hypot(xs - rng.uniform(0, 1), ys - rng.uniform(0, 1)), 0, 1)
    img = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    if kind == 1:  # graph paper
        step = max(3, int(size * rng.uniform(0.06, 0.14)))
        line = np.zeros((size, size), bool)
        line[::step, :] = True
        line[:, ::step] = True
        img[line] *= rng.uniform(0.75, 0.9)
    elif kind == 2:  # dotted clutter
        n = int(rng.integers(10, 40))
        for y, x in zip(rng.integers(0, size, n), rng.integers(0, size, n)):
            img[y, x] = _grey(rng, 0.2, 0.8)
    return img


def _vertices(shape: str, rng: np.random.Generator, cx: float, cy: float, r: float,
              rot: float) -> np.ndarray:
    if shape == "triangle":
        ang = rot + np.arange(3) * 2 * math.pi / 3
        rad = np.full(3, r)
    elif shape == "square":
        ang = rot + np.arange(4) * math.pi / 2 + math.pi / 4
        rad = np.full(4, r * 0.92)
    elif shape == "star":
        ang = rot + np.arange(10) * math.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, r * rng.uniform(0.4, 0.55))
    elif shape == "cross":
        w = rng.uniform(0.3, 0.42)
        base = np.array([(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1),
                         (-w, -w), (-1, -w), (-1, w), (-w, w), (-w, 1)]) * r
        c, s = math.cos(rot), math.sin(rot)
        return base @ np.array([[c, s], [-s, c]]) + np.array([cx, cy])
    else:
        raise ValueError(f"no polygon for {shape!r}")
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1)


def _patch(shape: str, geom: dict, **style):
    from matplotlib.patches import Ellipse, Polygon

    if shape == "circle":
        return Ellipse((geom["cx"], geom["cy"]), 2 * geom["r"], 2 * geom["r"] * geom["aspect"],
                       angle=math.degrees(geom["rot"]), **style)
    return Polygon(geom["verts"], closed=True, joinstyle="round", **style)


def _raster(size: int, background: np.ndarray, patches: list) -> np.ndarray:
    """Draw ``patches`` over ``background`` with Agg at size x size; float RGB in [0, 1]."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size / 100, size / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.imshow(background, extent=(0, size, size, 0), interpolation="nearest")
    for p in patches:
        ax.add_patch(p)
    ax.set_xlim(0, size)
    ax.set_ylim(size, 0)
    with matplotlib.rc_context({"hatch.linewidth": 1.0}):  # not the caller's settings
        canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float64) / 255.0


def render_scene_mpl(seed: int | tuple[int, ...], size: int = 64,
                     objects: list[tuple[str, str]] | None = None,
                     n_objects: tuple[int, int] = (1, 6),
                     scale: tuple[float, float] = (0.08, 0.2)) -> Scene:
    """One scene drawn by this renderer, deterministic from ``seed``.

    ``objects`` fixes the (colour, shape) of each object (dropped if it cannot be placed);
    otherwise ``n_objects`` gives the inclusive range of random objects."""
    seed_t = (seed,) if isinstance(seed, int) else tuple(seed)
    rng = np.random.default_rng([MPL_NAMESPACE, *seed_t])
    background = _background(rng, size)
    if objects is None:
        objects = random_objects(rng, *n_objects)
    black = np.zeros((size, size, 3))
    taken = np.zeros((size, size), bool)
    drawn, out = [], []
    for colour, shape in objects:
        for _attempt in range(100):
            r = rng.uniform(*scale) * size * (1.2 if shape in ("triangle", "star") else 1.0)
            lo, hi = r + 1, size - r - 1
            cx, cy = rng.uniform(lo, hi, 2) if hi > lo else (size / 2,) * 2
            geom = {"cx": cx, "cy": cy, "r": r, "rot": rng.uniform(0, 2 * math.pi),
                    "aspect": rng.uniform(0.8, 1.0)}
            if shape != "circle":
                geom["verts"] = _vertices(shape, rng, cx, cy, r, geom["rot"])
            edge = rng.uniform(0.0, 1.2) * size / 64
            alpha = _raster(size, black, [_patch(shape, geom, facecolor="white",
                                                 edgecolor="white", linewidth=edge)])[..., 0]
            mask = alpha >= 0.5
            grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            if mask.sum() >= 4 and not (grown & taken).any():
                break
        else:
            continue
        taken |= mask
        rgb = np.array(_rgb(rng, colour))
        style = rng.integers(4)
        if style == 1:  # a thin dark or white outline
            edgecolor = (0.1, 0.1, 0.1) if rng.uniform() < 0.6 else (1, 1, 1)
        else:
            edgecolor = tuple(rgb)
        hatch = HATCHES[rng.integers(len(HATCHES))] if style == 2 else None
        if rng.uniform() < 0.35:  # a drop shadow, drawn first, outside the mask
            off = rng.uniform(0.6, 1.8) * size / 64
            g = dict(geom, cx=cx + off, cy=cy + off)
            if "verts" in g:
                g["verts"] = geom["verts"] + off
            drawn.append(_patch(shape, g, facecolor=(0, 0, 0), alpha=rng.uniform(0.2, 0.4),
                                linewidth=0))
        tone = np.clip(rgb * (0.6 if rng.uniform() < 0.5 else 1.35), 0, 1)
        drawn.append(_patch(shape, geom, facecolor=tuple(rgb), edgecolor=edgecolor,
                            linewidth=edge))
        if hatch:  # hatch lines take the edge colour (every matplotlib >= 3.7)
            drawn.append(_patch(shape, geom, facecolor="none", edgecolor=tuple(tone),
                                linewidth=0, hatch=hatch))
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        out.append(SceneObject(colour, shape, mask, box, (float(cx), float(cy)), float(r)))
    image = _raster(size, background, drawn)
    if rng.uniform() < 0.3:  # defocus
        from PIL import Image, ImageFilter

        pil = Image.fromarray(np.rint(image * 255).astype(np.uint8))
        image = np.asarray(pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9)))) / 255.0
    return Scene(image=np.clip(np.rint(image * 255), 0, 255).astype(np.uint8), objects=out,
                 background="mpl", seed=seed_t)
