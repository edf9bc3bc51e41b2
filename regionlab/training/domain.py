"""Domain randomisation of the CLIP's training scenes (issue 27 item 1).

Two levers, both drawn from their own random stream so that recipes without them replay
bit-identically:
- ``mixed_scene``: a share of the scenes comes from the second renderer
  (:mod:`regionlab.shapes.render_cv`: other drawing code, outlines, lighting ramps, textured
  backgrounds, JPEG), with 1-8 objects for multi-object scenes;
- ``photometric``: camera-like corruption of a rendered scene (blur, sensor noise, contrast,
  brightness and gamma, a colour cast, JPEG at a random quality), applied before any crop, so
  masks stay exact;
- ``box_crop``: the view that grounding (ReCLIP's IPS "crop") and the app actually show the
  CLIP: an object's box cut out of a scene rendered at 64-448 px, neighbours and background
  included, stretched to the model's input. The object fills the frame, which no other
  training view does (singles cover at most 45% of theirs; crops are masked or padded).

The shift set the models are reported on comes from a third renderer
(:mod:`regionlab.shapes.render_mpl`) that nothing here draws from.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..shapes.render_cv import render_scene_cv
from ..shapes.scenes import RenderOptions, Scene, render_scene
from ..shapes.views import fit
from ..shapes.vocab import CLASSES


def mixed_scene(key: tuple, options: RenderOptions, single: bool, use_cv: bool) -> Scene:
    """The scene ``key`` from the first renderer (``options``) or, if ``use_cv``, from the
    second at the same size and object scale (multi-object scenes: 2-8 objects)."""
    if not use_cv:
        return render_scene(key, options)
    return render_scene_cv(key, options.size, n_objects=(1, 1) if single else (2, 8),
                           scale=options.scale if single else (0.06, 0.2))


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera-like corruption of an RGB uint8 image; each effect is drawn independently."""
    img = image.astype(np.float32)
    if rng.uniform() < 0.4:
        sigma = rng.uniform(0.3, 1.2)
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if rng.uniform() < 0.6:  # contrast and brightness around the mean, then gamma
        mean = img.mean()
        img = (img - mean) * rng.uniform(0.7, 1.25) + mean + rng.uniform(-25, 25)
        img = 255 * (np.clip(img, 0, 255) / 255) ** rng.uniform(0.75, 1.35)
    if rng.uniform() < 0.3:  # a mild colour cast (white balance)
        img = img * rng.uniform(0.9, 1.1, 3)[None, None]
    if rng.uniform() < 0.5:
        img = img + rng.normal(0, rng.uniform(2, 10), img.shape)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if rng.uniform() < 0.5:
        ok, buf = cv2.imencode(".jpg", out[..., ::-1],
                               [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 95))])
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out


BOX_CROP_SIZES = (64, 128, 192, 256, 448)


def box_crop(key: tuple, rng: np.random.Generator, use_cv: bool, augment: float,
             size: int) -> tuple[np.ndarray, int]:
    """(image, class index): one object's box, padded by 0-12% of its side per edge (boxes
    of proposals are rarely exact), from a 2-4 object scene at a random resolution."""
    render_size = int(rng.choice(BOX_CROP_SIZES))
    opts = RenderOptions(size=render_size, min_objects=2, max_objects=4, scale=(0.08, 0.3),
                         antialias=2)
    scene = mixed_scene(key, opts, single=False, use_cv=use_cv)
    if rng.uniform() < augment:
        scene.image = photometric(scene.image, rng)
    ob = scene.objects[int(rng.integers(len(scene.objects)))]
    x0, y0, x1, y1 = ob.box
    w, h = x1 - x0, y1 - y0
    pad = rng.uniform(0, 0.12, 4) * np.array([w, h, w, h])
    a0, b0 = int(max(0, x0 - pad[0])), int(max(0, y0 - pad[1]))
    a1 = int(min(render_size, np.ceil(x1 + pad[2])))
    b1 = int(min(render_size, np.ceil(y1 + pad[3])))
    return fit(scene.image[b0:max(b1, b0 + 1), a0:max(a1, a0 + 1)], size), CLASSES.index(ob.label)
