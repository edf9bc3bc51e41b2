"""COCO instance files (``instances_*.json``): checked reading, masks through pycocotools.

Accepted masks (``segmentation``): polygons (``[[x0, y0, x1, y1, ...], ...]``), uncompressed
RLE (``{"size": [h, w], "counts": [ints]}``, as other tools and COCO's crowd regions write them)
and compressed RLE (``{"size": [h, w], "counts": "..."}``). Every entry is checked when the
file is read; a malformed one is an :class:`~regionlab.eval.harness.AnnotationError` naming the
file and the entry (``annotations[12] (id 900100)``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .harness import AnnotationError


def _mask_api():
    try:
        from pycocotools import mask
    except ImportError as exc:  # a dependency; say so rather than crash with an ImportError
        raise InputError("reading COCO masks needs pycocotools: pip install pycocotools") from exc
    return mask


@dataclass
class CocoFile:
    path: Path
    images: dict[int, dict]  # id -> {"id", "file_name", "height", "width", "_entry"}
    annotations: list[dict]  # in file order, each with "_entry" (its name in errors)
    categories: list[dict]  # in file order: {"id", "name"}

    def category_names(self) -> list[str]:
        return [c["name"] for c in self.categories]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def check_segmentation(segm, height: int, width: int) -> str:
    """The kind of a ``segmentation`` (polygon, rle, compressed-rle); ValueError if malformed."""
    if isinstance(segm, list):
        if not segm:
            raise ValueError("'segmentation' is an empty list of polygons")
        for k, poly in enumerate(segm):
            if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                    or not all(_is_num(v) for v in poly)):
                raise ValueError(f"segmentation polygon {k} is not a list of at least 3 (x, y) "
                                 f"number pairs")
        return "polygon"
    if isinstance(segm, dict):
        size, counts = segm.get("size"), segm.get("counts")
        if (not isinstance(size, list) or len(size) != 2 or not all(_is_int(v) for v in size)):
            raise ValueError(f"RLE 'size' must be [height, width], got {size!r}"[:120])
        if list(size) != [height, width]:
            raise ValueError(f"RLE size {size} differs from its image's [height, width] "
                             f"{[height, width]}")
        if isinstance(counts, list):
            if not all(_is_int(v) and v >= 0 for v in counts):
                raise ValueError("uncompressed RLE 'counts' must be non-negative integers")
            if sum(counts) != height * width:
                raise ValueError(f"uncompressed RLE counts sum to {sum(counts)}, not "
                                 f"height x width = {height * width}")
            return "rle"
        if isinstance(counts, str) and counts:
            return "compressed-rle"
        raise ValueError("RLE 'counts' must be a list of integers or a non-empty string")
    raise ValueError(f"'segmentation' must be polygons or an RLE dict, got "
                     f"{type(segm).__name__}")


def decode_segmentation(segm, height: int, width: int) -> np.ndarray:
    """A boolean (height, width) mask from any COCO segmentation (pycocotools)."""
    mu = _mask_api()
    if isinstance(segm, list):
        rle = mu.merge(mu.frPyObjects(segm, height, width))
    elif isinstance(segm.get("counts"), list):
        rle = mu.frPyObjects(segm, height, width)
    else:
        rle = segm
    return mu.decode(rle).astype(bool)


def encode_mask(mask: np.ndarray, compressed: bool = True) -> dict:
    """A boolean mask as COCO RLE: compressed (``counts`` a string) or uncompressed (a list of
    run lengths, column-major, starting with a run of zeros)."""
    m = np.asarray(mask, bool)
    if compressed:
        rle = _mask_api().encode(np.asfortranarray(m.astype(np.uint8)))
        return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": rle["counts"].decode()}
    flat = m.ravel(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": runs}


def read_coco(path) -> CocoFile:
    """Read and check an instances file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, "the file", f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise AnnotationError(path, "the file", "not a JSON object with images, annotations "
                                                "and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise AnnotationError(path, "the file", f"no '{key}' list (a COCO instances file "
                                                    f"has images, annotations and categories)")
    categories, cat_ids = [], set()
    for i, c in enumerate(data["categories"]):
        entry = f"categories[{i}]"
        if not isinstance(c, dict) or not _is_int(c.get("id")):
            raise AnnotationError(path, entry, "no integer 'id'")
        if not isinstance(c.get("name"), str) or not c["name"].strip():
            raise AnnotationError(path, f"{entry} (id {c['id']})", "no 'name'")
        if c["id"] in cat_ids:
            raise AnnotationError(path, f"{entry} (id {c['id']})", "duplicate category id")
        cat_ids.add(c["id"])
        categories.append({"id": c["id"], "name": c["name"].strip()})
    images: dict[int, dict] = {}
    for i, im in enumerate(data["images"]):
        entry = f"images[{i}]"
        if not isinstance(im, dict) or not _is_int(im.get("id")):
            raise AnnotationError(path, entry, "no integer 'id'")
        entry += f" (id {im['id']})"
        if im["id"] in images:
            raise AnnotationError(path, entry, "duplicate image id")
        if not isinstance(im.get("file_name"), str) or not im["file_name"]:
            raise AnnotationError(path, entry, "no 'file_name'")
        for k in ("height", "width"):
            if not _is_int(im.get(k)) or im[k] < 1:
                raise AnnotationError(path, entry, f"'{k}' is not a positive integer")
        images[im["id"]] = {"id": im["id"], "file_name": im["file_name"],
                            "height": im["height"], "width": im["width"], "_entry": entry}
    anns, ann_ids = [], set()
    for i, a in enumerate(data["annotations"]):
        entry = f"annotations[{i}]"
        if not isinstance(a, dict) or not _is_int(a.get("id")):
            raise AnnotationError(path, entry, "no integer 'id'")
        entry += f" (id {a['id']})"
        if a["id"] in ann_ids:
            raise AnnotationError(path, entry, "duplicate annotation id")
        ann_ids.add(a["id"])
        if a.get("image_id") not in images:
            raise AnnotationError(path, entry, f"image_id {a.get('image_id')!r} is not in "
                                               f"'images'")
        if a.get("category_id") not in cat_ids:
            raise AnnotationError(path, entry, f"category_id {a.get('category_id')!r} is not "
                                               f"in 'categories'")
        if "segmentation" not in a:
            raise AnnotationError(path, entry, "no 'segmentation' (instance masks are needed)")
        im = images[a["image_id"]]
        try:
            kind = check_segmentation(a["segmentation"], im["height"], im["width"])
        except ValueError as exc:
            raise AnnotationError(path, entry, str(exc)) from None
        anns.append({"id": a["id"], "image_id": a["image_id"], "category_id": a["category_id"],
                     "segmentation": a["segmentation"], "iscrowd": int(bool(a.get("iscrowd"))),
                     "kind": kind, "_entry": entry})
    return CocoFile(path, images, anns, categories)
