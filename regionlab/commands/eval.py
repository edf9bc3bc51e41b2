"""``regionlab eval``: published-protocol evaluations over standard dataset files.

- ``regionlab eval ground --refs FILE.jsonl --images DIR [--detections FILE]``: ReCLIP's
  referring-expression protocol on the ReCLIP/RefCOCO JSONL files (correct iff IoU > 0.5 with
  the gold box; skipped sentences count as wrong and are reported), overall and by kind.
- ``regionlab eval classify --annotations instances.json --images DIR [--methods ...]
  [--classes coco|FILE]``: MaskInversion's class retrieval on COCO instance masks (polygons,
  RLE, compressed RLE): Acc@1 and Acc@5 per region method, per class in ``--out``.
- ``regionlab eval label --images DIR --labels DIR --classes ade150|voc20|context59|FILE
  [--ignore-zero] [--proposals auto|gt]``: OVSeg-style mIoU over index-PNG label maps (label
  k = the k-th class; the three built-in lists leave label 0 out unless --no-ignore-zero).

Shared conventions (:mod:`regionlab.eval.harness`): a progress bar with rate and ETA on stderr
(``--no-progress`` to hide it); ``--limit N`` (the first N units; with ``--seed S`` N drawn at
random); ``--out DIR`` keeps per-unit rows in ``DIR/items.jsonl`` (run again to resume a
killed run), ``DIR/summary.json`` and ``DIR/table.md`` (laid out like the paper's table); a
malformed annotation file is one error naming the file and the entry; ``--ray [ADDRESS]`` runs
the same groups on Ray Data actors (:mod:`regionlab.eval.ray_runner`) with the same metrics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError

NAME = "eval"
HELP = ("evaluate on standard dataset files (ground: ReCLIP JSONL, accuracy at IoU > 0.5; "
        "classify: COCO instance masks, Acc@1/Acc@5; label: index-PNG folders, mIoU); "
        "resumable with --out")
MANIFEST_KEYS = ("task, refs, images, detections, limit, seed, ray, models, scorer, combine, "
                 "temperature, margin, contrast, annotations, methods, classes, templates, labels, "
                 "ignore_zero, proposals, label_offset")
TASKS = ("ground", "classify", "label")
METHODS_DEFAULT = "global,crop,masked-crop,blur,red-circle,maskinversion"


def add_arguments(p) -> None:
    p.add_argument("task", choices=TASKS, help="what to evaluate")
    common = p.add_argument_group("all tasks")
    common.add_argument("--images", help="folder of the images the annotations name")
    common.add_argument("--limit", type=int, default=None,
                        help="at most N units (sentences / instances / images)")
    common.add_argument("--seed", type=int, default=None,
                        help="with --limit: draw the N units at random with this seed")
    common.add_argument("--out", "--out-dir", dest="out_dir", type=Path, default=None,
                        help="folder for items.jsonl (resume), summary.json and table.md")
    common.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="run on Ray Data (optional extra: pip install -e '.[scale]'): a "
                             "local instance, or the cluster at ADDRESS; same metrics")
    common.add_argument("--model", dest="models", action="append", default=None,
                        help="CLIP name or ARCH@SOURCE (ground: repeat for an ensemble)")
    g = p.add_argument_group("ground (ReCLIP)")
    g.add_argument("--refs", help="ReCLIP JSONL file (one referred object per line)")
    g.add_argument("--detections", default=None,
                   help="detections JSON as proposals (default: the ground-truth boxes)")
    g.add_argument("--scorer", default="ips", choices=["ips", "masked-crop", "maskinversion"])
    g.add_argument("--combine", default="tree", choices=["tree", "calibrated", "reference"])
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--margin", type=float, default=None)
    g.add_argument("--contrast", type=float, default=None)
    c = p.add_argument_group("classify (MaskInversion class retrieval)")
    c.add_argument("--annotations", help="COCO instances JSON (polygons, RLE or compressed RLE)")
    c.add_argument("--methods", default=METHODS_DEFAULT,
                   help=f"comma-separated region methods (default {METHODS_DEFAULT})")
    common.add_argument("--classes", default=None,
                   help="classify: the file's categories (default), coco, or a text file; "
                        "label: ade150, voc20, context59, or a text file (line k = label k)")
    common.add_argument("--templates", default=None, choices=["single", "vild", "imagenet"],
                   help="prompt templates (default: single for classify, vild for label)")
    lab = p.add_argument_group("label (OVSeg mIoU)")
    lab.add_argument("--labels", help="folder of index-PNG label maps, <image stem>.png")
    lab.add_argument("--ignore-zero", action=argparse.BooleanOptionalAction, default=None,
                     help="leave label-0 pixels out (default: on for ade150/voc20/context59, "
                          "whose 0 is background/other; off for a class file)")
    lab.add_argument("--proposals", default="auto", choices=["auto", "gt", "sam", "fallback"],
                     help="automatic mask proposals, or gt: one mask per true class region")
    lab.add_argument("--label-offset", type=int, default=0,
                     help="added to label values (1 for files whose first class is 0)")


def item_from_args(args, manifest: bool) -> dict:
    return {"task": args.task, "refs": args.refs, "images": args.images,
            "detections": args.detections, "limit": args.limit, "seed": args.seed,
            "scorer": args.scorer, "models": args.models, "combine": args.combine,
            "temperature": args.temperature, "margin": args.margin,
            "contrast": args.contrast, "annotations": args.annotations,
            "methods": args.methods, "classes": args.classes,
            "templates": args.templates, "labels": args.labels,
            "ignore_zero": args.ignore_zero, "proposals": args.proposals,
            "label_offset": args.label_offset, "ray": args.ray,
            "progress": not args.no_progress}


def _log(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


def _one_model(item: dict, task: str) -> str | None:
    models = item.get("models")
    if isinstance(models, str) or not models:
        return models or None
    if len(models) > 1:
        raise InputError(f"eval {task} takes one --model (an ensemble is for ground only)")
    return models[0]


def run(item: dict, args, out_dir) -> dict:
    task = item.get("task")
    if task not in TASKS:
        raise InputError(f"unknown eval task {task!r}; choose from {', '.join(TASKS)}")
    if item.get("limit") is not None and int(item["limit"]) < 1:
        raise InputError(f"--limit must be at least 1, got {item['limit']}")
    ray = item.get("ray")
    common = {"limit": item.get("limit"), "seed": item.get("seed"), "out_dir": out_dir,
              "progress": bool(item.get("progress", True)), "log": _log,
              "ray": None if not ray else (True if ray == "local" else str(ray))}
    if task == "classify":
        from ..eval.classify import evaluate_coco

        if not item.get("annotations") or not item.get("images"):
            raise InputError("eval classify needs --annotations instances.json and --images DIR")
        return evaluate_coco(item["annotations"], item["images"],
                             methods=item.get("methods") or METHODS_DEFAULT,
                             classes=item.get("classes"),
                             templates=item.get("templates") or "single",
                             model=_one_model(item, task), **common)
    if task == "label":
        from ..eval.ovseg import evaluate_labels
        from ..tasks.ovseg import LabelOptions

        if not item.get("images") or not item.get("labels") or not item.get("classes"):
            raise InputError("eval label needs --images DIR, --labels DIR and --classes "
                             "ade150|voc20|context59|FILE")
        options = LabelOptions(fusion="eval", templates=item.get("templates") or "vild")
        common.pop("log")
        return evaluate_labels(item["images"], item["labels"], item["classes"],
                               proposals=item.get("proposals") or "auto",
                               ignore_zero=item.get("ignore_zero"),
                               label_offset=int(item.get("label_offset") or 0),
                               options=options, model=_one_model(item, task), **common)
    return _run_ground(item, common)


def _run_ground(item: dict, common: dict) -> dict:
    from ..eval.reclip import evaluate_jsonl
    from ..tasks.reclip import GroundingOptions

    if not item.get("refs") or not item.get("images"):
        raise InputError("eval ground needs --refs FILE.jsonl and --images DIR")
    options = GroundingOptions(combine=item.get("combine") or "tree",
                               temperature=item.get("temperature"),
                               margin=item.get("margin"),
                               contrast=item.get("contrast"))
    return evaluate_jsonl(item["refs"], item["images"], models=item.get("models"),
                          scorer=item.get("scorer") or "ips", detections=item.get("detections"),
                          options=options, **common)
