"""Images of ONE ShapesWorld object with its class, at the bundled CLIP's input size.

What the decoders (captioner, generator) are trained and measured on, and what the
benchmarks measure them on (``validation_views``). Views of an object (all deterministic by
seed):
- ``single``: a single-object scene, object radius from 6% (``min_scale``) to 20-45% of the
  image, rendered at 48-128 px and resized to the CLIP's 64 px (scale augmentation);
- ``masked``: the OVSeg masked crop of an object of a multi-object scene (tight box, outside
  pixels = CLIP mean colour);
- ``context``: a square crop around an object of a multi-object scene, 1.3-2.5 x its box.

The crops are also what the CLIP's training classifies (``regionlab.training.train_clip``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .model import CONFIG
from .scenes import (
    RenderOptions,
    background,
    colour_rgb,
    paint_shape,
    render_scene,
    shape_area_factor,
)
from .vocab import CLASSES

SIZE = CONFIG["vision_cfg"]["image_size"]
MEAN = np.array([0.48145466, 0.4578275, 0.40821073])  # CLIP's normalisation mean (RGB)
SEED_NAMESPACE = 5  # scenes (5, seed, i): disjoint from CLIP training (3, ...) and val/test
GENERATOR_MIN_SCALE = 0.15  # smallest object radius of the generator's training scenes
VAL_NAMESPACE = 1_000 + SEED_NAMESPACE  # held-out views, disjoint from training


@dataclass
class ObjectViews:
    images: np.ndarray  # (N, SIZE, SIZE, 3) uint8
    labels: np.ndarray  # (N,) class indices into CLASSES
    kinds: np.ndarray  # (N,) 0 single, 1 masked crop, 2 context crop


def fit(image: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Resize (bicubic) to size x size unless it already is."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


def masked_crop(image: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """OVSeg recipe: tight box, outside-mask pixels = CLIP mean colour, stretched to size."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = image[y0:y1, x0:x1].copy()
    crop[~mask[y0:y1, x0:x1]] = np.rint(MEAN * 255).astype(np.uint8)
    return fit(crop, size)


def context_crop(image: np.ndarray, box, factor: float, size: int) -> np.ndarray:
    """A square crop ``factor`` x the box's longer side around its centre, resized to size."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) * factor / 2
    h, w = image.shape[:2]
    a0, b0 = int(max(0, cx - half)), int(max(0, cy - half))
    a1, b1 = int(min(w, cx + half + 1)), int(min(h, cy + half + 1))
    return fit(image[b0:b1, a0:a1], size)


def single_object_scene(seed: tuple[int, ...], rng: np.random.Generator,
                        min_scale: float = 0.06):
    """Object radius from ``min_scale`` to a random 20-45% of the image side."""
    opts = RenderOptions(size=int(rng.choice([48, 64, 64, 64, 80, 96, 128])), min_objects=1,
                         max_objects=1, scale=(min_scale, float(rng.uniform(0.2, 0.45))),
                         antialias=int(rng.choice([1, 2, 4])))
    return render_scene(seed, opts)


def object_views(n_single: int, n_masked: int, n_context: int, seed: int = 0,
                 namespace: int = SEED_NAMESPACE, min_scale: float = 0.06) -> ObjectViews:
    """Render the views (see module docstring); the same arguments give the same arrays."""
    images, labels, kinds = [], [], []
    for i in range(n_single):
        rng = np.random.default_rng([namespace, seed, 0, i])
        scene = single_object_scene((namespace, seed, 0, i), rng, min_scale)
        if not scene.objects:
            continue
        images.append(fit(scene.image))
        labels.append(CLASSES.index(scene.objects[0].label))
        kinds.append(0)
    want = {1: n_masked, 2: n_context}
    i = 0
    while want[1] > 0 or want[2] > 0:
        rng = np.random.default_rng([namespace, seed, 1, i])
        scene = render_scene((namespace, seed, 1, i), RenderOptions(min_objects=2))
        i += 1
        for ob in scene.objects:
            if ob.area < 12:
                continue
            kind = 1 if want[1] >= want[2] else 2
            if want[kind] <= 0:
                continue
            if kind == 1:
                images.append(masked_crop(scene.image, ob.mask, SIZE))
            else:
                images.append(context_crop(scene.image, ob.box, rng.uniform(1.3, 2.5), SIZE))
            labels.append(CLASSES.index(ob.label))
            kinds.append(kind)
            want[kind] -= 1
    return ObjectViews(np.stack(images), np.array(labels), np.array(kinds))


def validation_views(n: int, seed: int = 0, min_scale: float = GENERATOR_MIN_SCALE
                     ) -> ObjectViews:
    """The held-out single-object scenes the generator's recorded metrics are measured on."""
    return object_views(n, 0, 0, seed=seed, namespace=VAL_NAMESPACE, min_scale=min_scale)


#: Rotation that stands each shape upright (``shape_polygon`` puts a vertex at the top):
#: squares axis-aligned, triangles and stars on a point, crosses as a plus sign.
UPRIGHT = {"circle": 0.0, "square": np.pi / 4, "triangle": 0.0, "star": 0.0, "cross": 0.0}


def canonical_view(colour: str, shape: str, rng: np.random.Generator, size: int = SIZE,
                   antialias: int = 4) -> np.ndarray:
    """One object of class (``colour``, ``shape``) as a generator target: centred (+-4% of the
    side), upright (+-10 degrees), radius 30-38% of the side, on a solid or gradient
    desaturated background; the colour shade drawn as ``render_scene`` draws it."""
    canvas = background(rng, "solid" if rng.uniform() < 0.5 else "gradient", size)
    r = rng.uniform(0.30, 0.38) * size * min(shape_area_factor(shape), 1.08)
    cx, cy = size / 2 + rng.uniform(-0.04, 0.04, 2) * size
    rot = UPRIGHT[shape] + np.deg2rad(rng.uniform(-10, 10))
    out, _ = paint_shape(canvas, shape, cx, cy, r, rot, colour_rgb(rng, colour, 1.0), antialias)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def canonical_views(labels: np.ndarray, seed: int = 0, namespace: int = SEED_NAMESPACE
                    ) -> np.ndarray:
    """A canonical view (:func:`canonical_view`) of each class index in ``labels``, (N, SIZE,
    SIZE, 3) uint8; the i-th drawn from the stream ``(namespace, seed, 3, i)``."""
    out = []
    for i, j in enumerate(labels):
        colour, shape = CLASSES[int(j)].split()
        out.append(canonical_view(colour, shape, np.random.default_rng([namespace, seed, 3, i])))
    return np.stack(out) if out else np.zeros((0, SIZE, SIZE, 3), np.uint8)
