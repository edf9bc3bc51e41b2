"""ShapesWorld scene generator: deterministic by seed, with masks, boxes, labels and captions.

Coordinates: pixel (x, y) with x to the right and y down; boxes are ``(x0, y0, x1, y1)`` with
exclusive upper bounds (``mask[y0:y1, x0:x1]`` holds the object).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .vocab import COLOUR_NAMES, COLOURS, SHAPES, class_name

BACKGROUNDS = ("solid", "gradient", "noise")


@dataclass
class SceneObject:
    """One object of a scene. ``mask`` is a boolean HxW array at the scene's size."""

    colour: str
    shape: str
    mask: np.ndarray
    box: tuple[int, int, int, int]
    center: tuple[float, float]
    radius: float

    @property
    def label(self) -> str:
        return class_name(self.colour, self.shape)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class Scene:
    """An RGB uint8 image (HxWx3) with its objects (in drawing order) and the settings used."""

    image: np.ndarray
    objects: list[SceneObject]
    background: str
    seed: tuple[int, ...] = field(default_factory=tuple)

    @property
    def size(self) -> int:
        return self.image.shape[0]

    def caption(self) -> str:
        """A caption naming every object, left to right: "a red circle and a blue star"."""
        objs = sorted(self.objects, key=lambda o: o.center[0])
        names = [article(o.label) for o in objs]
        if len(names) == 1:
            return names[0]
        return ", ".join(names[:-1]) + " and " + names[-1]

    def pil(self) -> Image.Image:
        return Image.fromarray(self.image)


@dataclass(frozen=True)
class RenderOptions:
    """How scenes are drawn. Defaults are the training/evaluation distribution.

    ``scale`` is the object radius range as a fraction of the image size; ``antialias`` the
    supersampling factor (1 = hard edges).
    """

    size: int = 64
    min_objects: int = 1
    max_objects: int = 4
    scale: tuple[float, float] = (0.10, 0.22)
    backgrounds: tuple[str, ...] = BACKGROUNDS
    antialias: int = 4
    colour_jitter: float = 1.0


def colour_rgb(rng: np.random.Generator, colour: str, jitter: float) -> tuple[int, int, int]:
    hue = COLOURS[colour] + rng.uniform(-7, 7) * jitter
    sat = 1.0 - rng.uniform(0.0, 0.3) * jitter
    val = 1.0 - rng.uniform(0.0, 0.25) * jitter
    if colour == "yellow":
        val = max(val, 0.9)
    r, g, b = colorsys.hsv_to_rgb((hue % 360) / 360.0, sat, val)
    return int(r * 255), int(g * 255), int(b * 255)


def background(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """Desaturated backgrounds (saturation <= 0.15) so object colours stay unambiguous."""

    def grey_tint() -> np.ndarray:
        level = rng.uniform(0.15, 0.85)
        hue = rng.uniform(0, 1)
        sat = rng.uniform(0, 0.15)
        return np.array(colorsys.hsv_to_rgb(hue, sat, level)) * 255

    if kind == "solid":
        img = np.broadcast_to(grey_tint(), (size, size, 3)).copy()
    elif kind == "gradient":
        a, b = grey_tint(), grey_tint()
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:size, 0:size] / max(size - 1, 1)
        t = (xs * math.cos(angle) + ys * math.sin(angle))
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        img = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    elif kind == "noise":
        base = grey_tint()
        noise = rng.normal(0, rng.uniform(10, 30), (size, size, 1))
        noise_img = Image.fromarray(np.clip(noise[..., 0] + 128, 0, 255).astype(np.uint8))
        noise_img = noise_img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.5, 2.0)))
        img = base[None, None] + (np.asarray(noise_img, dtype=np.float64)[..., None] - 128)
    else:
        raise ValueError(f"unknown background {kind!r}; expected one of {BACKGROUNDS}")
    return np.clip(img, 0, 255)


def shape_polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple]:
    """Vertices of a shape of circumradius ``r`` (circles: a 48-gon)."""
    if shape == "circle":
        n, radii = 48, [r]
    elif shape == "square":
        n, radii = 4, [r]
    elif shape == "triangle":
        n, radii = 3, [r]
    elif shape == "star":
        n, radii = 10, [r, r * 0.45]
    elif shape == "cross":
        # plus sign: 12 vertices at two radii, arm half-width w
        w = r * 0.36
        pts = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r),
               (-w, -r), (-w, -w), (-r, -w), (-r, w), (-w, w), (-w, r)]
        c, s = math.cos(rot), math.sin(rot)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    pts = []
    for k in range(n):
        ang = rot + 2 * math.pi * k / n - math.pi / 2
        rad = radii[k % len(radii)]
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    return pts


