"""MaskInversion's region class-retrieval protocol on COCO instance files.

Every ground-truth instance mask (crowd regions left out) is embedded by each region method
(:data:`regionlab.region.baselines.METHODS`) and ranked among the class names with the prompt
templates (cosine with the class text embeddings, :mod:`regionlab.tasks.retrieval`); Acc@k =
fraction of instances whose true class ranks within the top k. Ties rank by class order, so
Acc@1 is exactly "argmax == true class".

The classes are the file's own category names (default), a built-in list (``coco``) or a
file; with a list, every category must be in it (matched case-insensitively).

Work is per image: all its instance masks are embedded in one call per method, whatever subset
is being evaluated, so an instance's result does not depend on ``--limit``, on resuming or on
how images are sharded. An empty mask is left out (``skipped_empty``); an instance whose image
file is missing counts as wrong (``skipped``), as in ``eval ground``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..region.baselines import METHODS
from .coco import decode_segmentation, read_coco
from .harness import AnnotationError, EvalTask, Unit, clean, markdown_table, pct

TOP_K = (1, 5)
DISPLAY = {"global": "CLIP (global)", "crop": "Crop", "masked-crop": "Masked crop",
           "blur": "Blur", "red-circle": "Red circle", "maskinversion": "MaskInversion"}


def parse_methods(spec) -> list[str]:
    methods = [m.strip() for m in (spec.split(",") if isinstance(spec, str) else spec)
               if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise InputError(f"unknown region method(s) {bad}; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def true_class_rank(scores: np.ndarray, gt: int) -> int:
    """1-based rank of class ``gt`` in ``scores`` (K,), ties broken by class order."""
    s = scores[gt]
    return int(1 + (scores > s).sum() + (scores[:gt] == s).sum())


class ClassifyTask(EvalTask):
    name = "classify"
    unit = "mask"

    def __init__(self, annotations, images, methods=METHODS, classes=None,
                 templates: str = "single", model: str | None = None, log=None):
        self.annotations, self.images = Path(annotations), Path(images)
        self.methods = parse_methods(methods)
        self.classes_spec = classes
        self.templates, self.model = templates, model
        self._log = log
        self._coco = None
        self._clip = None
        self._text = None

    # -- the file
    def _load(self):
        if self._coco is None:
            from ..tasks.vocabularies import resolve_vocab

            coco = read_coco(self.annotations)
            names = coco.category_names()
            if self.classes_spec in (None, "", "file"):
                classes = names
                lower = [n.lower() for n in names]
                dup = sorted({n for n in lower if lower.count(n) > 1})
                if dup:
                    raise AnnotationError(self.annotations, "categories",
                                          f"category names repeat: {dup[:5]}")
            else:
                classes = resolve_vocab(self.classes_spec)
            index = {c.lower(): k for k, c in enumerate(classes)}
            self._cat_class = {}
            self._cat_name = {c["id"]: c["name"] for c in coco.categories}
            for i, c in enumerate(coco.categories):
                if c["name"].lower() not in index:
                    raise AnnotationError(self.annotations, f"categories[{i}] (id {c['id']})",
                                          f"name {c['name']!r} is not in the class list "
                                          f"{self.classes_spec!r}")
                self._cat_class[c["id"]] = index[c["name"].lower()]
            self._coco, self.classes = coco, classes
            self._by_image: dict[int, list[dict]] = {}
            for a in coco.annotations:
                if not a["iscrowd"]:
                    self._by_image.setdefault(a["image_id"], []).append(a)
        return self._coco

    def spec(self) -> tuple[str, dict]:
        return "regionlab.eval.classify:ClassifyTask", {
            "annotations": str(self.annotations), "images": str(self.images),
            "methods": self.methods, "classes": self.classes_spec,
            "templates": self.templates, "model": self.model}

    def config(self) -> dict:
        return {"task": self.name, "annotations": str(self.annotations.resolve()),
                "images": str(self.images.resolve()), "methods": self.methods,
                "classes": self.classes_spec, "templates": self.templates, "model": self.model}

    def units(self) -> list[Unit]:
        coco = self._load()
        return [Unit(str(a["id"]), str(a["image_id"])) for a in coco.annotations
                if not a["iscrowd"]]

    def crowd(self) -> int:
        return sum(a["iscrowd"] for a in self._load().annotations)

    # -- the work
    def setup(self) -> None:
        from ..models import load_clip
        from ..tasks.retrieval import class_text_embeddings

        self._load()
        if self._clip is None:
            self._clip = load_clip(self.model)
            self._text = class_text_embeddings(self._clip, self.classes, self.templates)

    def log(self, message: str) -> None:
        if self._log:
            self._log(message)

    def run_group(self, group: str, keys: list[str]) -> list[dict]:
        from PIL import Image

        from ..inputs import load_image
        from ..region.baselines import region_embeddings

        coco = self._load()
        im = coco.images[int(group)]
        anns = self._by_image[int(group)]
        path = self.images / im["file_name"]
        base = {a["id"]: {"key": str(a["id"]), "image_id": im["id"],
                          "category": self._cat_name[a["category_id"]],
                          "class": self.classes[self._cat_class[a["category_id"]]]}
                for a in anns}
        wanted = [int(k) for k in keys]
        if not path.is_file():
            self.log(f"{im['_entry']}: image {path} not found; {len(wanted)} mask(s) counted "
                     f"wrong")
            return [{**base[k], "skipped": True, "rank": {}, "transient": True} for k in wanted]
        with Image.open(path) as pil:
            w, h = pil.size
        if (h, w) != (im["height"], im["width"]):
            raise AnnotationError(self.annotations, im["_entry"],
                                  f"height x width {im['height']} x {im['width']} but "
                                  f"{path.name} is {h} x {w}")
        masks = [decode_segmentation(a["segmentation"], h, w) for a in anns]
        keep = [k for k, m in enumerate(masks) if m.any()]
        rows = {a["id"]: {**base[a["id"]], "empty": True, "rank": {}} for a in anns}
        if keep:
            image = load_image(path)
            stack = np.stack([masks[k] for k in keep])
            gts = [self._cat_class[anns[k]["category_id"]] for k in keep]
            for method in self.methods:
                e = region_embeddings(self._clip, image, stack, method)
                e = torch.nn.functional.normalize(e.float(), dim=-1).to(self._text.device)
                scores = (e @ self._text.float().T).cpu().numpy()
                for k, s, gt in zip(keep, scores, gts):
                    row = rows[anns[k]["id"]]
                    row.pop("empty", None)
                    row["area"] = int(masks[k].sum())
                    row["rank"][method] = true_class_rank(s, gt)
                    row.setdefault("top1", {})[method] = self.classes[int(np.argmax(s))]
        return [rows[k] for k in wanted]

    # -- the numbers
    def _method_scores(self, rows: list[dict]) -> dict:
        scored = [r for r in rows if not r.get("empty")]
        out = {}
        for m in self.methods:
            ranks = [r["rank"].get(m) for r in scored]
            out[m] = {f"acc@{k}": (sum(rk is not None and rk <= k for rk in ranks) / len(ranks)
                                   if ranks else float("nan")) for k in TOP_K}
            out[m]["n"] = len(ranks)
        return out

    def summarize(self, rows: list[dict]) -> dict:
        self._load()
        return {
            "task": self.name, "file": str(self.annotations),
            "classes": self.classes_spec or "file", "n_classes": len(self.classes),
            "templates": self.templates, "model": self.model or "default",
            "methods": self._method_scores(rows),
            "n_instances": sum(not r.get("empty") for r in rows),
            "skipped": sum(bool(r.get("skipped")) for r in rows),
            "skipped_empty": sum(bool(r.get("empty")) for r in rows),
            "crowd_excluded": self.crowd(),
        }

    def per_class(self, rows: list[dict]) -> dict:
        out = {}
        for c in self.classes:
            rs = [r for r in rows if r["class"] == c]
            if rs:
                out[c] = {"n": sum(not r.get("empty") for r in rs), **{
                    m: {k: v for k, v in s.items() if k != "n"}
                    for m, s in self._method_scores(rs).items()}}
        return out

    def table(self, summary: dict) -> str:
        """MaskInversion's table: one row per method, Acc@1 (and Acc@5) on this dataset."""
        ds = self.annotations.stem
        rows = [[DISPLAY.get(m, m), pct(s["acc@1"]), pct(s["acc@5"]), s["n"]]
                for m, s in summary["methods"].items()]
        return (markdown_table(["Method", f"{ds} Acc@1", f"{ds} Acc@5", "masks"], rows)
                + f"\n\n{summary['n_classes']} classes, templates {self.templates}, model "
                  f"{summary['model']}; {summary['skipped']} masks counted wrong (image "
                  f"missing), {summary['skipped_empty']} empty and {summary['crowd_excluded']} "
                  f"crowd masks left out.\n")

    def write_extra(self, out_dir: Path, rows: list[dict], summary: dict) -> None:
        """``per_class.json`` and ``per_class.csv`` (class, n, Acc@1/Acc@5 per method)."""
        pc = self.per_class(rows)
        (out_dir / "per_class.json").write_text(json.dumps(clean(pc), indent=1) + "\n",
                                                encoding="utf-8")
        with open(out_dir / "per_class.csv", "w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh)
            wr.writerow(["class", "n"] + [f"{m} acc@{k}" for m in self.methods for k in TOP_K])
            for c, v in pc.items():
                wr.writerow([c, v["n"]] + [round(v[m][f"acc@{k}"], 4) if v["n"] else ""
                                           for m in self.methods for k in TOP_K])


def evaluate_coco(annotations, images, methods=METHODS, classes=None, templates="single",
                  model: str | None = None, limit=None, seed=None, out_dir=None,
                  progress: bool = False, log=None, ray=None) -> dict:
    """Acc@1 / Acc@5 per region method on a COCO instances file (see the module docstring);
    ``out_dir`` also gets ``per_class.json`` / ``per_class.csv``."""
    from .harness import run_eval

    task = ClassifyTask(annotations, images, methods, classes, templates, model, log)
    return run_eval(task, out_dir=out_dir, limit=limit, seed=seed, progress=progress, ray=ray)
