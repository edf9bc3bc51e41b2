"""mIoU of OVSeg labelling: on a folder of images + index-PNG labels, and on ShapesWorld.

Label convention (the same as ``regionlab label`` maps): 0 = unlabelled / background, k = the
k-th class of the class list (1-based), ``ignore_index`` (255) = not evaluated. Predicting a
class on a ground-truth-0 pixel is a false positive of that class (set ``ignore_zero`` to skip
those pixels, e.g. for ADE-style exports where 0 means "other"); leaving a class pixel
unlabelled is a false negative. ``label_offset`` is added to ground-truth values (after the
ignore test): a VOC export whose 0 is "background" uses classes "background, aeroplane, ..."
and ``label_offset=1``.

mIoU = mean over classes 1..K of TP / (TP + FP + FN) accumulated over the whole dataset;
classes absent from both ground truth and predictions are left out (NaN).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..tasks.ovseg import LabelOptions, label
from ..tasks.vocabularies import resolve_vocab

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int,
                     valid: np.ndarray | None = None) -> np.ndarray:
    """(K+1, K+1) counts, rows = ground truth, columns = prediction, index 0 = unlabelled."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    gt = np.asarray(gt).ravel().astype(np.int64)
    if pred.shape != gt.shape:
        raise InputError(f"prediction has {pred.size} pixels, ground truth {gt.size}")
    keep = np.ones_like(gt, bool) if valid is None else np.asarray(valid).ravel()
    n = num_classes + 1
    bad = keep & ((gt < 0) | (gt >= n) | (pred < 0) | (pred >= n))
    if bad.any():
        raise InputError(f"label values must lie in 0..{num_classes} (or be ignored); found "
                         f"{sorted(set(gt[bad].tolist()) | set(pred[bad].tolist()))[:5]}")
    return np.bincount(gt[keep] * n + pred[keep], minlength=n * n).reshape(n, n)