def paint_shape(canvas: np.ndarray, shape: str, cx: float, cy: float, r: float, rot: float,
                rgb: tuple[int, int, int], antialias: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``canvas`` (HxWx3 float) with the shape painted over it in ``rgb``, supersampled
    ``antialias`` times, and the shape's coverage (HxW in [0, 1])."""
    size, ss = canvas.shape[0], max(1, antialias)
    layer = Image.new("L", (size * ss, size * ss), 0)
    ImageDraw.Draw(layer).polygon(
        [(x * ss, y * ss) for x, y in shape_polygon(shape, cx, cy, r, rot)], fill=255
    )
    if ss > 1:
        layer = layer.resize((size, size), Image.Resampling.BOX)
    alpha = np.asarray(layer, dtype=np.float64) / 255.0
    colour = np.array(rgb, dtype=np.float64)
    return canvas * (1 - alpha[..., None]) + colour[None, None] * alpha[..., None], alpha


def shape_area_factor(shape: str) -> float:
    # squares/triangles look small for the same circumradius: enlarge them a little
    return {"circle": 0.92, "square": 1.0, "triangle": 1.15, "star": 1.15, "cross": 1.0}[shape]


def random_objects(rng: np.random.Generator, lo: int, hi: int) -> list[tuple[str, str]]:
    """``lo``-``hi`` (inclusive) random (colour, shape) pairs; every renderer draws them so."""
    n = int(rng.integers(lo, hi + 1))
    return [(COLOUR_NAMES[rng.integers(6)], SHAPES[rng.integers(5)]) for _ in range(n)]


def render_scene(
    seed: int | tuple[int, ...],
    options: RenderOptions = RenderOptions(),
    objects: list[tuple[str, str]] | None = None,
) -> Scene:
    """Render one scene, deterministically from ``seed`` (an int or a tuple of ints).

    ``objects`` optionally fixes the (colour, shape) of each object; otherwise 1-4 random ones.
    """
    seed_t = (seed,) if isinstance(seed, int) else tuple(seed)
    rng = np.random.default_rng(list(seed_t))
    size, ss = options.size, max(1, options.antialias)
    if size < 8:
        raise ValueError(f"scene size must be >= 8 px, got {size}")
    bg_kind = options.backgrounds[rng.integers(len(options.backgrounds))]
    canvas = background(rng, bg_kind, size)
    if objects is None:
        objects = random_objects(rng, options.min_objects, options.max_objects)

    placed: list[tuple[float, float, float]] = []
    out: list[SceneObject] = []
    for colour, shape in objects:
        for _attempt in range(200):
            r = rng.uniform(*options.scale) * size * shape_area_factor(shape)
            cx = rng.uniform(r + 1, size - r - 1) if size - 2 * r - 2 > 0 else size / 2
            cy = rng.uniform(r + 1, size - r - 1) if size - 2 * r - 2 > 0 else size / 2
            if all(math.hypot(cx - px, cy - py) > r + pr + 2 for px, py, pr in placed):
                break
        else:
            continue  # could not place without overlap: drop this object
        placed.append((cx, cy, r))
        rot = rng.uniform(0, 2 * math.pi)
        rgb = colour_rgb(rng, colour, options.colour_jitter)
        canvas, alpha = paint_shape(canvas, shape, cx, cy, r, rot, rgb, ss)
        mask = alpha >= 0.5
        if not mask.any():
            placed.pop()
            continue
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        out.append(SceneObject(colour, shape, mask, box, (float(cx), float(cy)), float(r)))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return Scene(image=image, objects=out, background=bg_kind, seed=seed_t)


# Seed namespaces keep training and evaluation scenes disjoint.
SPLITS = {"train": 0, "val": 1, "test": 2}


def split_seed(split: str, index: int, seed: int = 0) -> tuple[int, int, int]:
    """The seed tuple of scene ``index`` in a split ("train", "val", "test")."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(SPLITS)}")
    return (SPLITS[split], seed, index)


def generate_scenes(
    split: str, n: int, seed: int = 0, options: RenderOptions = RenderOptions(), start: int = 0
) -> list[Scene]:
    """``n`` scenes of a split, the same for the same arguments on every machine."""
    return [render_scene(split_seed(split, start + i, seed), options) for i in range(n)]


def article(noun_phrase: str) -> str:
    """``"an orange star"``, ``"a red star"``."""
    return ("an " if noun_phrase[:1].lower() in "aeiou" else "a ") + noun_phrase
