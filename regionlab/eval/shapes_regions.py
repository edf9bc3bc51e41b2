"""ShapesWorld quality of the bundled CLIP and of region embeddings (held-out scenes).

Metrics:
- ``zero_shot``: whole-image 30-way accuracy on single-object scenes ("a photo of a {}.");
- ``zero_shot_shifted``: the same on scenes rendered differently (other image sizes,
  backgrounds, object scales, hard edges);
- ``masked_crop``: OVSeg masked crops of objects of multi-object scenes;
- ``legrad_dice``: soft Dice between the min-max LeGrad map of the true class prompt and the
  object mask, with two references: a uniform map and the map of all objects;
- ``map_top1``: how often the true class's LeGrad map matches the object mask best among the
  maps of all 30 classes (class-specific maps, which MaskInversion needs to classify);
- ``region_acc``: Acc@1 of each region-embedding method on every object of multi-object scenes.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..explain.legrad import legrad_maps, resize_maps
from ..region.baselines import METHODS, region_embeddings
from ..shapes.scenes import RenderOptions, generate_scenes
from ..shapes.vocab import CLASSES
from ..tasks.retrieval import class_text_embeddings

SHIFTED = [
    RenderOptions(size=128, min_objects=1, max_objects=1),
    RenderOptions(size=40, min_objects=1, max_objects=1),
    RenderOptions(min_objects=1, max_objects=1, backgrounds=("noise",), antialias=1),
    RenderOptions(min_objects=1, max_objects=1, scale=(0.25, 0.45)),
    RenderOptions(size=96, min_objects=1, max_objects=1, scale=(0.06, 0.12), colour_jitter=1.5),
]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Soft Dice coefficient (METHODS.md smoothing) between a map in [0, 1] and a mask."""
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float((2 * (a * b).sum() + 1) / (a.sum() + b.sum() + 1))


def _acc(clip, images, labels, text) -> float:
    emb = torch.nn.functional.normalize(clip.encode_images(images), dim=-1)
    pred = (emb @ text.T).argmax(-1).tolist()
    return float(np.mean([CLASSES[p] == lab for p, lab in zip(pred, labels)]))


def classify(clip, images, templates: str = "single") -> np.ndarray:
    """Zero-shot ShapesWorld class index of each image by ``clip`` (argmax cosine)."""
    text = class_text_embeddings(clip, list(CLASSES), templates)
    emb = torch.nn.functional.normalize(clip.encode_images(list(images)), dim=-1)
    return (emb.to(text.device) @ text.T).argmax(-1).cpu().numpy()


def zero_shot(clip, n: int = 300, split: str = "test", seed: int = 0, templates="single",
              first: int = 0) -> dict:
    text = class_text_embeddings(clip, list(CLASSES), templates)
    single = generate_scenes(split, n, seed, RenderOptions(min_objects=1, max_objects=1), first)
    out = {"zero_shot": _acc(clip, [s.image for s in single], [s.objects[0].label for s in single],
                             text)}
    per = []
    for k, opt in enumerate(SHIFTED):
        sc = generate_scenes(split, n // len(SHIFTED) + 1, seed + 100 + k, opt, first)
        per.append(_acc(clip, [s.image for s in sc], [s.objects[0].label for s in sc], text))
    out["zero_shot_shifted"] = float(np.mean(per))
    out["zero_shot_shifted_per_setting"] = per
    return out


def zero_shot_on(clip, scenes: list, templates: str = "single") -> float:
    """Whole-image accuracy on single-object ``scenes`` (any renderer)."""
    text = class_text_embeddings(clip, list(CLASSES), templates)
    return _acc(clip, [s.image for s in scenes], [s.objects[0].label for s in scenes], text)


def other_renderer_scenes(n: int, split: str = "test", seed: int = 0, first: int = 0,
              objects: tuple[int, int] = (2, 4), renderer: str = "cv") -> list:
    """``n`` scenes of another renderer than ours (``cv``: OpenCV, which the CLIP trains on
    from stage 11; ``mpl``: matplotlib, never trained or tuned on), with ``objects``
    (inclusive range) objects each; scenes where fewer objects could be placed are skipped."""
    from ..shapes.renderers import render
    from ..shapes.scenes import SPLITS

    out, i = [], first
    while len(out) < n:
        s = render(renderer, (SPLITS[split], seed + 2000, i), n_objects=objects)
        if len(s.objects) >= objects[0]:
            out.append(s)
        i += 1
    return out


def multi_scenes(n: int, split: str = "test", seed: int = 0, first: int = 0) -> list:
    return generate_scenes(split, n, seed + 1000, RenderOptions(min_objects=2, max_objects=4),
                           first)


def masked_crops(clip, sc: list, templates="single") -> dict:
    text = class_text_embeddings(clip, list(CLASSES), templates)
    embs, labels = [], []
    for s in sc:
        masks = np.stack([o.mask for o in s.objects])
        embs.append(region_embeddings(clip, s.image, masks, "masked-crop"))
        labels += [o.label for o in s.objects]
    e = torch.nn.functional.normalize(torch.cat(embs), dim=-1)
    pred = (e @ text.T).argmax(-1).tolist()
    return {"masked_crop": float(np.mean([CLASSES[p] == lab for p, lab in zip(pred, labels)])),
            "n_masks": len(labels)}


def legrad_localisation(clip, sc: list, resolution: int | None = None) -> dict:
    """Dice of the true class's map per object (with uniform and all-objects references) and
    ``map_top1``: how often the true class's map matches the mask best among all 30 classes."""
    text = class_text_embeddings(clip, list(CLASSES), "single")
    d_true, d_unif, d_all, top1 = [], [], [], []
    for s in sc:
        maps = resize_maps(legrad_maps(clip, s.image, text, resolution=resolution).maps,
                           s.image.shape[:2])
        union = np.any([o.mask for o in s.objects], axis=0)
        for o in s.objects:
            per_class = [dice(m, o.mask) for m in maps]
            c = CLASSES.index(o.label)
            d_true.append(per_class[c])
            top1.append(int(np.argmax(per_class)) == c)
            d_unif.append(dice(np.ones_like(maps[0]), o.mask))
            d_all.append(dice(union, o.mask))
    return {"legrad_dice": float(np.mean(d_true)), "uniform_dice": float(np.mean(d_unif)),
            "map_top1": float(np.mean(top1)),
            "all_objects_dice": float(np.mean(d_all)), "n_masks": len(d_true)}


def region_accuracy(clip, sc: list, methods=METHODS, templates: str = "single",
                    mi_options: dict | None = None) -> dict:
    """Acc@1 per method over every object of the scenes, with timings."""
    text = class_text_embeddings(clip, list(CLASSES), templates)
    out = {}
    for method in methods:
        t0 = time.perf_counter()
        correct, total = 0, 0
        for s in sc:
            masks = np.stack([o.mask for o in s.objects])
            opts = mi_options or {} if method == "maskinversion" else {}
            e = region_embeddings(clip, s.image, masks, method, **opts)
            pred = (torch.nn.functional.normalize(e, dim=-1) @ text.T).argmax(-1).tolist()
            correct += sum(CLASSES[p] == o.label for p, o in zip(pred, s.objects))
            total += len(s.objects)
        out[method] = {"acc1": correct / total, "n_masks": total,
                       "seconds": round(time.perf_counter() - t0, 2)}
    return out
