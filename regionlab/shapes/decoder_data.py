"""Training data of the ShapesWorld decoders (captioner, generator): images of ONE object with
their class, embedded by the bundled CLIP.

Views of an object (all deterministic by seed):
- ``single``: a single-object scene, object radius from 6% (``min_scale``) to 20-45% of the
  image, rendered at
  48-128 px and resized to the CLIP's 64 px (scale augmentation);
- ``masked``: the OVSeg masked crop of an object of a multi-object scene (tight box, outside
  pixels = CLIP mean colour);
- ``context``: a square crop around an object of a multi-object scene, 1.3-2.5 x its box;
- MaskInversion embeddings of objects of multi-object scenes (:func:`maskinversion_views`;
  embeddings, not images), what the app captions and draws from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .scenes import RenderOptions, render_scene
from .train_clip import SIZE, context_crop, masked_crop
from .vocab import CLASSES

SEED_NAMESPACE = 5  # scenes (5, seed, i): disjoint from CLIP training (3, ...) and val/test


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


def maskinversion_views(clip, n: int, seed: int = 0, namespace: int = SEED_NAMESPACE
                        ) -> tuple[torch.Tensor, np.ndarray]:
    """(unit MaskInversion embeddings (n, D), class indices) of objects of multi-object scenes
    (scenes ``(namespace, seed, 2, i)``), with the model's default MaskInversion settings."""
    from ..region.maskinversion import invert

    out, labels, i = [], [], 0
    while len(labels) < n:
        scene = render_scene((namespace, seed, 2, i), RenderOptions(min_objects=2))
        i += 1
        objs = [o for o in scene.objects if o.area >= 12][: n - len(labels)]
        if not objs:
            continue
        res = invert(clip, scene.image, np.stack([o.mask for o in objs]))
        out.append(torch.nn.functional.normalize(res.embeddings.float(), dim=-1))
        labels += [CLASSES.index(o.label) for o in objs]
    return torch.cat(out), np.array(labels)


def embed(clip, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    """Unit CLIP embeddings (N, D) of uint8 images."""
    out = [clip.encode_images(list(images[i : i + batch])) for i in range(0, len(images), batch)]
    return torch.nn.functional.normalize(torch.cat(out), dim=-1)


def file_digest(path: str | Path) -> str:
    """sha256 of a file (which CLIP weights the decoder was trained against)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def classify(clip, images, templates: str = "single") -> np.ndarray:
    """Zero-shot ShapesWorld class index of each image by ``clip`` (argmax cosine)."""
    from ..tasks.retrieval import class_text_embeddings

    text = class_text_embeddings(clip, list(CLASSES), templates)
    emb = torch.nn.functional.normalize(clip.encode_images(list(images)), dim=-1)
    return (emb.to(text.device) @ text.T).argmax(-1).cpu().numpy()
