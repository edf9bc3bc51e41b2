"""ShapesWorld splits written in the standard formats that ``regionlab eval`` reads.

- ``coco``: ``OUT/images/<split>_<seed>_<i>.png`` and ``OUT/instances.json`` (COCO instances:
  images, one annotation per object with its mask as RLE, compressed by default, ``bbox``
  ``[x, y, w, h]``, ``area``; the 30 ShapesWorld classes as categories 1..30, supercategory
  = the shape);
- ``semseg``: the same images, ``OUT/labels/<stem>.png`` (index PNG: 0 = background, k = the
  k-th ShapesWorld class, later objects on top) and ``OUT/classes.txt`` (line k = label k);
- ``reclip``: ``OUT/images/rec_<split>_<seed>_<i>.png`` and ``OUT/refs.jsonl`` in the ReCLIP
  JSONL format (one line per referred object: ``file_name``, ``image_id``, ``ann_id``,
  ``anns`` with every object's ``bbox``, ``sentences``), expressions from
  :func:`regionlab.shapes.expressions.generate_rec_items`.

Scene ``i`` of ``coco``/``semseg`` is ``generate_scenes(split, n, seed, RenderOptions(size,
min_objects, max_objects))[i]`` and item ``i`` of ``reclip`` is ``generate_rec_items(split, n,
seed, kinds, renderer=...)[i]``, so in-process benchmarks can score the same scenes.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from ..errors import InputError

FORMATS = ("coco", "reclip", "semseg")
MAX_SCENES = 100_000


def _xywh(box) -> list[int]:
    x0, y0, x1, y1 = (int(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _check(n: int, min_objects: int, max_objects: int) -> None:
    if not 1 <= n <= MAX_SCENES:
        raise InputError(f"--n must be in 1..{MAX_SCENES}, got {n}")
    if not 1 <= min_objects <= max_objects <= 4:
        raise InputError("need 1 <= min-objects <= max-objects <= 4")


def export_scenes(out_dir, fmt: str, n: int, split: str = "test", seed: int = 0,
                  size: int = 64, min_objects: int = 1, max_objects: int = 4,
                  compressed: bool = True) -> dict:
    """Write ``n`` scenes as ``coco`` or ``semseg`` (see the module docstring)."""
    from .. import viz
    from ..shapes.scenes import RenderOptions, generate_scenes
    from ..shapes.vocab import CLASSES
    from .coco import encode_mask
    from .ovseg import shapes_label_map

    if fmt not in ("coco", "semseg"):
        raise InputError(f"export_scenes writes coco or semseg, not {fmt!r}")
    _check(n, min_objects, max_objects)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    opts = RenderOptions(size=size, min_objects=min_objects, max_objects=max_objects)
    images, anns = [], []
    if fmt == "semseg":
        (out / "labels").mkdir(exist_ok=True)
        (out / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    for i, sc in enumerate(generate_scenes(split, n, seed, opts)):
        name = f"{split}_{seed}_{i:06d}"
        Image.fromarray(sc.image).save(out / "images" / f"{name}.png")
        if fmt == "semseg":
            viz.index_image(shapes_label_map(sc)).save(out / "labels" / f"{name}.png")
            continue
        h, w = sc.image.shape[:2]
        images.append({"id": i + 1, "file_name": f"{name}.png", "height": h, "width": w})
        for o in sc.objects:
            anns.append({"id": len(anns) + 1, "image_id": i + 1,
                         "category_id": CLASSES.index(o.label) + 1,
                         "segmentation": encode_mask(o.mask, compressed),
                         "area": int(o.mask.sum()), "bbox": _xywh(o.box), "iscrowd": 0})
    if fmt == "semseg":
        return {"format": fmt, "out": str(out), "images": n}
    data = {
        "info": {"description": f"ShapesWorld {split} split, seed {seed}, {n} scenes "
                                f"(regionlab shapes export)", "version": "1.0"},
        "licenses": [],
        "images": images, "annotations": anns,
        "categories": [{"id": k + 1, "name": c, "supercategory": c.split()[-1]}
                       for k, c in enumerate(CLASSES)],
    }
    (out / "instances.json").write_text(json.dumps(data), encoding="utf-8")
    return {"format": fmt, "out": str(out), "images": n, "annotations": len(anns)}


def export_reclip(out_dir, n: int, split: str = "test", seed: int = 0,
                  kinds: tuple[str, ...] | None = None, renderer: str = "pil") -> dict:
    """Write ``n`` referring-expression scenes as a ReCLIP JSONL file (module docstring)."""
    from ..shapes.expressions import ALL_KINDS, KINDS, generate_rec_items

    _check(n, 1, 4)
    kinds = tuple(kinds or KINDS)
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad:
        raise InputError(f"unknown expression kinds {bad}; choose from {', '.join(ALL_KINDS)}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    items = generate_rec_items(split, n, seed, kinds=kinds, renderer=renderer)
    lines, n_sent = [], 0
    from ..shapes.vocab import CLASSES

    for it in items:
        image_id = it.index + 1
        name = f"rec_{split}_{seed}_{it.index:06d}.png"
        Image.fromarray(it.scene.image).save(out / "images" / name)
        anns = [{"id": image_id * 100 + k, "bbox": _xywh(o.box),
                 "category_id": CLASSES.index(o.label) + 1}
                for k, o in enumerate(it.scene.objects)]
        by_target: dict[int, list[str]] = {}
        for e in it.expressions:
            by_target.setdefault(e.target, []).append(e.text)
        for target, texts in by_target.items():
            lines.append({"file_name": name, "image_id": image_id,
                          "ann_id": image_id * 100 + target, "anns": anns, "split": split,
                          "sentences": [{"raw": t, "sent": t} for t in texts]})
            n_sent += len(texts)
    with open(out / "refs.jsonl", "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line) + "\n")
    return {"format": "reclip", "out": str(out), "images": len(items), "refs": len(lines),
            "sentences": n_sent, "kinds": list(kinds), "renderer": renderer}


def export(out_dir, fmt: str, n: int, split: str = "test", seed: int = 0, **kw) -> dict:
    """One entry point for ``regionlab shapes export``."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "reclip":
        return export_reclip(out_dir, n, split, seed, kw.get("kinds"),
                             kw.get("renderer", "pil"))
    return export_scenes(out_dir, fmt, n, split, seed, kw.get("size", 64),
                         kw.get("min_objects", 1), kw.get("max_objects", 4),
                         kw.get("compressed", True))
