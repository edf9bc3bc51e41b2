"""Training data of the ShapesWorld decoders (captioner, generator): the object views of
``regionlab.shapes.views`` embedded by the bundled CLIP, and MaskInversion embeddings of
objects of multi-object scenes (:func:`maskinversion_views`; embeddings, not images), what the
app captions and draws from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..shapes.scenes import RenderOptions, render_scene
from ..shapes.views import SEED_NAMESPACE
from ..shapes.vocab import CLASSES


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
