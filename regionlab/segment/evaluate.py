"""Quality of interactive segmentation and proposals on ShapesWorld scenes (held-out split).

Protocols:
- click: one foreground click per object, at a random pixel of its mask at least
  ``margin`` px from the mask's edge (``margin=0``: any pixel of the mask, anti-aliased edge
  pixels included; ``"centre"``: the most interior pixel); IoU of the best mask with the
  ground-truth mask.
- box: the object's tight ground-truth box as the only prompt.
- proposals: recall = share of objects matched by some proposal with IoU >= 0.5.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..shapes.scenes import RenderOptions, Scene, generate_scenes


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def click_point(mask: np.ndarray, rng: np.random.Generator, margin: float | str = 1.5):
    """A click on ``mask`` (see the module docstring for ``margin``)."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    if margin == "centre":
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        return int(x), int(y)
    ok = dist > float(margin) if float(margin) > 0 else mask
    ys, xs = np.nonzero(ok if ok.any() else mask)
    k = int(rng.integers(len(ys)))
    return int(xs[k]), int(ys[k])


@dataclass
class SegmentationQuality:
    prompt: str
    objects: int
    mean_iou: float
    median_iou: float
    share_iou_at_least_0_9: float
    seconds_per_object: float


@dataclass
class ProposalQuality:
    images: int
    objects: int
    recall_at_0_5: float
    mean_best_iou: float
    mean_proposals: float
    seconds_per_image: float


def held_out_scenes(n: int, seed: int = 0, size: int = 64, renderer: str = "pil",
                    split: str = "test") -> list[Scene]:
    """``n`` scenes of a held-out ShapesWorld split (disjoint from the training seeds), drawn by
    ``renderer`` (:mod:`regionlab.shapes.renderers`)."""
    if renderer == "pil":
        return generate_scenes(split, n, seed, RenderOptions(size=size))
    from ..shapes.renderers import render
    from ..shapes.scenes import SPLITS

    return [render(renderer, (SPLITS[split], seed, i), RenderOptions(size=size))
            for i in range(n)]


def evaluate_prompts(scenes: list[Scene], segmenter: str = "classical",
                     prompt: str = "click", margin: float | str = 1.5,
                     seed: int = 0) -> SegmentationQuality:
    """Mean IoU of one-prompt segmentation (``prompt``: "click" or "box") over all objects."""
    from .interactive import make_segmenter

    rng = np.random.default_rng(seed)
    ious, t0 = [], time.perf_counter()
    for scene in scenes:
        seg = make_segmenter(segmenter)
        seg.set_image(scene.image)
        for obj in scene.objects:
            if prompt == "click":
                res = seg.predict(points=[click_point(obj.mask, rng, margin)], multimask=True)
            elif prompt == "box":
                res = seg.predict(box=obj.box, multimask=True)
            else:
                raise ValueError(f"unknown prompt {prompt!r}; expected click or box")
            ious.append(iou(res.mask, obj.mask))
    n = max(1, len(ious))
    label = prompt if prompt == "box" else f"click (margin {margin})"
    return SegmentationQuality(label, len(ious), float(np.mean(ious)), float(np.median(ious)),
                               float(np.mean(np.asarray(ious) >= 0.9)),
                               (time.perf_counter() - t0) / n)


def evaluate_proposals(scenes: list[Scene], method: str = "classical",
                       **options) -> ProposalQuality:
    """Recall at IoU 0.5 of :func:`generate_proposals` over all objects of ``scenes``."""
    from .proposals import generate_proposals

    best, counts, t0 = [], [], time.perf_counter()
    for scene in scenes:
        props = generate_proposals(scene.image, method, **options)
        counts.append(len(props))
        for obj in scene.objects:
            best.append(max((iou(p.mask, obj.mask) for p in props), default=0.0))
    best_a = np.asarray(best)
    return ProposalQuality(len(scenes), len(best), float(np.mean(best_a >= 0.5)),
                           float(best_a.mean()), float(np.mean(counts)),
                           (time.perf_counter() - t0) / max(1, len(scenes)))


def as_dict(result) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(result).items()}
