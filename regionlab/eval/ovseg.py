"""mIoU of OVSeg labelling: on a folder of images + index-PNG labels, and on ShapesWorld.

Label convention (the same as ``regionlab label`` maps): 0 = unlabelled / background, k = the
k-th class of the class list (1-based), ``ignore_index`` (255) = not evaluated. Predicting a
class on a ground-truth-0 pixel is a false positive of that class, unless ``ignore_zero``
leaves those pixels out; leaving a class pixel unlabelled is a false negative.
``label_offset`` is added to ground-truth values (after the ignore test), for label files
whose first class is 0.

The standard benchmarks all need ``ignore_zero`` (their label PNGs use 0 for pixels outside
the class list, and the published numbers leave them out): VOC-20 (``voc20``: the 20 VOC
classes, 0 = background, 255 = object boundaries; "VOC" in OVSeg's table has no background
class), ADE-150 (``ade150``: ADEChallengeData2016, 0 = "other"), Pascal-Context-59
(``context59``: the 59-class label PNGs, 0 = background). Their class lists ship as data files
in ``regionlab/eval/classes/`` (one name per line, line k = label value k; VOC and Context
names written as words, e.g. "potted plant" for "pottedplant").

mIoU = mean over classes 1..K of TP / (TP + FP + FN) accumulated over the whole dataset;
classes absent from both ground truth and predictions are left out (NaN).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..tasks.ovseg import LabelOptions, label
from ..tasks.vocabularies import resolve_vocab
from .harness import EvalTask, Unit, markdown_table, pct, run_eval

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


DATASETS = {  # --classes name -> (the papers' column name, class file)
    "ade150": ("ADE-150", "ade150.txt"),
    "context59": ("PC-59", "context59.txt"),
    "voc20": ("VOC-20", "voc20.txt"),
}


def dataset_classes(name: str) -> list[str]:
    """The class list of a standard benchmark (``ade150``, ``context59``, ``voc20``), from the
    package data files; line k is label value k."""
    from importlib.resources import files

    if name not in DATASETS:
        raise InputError(f"unknown class list {name!r}; built in: {', '.join(DATASETS)}")
    text = (files("regionlab.eval") / "classes" / DATASETS[name][1]).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def resolve_classes(spec) -> list[str]:
    """A built-in benchmark list (:data:`DATASETS`), else anything ``resolve_vocab`` takes."""
    if isinstance(spec, str) and spec.strip().lower() in DATASETS:
        return dataset_classes(spec.strip().lower())
    return resolve_vocab(spec)


def image_files(images_dir, labels_dir) -> list[Path]:
    """The images of ``images_dir`` (sorted), each with its ``labels_dir/<stem>.png``."""
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise InputError(f"not a folder: {images_dir if not images_dir.is_dir() else labels_dir}")
    files = sorted(f for f in images_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    stems = [f.stem for f in files]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise InputError(f"{images_dir} has several images named {dup[0]}.*: one label "
                         f"{dup[0]}.png cannot serve both")
    return files


def image_confusion(image_path: Path, label_path: Path, names: list[str], proposals: str,
                    opts: LabelOptions, clip, ignore_index: int = 255,
                    ignore_zero: bool = False, label_offset: int = 0) -> np.ndarray:
    """(K+1, K+1) confusion counts of one image labelled with ``names``."""
    gt_raw = read_label_png(label_path)
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
        pred = label(image_path, names, masks=masks, proposals="auto" if masks else proposals,
                     options=opts, clip=clip).label_map
    if pred.shape != gt.shape:  # load_image downscaled a huge image
        pred = np.asarray(Image.fromarray(pred).resize(gt.shape[::-1],
                                                       Image.Resampling.NEAREST))
    try:
        return confusion_matrix(pred, gt, len(names), valid)
    except InputError as exc:
        raise InputError(f"{label_path}: {exc}") from None


def evaluate_folder(images_dir, labels_dir, classes, proposals: str = "auto",
                    options: LabelOptions | None = None, ignore_index: int = 255,
                    ignore_zero: bool = False, label_offset: int = 0, limit: int | None = None,
                    clip=None, model: str | None = None) -> dict:
    """mIoU over ``images_dir/*`` with labels ``labels_dir/<stem>.png``.

    proposals: ``auto``/``sam``/``fallback`` (automatic), or ``gt`` (oracle: one mask per
    ground-truth class region, to measure classification alone). ``classes``: a list, or a
    name of :data:`DATASETS` or anything :func:`resolve_vocab` takes.
    """
    from ..models import load_clip

    names = resolve_classes(classes)
    files = image_files(images_dir, labels_dir)
    labels_dir = Path(labels_dir)
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
        conf += image_confusion(f, labels_dir / f"{f.stem}.png", names, proposals, opts, clip,
                                ignore_index, ignore_zero, label_offset)
    out = scores_from_confusion(conf, names)
    out.update({"images": len(files), "proposals": proposals, "fusion": opts.fusion,
                "crop": opts.crop, "ensemble": opts.ensemble, "model": clip.name,
                "seconds": round(time.perf_counter() - t0, 3)})
    return out


class LabelTask(EvalTask):
    """OVSeg-style mIoU over an image folder and a label folder (units = groups = images; a
    row keeps the image's confusion counts, sparse)."""

    name = "label"
    unit = "image"

    def __init__(self, images, labels, classes, proposals: str = "auto",
                 ignore_zero: bool | None = None, ignore_index: int = 255,
                 label_offset: int = 0, options: LabelOptions | None = None,
                 model: str | None = None):
        self.images, self.labels = Path(images), Path(labels)
        self.classes_spec = classes
        self.names = resolve_classes(classes)
        builtin = isinstance(classes, str) and classes.strip().lower() in DATASETS
        # the standard label files use 0 for pixels outside the list: left out by default
        self.ignore_zero = builtin if ignore_zero is None else bool(ignore_zero)
        if proposals not in ("auto", "sam", "fallback", "gt"):
            raise InputError(f"--proposals must be auto, sam, fallback or gt, got {proposals!r}")
        self.proposals, self.ignore_index = proposals, int(ignore_index)
        self.label_offset = int(label_offset)
        self.options = _options(options)
        self.model = model
        self._clip = None

    def spec(self) -> tuple[str, dict]:
        return "regionlab.eval.ovseg:LabelTask", {
            "images": str(self.images), "labels": str(self.labels),
            "classes": self.classes_spec, "proposals": self.proposals,
            "ignore_zero": self.ignore_zero, "ignore_index": self.ignore_index,
            "label_offset": self.label_offset, "options": self.options, "model": self.model}

    def config(self) -> dict:
        return {"task": self.name, "images": str(self.images.resolve()),
                "labels": str(self.labels.resolve()), "classes": self.names,
                "proposals": self.proposals, "ignore_zero": self.ignore_zero,
                "ignore_index": self.ignore_index, "label_offset": self.label_offset,
                "options": json.loads(json.dumps(dataclasses.asdict(self.options),
                                                 default=str)), "model": self.model}

    def units(self) -> list[Unit]:
        files = image_files(self.images, self.labels)
        missing = [f.name for f in files if not (self.labels / f"{f.stem}.png").is_file()]
        if missing:
            raise InputError(f"{len(missing)} images have no label PNG in {self.labels}, e.g. "
                             f"{missing[:3]}")
        self._files = {f.stem: f for f in files}
        return [Unit(f.stem, f.stem) for f in files]

    def setup(self) -> None:
        from ..models import load_clip

        if self._clip is None:
            self._clip = load_clip(self.model)

    def run_group(self, group: str, keys: list[str]) -> list[dict]:
        if not hasattr(self, "_files"):
            self.units()
        conf = image_confusion(self._files[group], self.labels / f"{group}.png", self.names,
                               self.proposals, self.options, self._clip, self.ignore_index,
                               self.ignore_zero, self.label_offset)
        gt, pred = np.nonzero(conf)
        return [{"key": group, "confusion": [[int(a), int(b), int(conf[a, b])]
                                             for a, b in zip(gt, pred)]}]

    def summarize(self, rows: list[dict]) -> dict:
        k = len(self.names)
        conf = np.zeros((k + 1, k + 1), np.int64)
        for r in rows:
            for a, b, c in r["confusion"]:
                conf[a, b] += c
        out = scores_from_confusion(conf, self.names)
        name = self.classes_spec if isinstance(self.classes_spec, str) else "list"
        out.update({"task": self.name, "classes": name, "n_classes": k, "images": len(rows),
                    "proposals": self.proposals, "ignore_zero": self.ignore_zero,
                    "fusion": self.options.fusion, "crop": self.options.crop,
                    "ensemble": self.options.ensemble,
                    "model": self._clip.name if self._clip is not None else self.model})
        return out

    def table(self, summary: dict) -> str:
        """OVSeg's table: one column per dataset (here this one), mIoU."""
        spec = str(self.classes_spec).strip().lower()
        column = DATASETS[spec][0] if spec in DATASETS else Path(str(self.classes_spec)).stem
        method = f"OVSeg recipe ({summary['model']}, {self.proposals} proposals)"
        return (markdown_table(["Method", f"{column} mIoU"], [[method, pct(summary["miou"])]])
                + f"\n\n{summary['images']} images, {summary['n_classes']} classes, "
                  f"{summary['classes_evaluated']} evaluated; label 0 "
                  f"{'left out' if self.ignore_zero else 'counted as unlabelled'}.\n")

    def write_extra(self, out_dir: Path, rows: list[dict], summary: dict) -> None:
        (out_dir / "per_class_iou.json").write_text(
            json.dumps(summary["per_class_iou"], indent=1) + "\n", encoding="utf-8")


def evaluate_labels(images, labels, classes, proposals: str = "auto",
                    ignore_zero: bool | None = None, label_offset: int = 0,
                    options: LabelOptions | None = None, model: str | None = None,
                    limit=None, seed=None, out_dir=None, progress: bool = False,
                    ray=None) -> dict:
    """:class:`LabelTask` under the shared conventions (subsets, resume, summary, table)."""
    task = LabelTask(images, labels, classes, proposals, ignore_zero, 255, label_offset,
                     options, model)
    return run_eval(task, out_dir=out_dir, limit=limit, seed=seed, progress=progress, ray=ray)


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
                             render_options=None, model: str | None = None,
                             renderer: str = "pil") -> dict[str, dict]:
    """:func:`evaluate_shapes` for several option sets on the same scenes; per scene, the
    proposals, crop embeddings and MaskInversion embeddings are computed once and shared.
    ``renderer``: ``pil`` (ours), ``cv`` or ``mpl`` (:mod:`regionlab.shapes.renderers`)."""
    from ..models import load_clip
    from ..shapes.renderers import render
    from ..shapes.scenes import RenderOptions, generate_scenes, split_seed
    from ..shapes.vocab import CLASSES

    clip = clip or load_clip(model)
    opts = {name: _options(o) for name, o in variants.items()}
    ro = render_options or RenderOptions()
    scenes = (generate_scenes(split, n, seed, ro) if renderer == "pil" else
              [render(renderer, split_seed(split, i, seed), ro) for i in range(n)])
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
                  "renderer": renderer,
                  "mean_proposals": round(n_props / max(n, 1), 2), "fusion": o.fusion,
                  "crop": o.crop, "square": o.square, "ensemble": o.ensemble,
                  "min_score": o.min_score, "model": clip.name, "seconds_all_variants": seconds,
                  "timings_s": {k2: round(v, 3) for k2, v in timings[name].items()}})
        out[name] = r
    return out