def _class_iou(conf: np.ndarray) -> np.ndarray:
    """IoU of classes 1..K (NaN where a class is in neither ground truth nor prediction)."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)[1:]


def _mean_iou(iou: np.ndarray) -> float:
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def scores_from_confusion(conf: np.ndarray, classes: list[str]) -> dict:
    """mIoU, per-class IoU, object pixel accuracy and the background false-positive rate.

    ``miou_object_pixels``: the mIoU over ground-truth class pixels only (background pixels
    left out), which separates how well regions are classified from how background is handled
    (OVSeg has no background class: a proposal on background is labelled with some class)."""
    tp = np.diag(conf).astype(np.float64)
    iou = _class_iou(conf)
    obj_conf = conf.copy()
    obj_conf[0] = 0  # ground-truth background rows left out
    obj = conf[1:].sum()
    bg = conf[0].sum()
    return {
        "miou": _mean_iou(iou),
        "miou_object_pixels": _mean_iou(_class_iou(obj_conf)),
        "pixel_accuracy": float(tp[1:].sum() / obj) if obj else float("nan"),
        "background_false_positive_rate": float(conf[0, 1:].sum() / bg) if bg else float("nan"),
        "classes_evaluated": int(np.isfinite(iou).sum()),
        "per_class_iou": {c: (None if np.isnan(v) else round(float(v), 4))
                          for c, v in zip(classes, iou)},
    }


def _options(options: LabelOptions | None) -> LabelOptions:
    opts = options or LabelOptions(fusion="eval")
    return dataclasses.replace(opts, render=False)


def read_label_png(path: Path) -> np.ndarray:
    img = Image.open(path)
    if img.mode not in ("P", "L", "I;16", "I;16B", "I;16L", "I"):
        raise InputError(f"label file {path} is mode {img.mode}: expected an index PNG (P, L or "
                         f"16-bit)")
    return np.asarray(img).astype(np.int64)


def evaluate_folder(images_dir, labels_dir, classes, proposals: str = "auto",
                    options: LabelOptions | None = None, ignore_index: int = 255,
                    ignore_zero: bool = False, label_offset: int = 0, limit: int | None = None,
                    clip=None, model: str | None = None) -> dict:
    """mIoU over ``images_dir/*`` with labels ``labels_dir/<stem>.png``.

    proposals: ``auto``/``sam``/``fallback`` (automatic), or ``gt`` (oracle: one mask per
    ground-truth class region, to measure classification alone).
    """
    from ..models import load_clip

    names = resolve_vocab(classes)
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise InputError(f"not a folder: {images_dir if not images_dir.is_dir() else labels_dir}")
    files = sorted(f for f in images_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if limit:
        files = files[: int(limit)]
    missing = [f.name for f in files if not (labels_dir / f"{f.stem}.png").is_file()]
    if missing:
        raise InputError(f"{len(missing)} images have no label PNG in {labels_dir}, e.g. "
                         f"{missing[:3]}")
    if not files:
        raise InputError(f"no images in {images_dir}")
    clip = clip or load_clip(model)
    opts = _options(options)
    k = len(names)
    conf = np.zeros((k + 1, k + 1), np.int64)
    t0 = time.perf_counter()
    for f in files:
        gt_raw = read_label_png(labels_dir / f"{f.stem}.png")
        valid = gt_raw != ignore_index
        if ignore_zero:
            valid &= gt_raw != 0
        gt = np.where(valid, gt_raw + label_offset, 0)
        masks = None
        if proposals == "gt":
            masks = [gt == c for c in np.unique(gt[valid]) if c > 0]
            masks = [m for m in masks if m.any()]
        if proposals == "gt" and not masks:
            pred = np.zeros_like(gt)
        else:
            pred = label(f, names, masks=masks, proposals="auto" if masks else proposals,
                         options=opts, clip=clip).label_map
        if pred.shape != gt.shape:  # load_image downscaled a huge image
            pred = np.asarray(Image.fromarray(pred).resize(gt.shape[::-1],
                                                           Image.Resampling.NEAREST))
        conf += confusion_matrix(pred, gt, k, valid)
    out = scores_from_confusion(conf, names)
    out.update({"images": len(files), "proposals": proposals, "fusion": opts.fusion,
                "crop": opts.crop, "ensemble": opts.ensemble, "model": clip.name,
                "seconds": round(time.perf_counter() - t0, 3)})
    return out


def shapes_label_map(scene) -> np.ndarray:
    """Ground-truth index map of a ShapesWorld scene (classes = the 30 ShapesWorld classes)."""
    from ..shapes.vocab import CLASSES

    gt = np.zeros(scene.image.shape[:2], np.int64)
    for o in scene.objects:  # drawing order: later objects on top
        gt[o.mask] = CLASSES.index(o.label) + 1
    return gt


def evaluate_shapes(clip=None, n: int = 100, split: str = "test", seed: int = 0,
                    proposals: str = "gt", options: LabelOptions | None = None,
                    render_options=None, model: str | None = None) -> dict:
    """mIoU on ``n`` held-out ShapesWorld scenes (30 classes; background = unlabelled).

    proposals: ``gt`` (the objects' true masks) or an automatic source (``auto``, ``sam``,
    ``fallback``).
    """
    return evaluate_shapes_variants({"": options or LabelOptions(fusion="eval")}, clip, n, split,
                                    seed, proposals, render_options, model)[""]


def evaluate_shapes_variants(variants: dict[str, LabelOptions], clip=None, n: int = 100,
                             split: str = "test", seed: int = 0, proposals: str = "gt",
                             render_options=None, model: str | None = None) -> dict[str, dict]:
    """:func:`evaluate_shapes` for several option sets on the same scenes; per scene, the
    proposals, crop embeddings and MaskInversion embeddings are computed once and shared."""
    from ..models import load_clip
    from ..shapes.scenes import RenderOptions, generate_scenes
    from ..shapes.vocab import CLASSES

    clip = clip or load_clip(model)
    opts = {name: _options(o) for name, o in variants.items()}
    scenes = generate_scenes(split, n, seed, render_options or RenderOptions())
    k = len(CLASSES)
    conf = {name: np.zeros((k + 1, k + 1), np.int64) for name in opts}
    timings: dict[str, dict[str, float]] = {name: {} for name in opts}
    n_props = 0
    t0 = time.perf_counter()
    for sc in scenes:
        gt = shapes_label_map(sc)
        masks = [o.mask for o in sc.objects] if proposals == "gt" else None
        cache: dict = {}
        for name, o in opts.items():
            res = label(sc.image, list(CLASSES), masks=masks,
                        proposals="auto" if proposals == "gt" else proposals, options=o,
                        clip=clip, cache=cache)
            for key, v in res.timings.items():
                timings[name][key] = timings[name].get(key, 0.0) + v
            conf[name] += confusion_matrix(res.label_map, gt, k)
        n_props += len(res.regions)
    seconds = round(time.perf_counter() - t0, 3)
    out = {}
    for name, o in opts.items():
        r = scores_from_confusion(conf[name], list(CLASSES))
        r.update({"scenes": n, "split": split, "seed": seed, "proposals": proposals,
                  "mean_proposals": round(n_props / max(n, 1), 2), "fusion": o.fusion,
                  "crop": o.crop, "square": o.square, "ensemble": o.ensemble,
                  "min_score": o.min_score, "model": clip.name, "seconds_all_variants": seconds,
                  "timings_s": {k2: round(v, 3) for k2, v in timings[name].items()}})
        out[name] = r
    return out
