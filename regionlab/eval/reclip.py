"""ReCLIP evaluation: the ReCLIP JSONL format (RefCOCO/RefCOCO+/RefCOCOg) and ShapesWorld REC.

JSONL (one referred object per line, METHODS.md 3.2): ``file_name``, ``image_id``, ``ann_id``,
``anns`` (every annotated box of the image: ``{"id", "bbox": [x, y, w, h]}`` or bare
``[x, y, w, h]``), ``sentences`` (``[{"raw": ...}]``); each sentence is one test instance.
Proposals are all the image's ground-truth boxes, or a detections file
(:func:`regionlab.tasks.reclip.read_detections`, selected by ``image_id``). A prediction is
correct iff IoU(predicted box, gold box) > 0.5. Proposals are embedded once per line and every
sentence of the line reuses them; ReCLIP and IPS-only accuracies come from the same run.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..inputs import load_image
from ..tasks.reclip import (
    GroundingOptions,
    box_iou,
    embed_proposals,
    ground_features,
    proposals_from_boxes,
    read_detections,
)

IOU_THRESHOLD = 0.5


def _xywh_to_xyxy(b) -> list[float]:
    x, y, w, h = (float(v) for v in b)
    return [x, y, x + w, y + h]


def record_boxes(record: dict) -> tuple[np.ndarray, list]:
    """All ground-truth boxes (xyxy) of a JSONL line and their annotation ids (None if bare)."""
    boxes, ids = [], []
    for a in record.get("anns", []):
        if isinstance(a, dict):
            boxes.append(_xywh_to_xyxy(a["bbox"]))
            ids.append(a.get("id", a.get("ann_id")))
        else:
            boxes.append(_xywh_to_xyxy(a))
            ids.append(None)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), ids


def gold_boxes(record: dict) -> np.ndarray:
    """The referred object's box(es) (xyxy, (G, 4)): the ``anns`` entries whose id is
    ``ann_id`` (an id or a list of ids, as in the ReCLIP files), or the line's own ``bbox``."""
    if "bbox" in record:
        return np.asarray([_xywh_to_xyxy(record["bbox"])])
    wanted = record.get("ann_id")
    wanted = {str(w) for w in (wanted if isinstance(wanted, list) else [wanted])}
    boxes, ids = record_boxes(record)
    found = [b for b, i in zip(boxes, ids) if i is not None and str(i) in wanted]
    if not found:
        raise InputError(f"line for ann_id {record.get('ann_id')!r} has no gold box "
                         f"(no 'bbox' and no matching id in 'anns')")
    return np.asarray(found)


_SUFFIX = re.compile(r"_\d+(\.[A-Za-z]+)$")


def image_path(image_root: Path, file_name: str) -> Path:
    """The image of a line: ``file_name`` itself, else with the ``_NNN`` suffix that the
    ReCLIP files add (and the reference strips) removed."""
    path = image_root / file_name
    if path.is_file():
        return path
    stripped = image_root / _SUFFIX.sub(r"\1", file_name)
    return stripped if stripped.is_file() else path


def sentences(record: dict) -> list[str]:
    out = []
    for s in record.get("sentences", []):
        out.append(s["raw"] if isinstance(s, dict) else str(s))
    return out


def expression_kind(tree) -> str:
    """relation (a scored relation), superlative, or attribute (IPS alone)."""
    if tree is None:
        return "attribute"
    if any(r.predicate for _, r in tree.relations):
        return "relation"
    return "superlative" if tree.superlatives else "attribute"


def evaluate_jsonl(path, image_root, models=None, scorer: str = "ips", detections=None,
                   options: GroundingOptions | None = None, limit: int | None = None,
                   log=None, progress: bool = False) -> dict:
    """Accuracy (IoU > 0.5 with a gold box) of grounding and of IPS alone on a ReCLIP JSONL
    split, overall and by expression kind.

    ``detections``: None (ground-truth boxes as proposals) or a detections JSON path.
    ``limit`` caps the number of sentences; a sentence that cannot be run (missing image,
    malformed line) counts as wrong and is reported under ``skipped``; ``log(str)`` receives
    one line per skip; ``progress`` shows a progress bar (rate, ETA) on stderr."""
    from ..tasks.reclip_parser import parse_expression

    path, image_root = Path(path), Path(image_root)
    if not path.is_file():
        raise InputError(f"JSONL file not found: {path}")
    opts = options or GroundingOptions()
    det_data = None
    if detections is not None:
        if not Path(detections).is_file():
            raise InputError(f"detections file not found: {detections}")
        det_data = json.loads(Path(detections).read_text(encoding="utf-8"))
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            if raw.strip():
                try:
                    records.append((lineno, json.loads(raw)))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}, line {lineno}: not valid JSON ({exc})") from None
    total = sum(len(sentences(r)) or 1 for _, r in records)
    total = min(total, limit) if limit is not None else total
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="sentence", file=sys.stderr)
    rows: list[dict] = []
    skipped = 0
    t0 = time.perf_counter()
    for lineno, record in records:
        if len(rows) >= total:
            break
        sents = sentences(record)[: total - len(rows)] or [""]
        try:
            image = load_image(image_path(image_root, str(record["file_name"])))
            if det_data is None:
                boxes, _ = record_boxes(record)
                props = proposals_from_boxes(boxes, image.shape[:2], "ground-truth")
            else:
                boxes, scores = read_detections(det_data, image_id=record["image_id"])
                props = proposals_from_boxes(boxes, image.shape[:2], "detections", scores)
            gold = gold_boxes(record)
            feats = embed_proposals(image, props, scorer, models, opts)
        except (InputError, KeyError, OSError, TypeError, ValueError) as exc:
            for sent in sents:
                rows.append({"line": lineno, "sentence": sent, "kind": "skipped", "correct": 0,
                             "ips_correct": 0})
            skipped += len(sents)
            if log:
                log(f"line {lineno}: {len(sents)} sentence(s) skipped, counted wrong "
                    f"({type(exc).__name__}: {exc})")
            if bar:
                bar.update(len(sents))
            continue
        iou = box_iou(props.boxes, gold).max(axis=1)
        for sent in sents:
            try:
                tree = parse_expression(sent) if opts.use_parser else None
                res = ground_features(feats, sent, opts, tree=tree)
                rows.append({"line": lineno, "sentence": sent, "kind": expression_kind(tree),
                             "correct": int(iou[res.index] > IOU_THRESHOLD),
                             "ips_correct": int(iou[int(np.argmax(res.ips_probs))]
                                                > IOU_THRESHOLD)})
            except InputError as exc:
                rows.append({"line": lineno, "sentence": sent, "kind": "skipped", "correct": 0,
                             "ips_correct": 0})
                skipped += 1
                if log:
                    log(f"line {lineno}: sentence skipped, counted wrong ({exc})")
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    n = len(rows)
    by_kind = {}
    for kind in sorted({r["kind"] for r in rows}):
        rs = [r for r in rows if r["kind"] == kind]
        by_kind[kind] = {"accuracy": sum(r["correct"] for r in rs) / len(rs),
                         "n_sentences": len(rs)}
    return {
        "file": str(path), "scorer": scorer,
        "proposals": "ground-truth" if detections is None else str(detections),
        "combine": opts.combine, "temperature": opts.effective_temperature,
        "n_sentences": n, "skipped": skipped,
        "accuracy": sum(r["correct"] for r in rows) / n if n else float("nan"),
        "ips_accuracy": sum(r["ips_correct"] for r in rows) / n if n else float("nan"),
        "by_kind": by_kind,
        "seconds": round(time.perf_counter() - t0, 3),
    }


# ------------------------------------------------------------------------------ ShapesWorld


def shapes_rec_benchmark(n_scenes: int = 300, seed: int = 0, split: str = "test",
                         models=None, options: GroundingOptions | None = None,
                         scorer: str = "ips", variants: dict | None = None,
                         kinds: tuple[str, ...] | None = None, renderer: str = "pil") -> dict:
    """Accuracy of grounding variants, IPS alone and a random choice on ShapesWorld referring
    expressions (ground-truth boxes as proposals, held-out scenes), split by expression kind
    and subtype. ``spatial`` pools every kind but ``attribute``.

    ``variants`` maps a method name to :class:`GroundingOptions` (default: ``{"reclip":
    options}``); all come from the same forward passes. ``kinds`` defaults to attribute,
    relation and superlative (add "everyday" for the phrasing shift); ``renderer`` "pil" (ours)
    or "cv" (the independent renderer)."""
    from ..shapes.expressions import KINDS, generate_rec_items
    from ..tasks.reclip_parser import parse_expression

    opts = options or GroundingOptions()
    variants = dict(variants or {"reclip": opts})
    items = generate_rec_items(split, n_scenes, seed, kinds=tuple(kinds or KINDS),
                               renderer=renderer)
    rows = []
    t0 = time.perf_counter()
    for item in items:
        props = proposals_from_boxes(item.boxes, item.scene.image.shape[:2], "ground-truth")
        feats = embed_proposals(item.scene.image, props, scorer, models, opts)
        for e in item.expressions:
            tree = parse_expression(e.text)
            row = {
                "scene": item.index, "text": e.text, "kind": e.kind, "subtype": e.subtype,
                "target": e.target, "n_proposals": len(props), "random": 1.0 / len(props),
            }
            for name, v_opts in variants.items():
                res = ground_features(feats, e.text, v_opts, tree=tree)
                row[name] = int(res.index == e.target)
                row["ips"] = int(int(np.argmax(res.ips_probs)) == e.target)
                row["used_tree"] = res.used_tree
            rows.append(row)
    seconds = time.perf_counter() - t0
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups["all"].append(r)
        groups[r["kind"]].append(r)
        groups[f"{r['kind']}/{r['subtype']}"].append(r)
        if r["kind"] != "attribute":
            groups["spatial"].append(r)
    methods = {}
    for m in (*variants, "ips", "random"):
        methods[m] = {g: round(float(np.mean([r[m] for r in rs])), 4) for g, rs in
                      sorted(groups.items())}
    first = next(iter(variants))
    return {
        "split": split, "seed": seed, "n_scenes": n_scenes, "n_expressions": len(rows),
        "renderer": renderer, "kinds": list(kinds or KINDS),
        "variants": {k: {"combine": v.combine, "temperature": v.effective_temperature,
                         "margin": v.effective_margin,
                         "logit_scale": v.effective_logit_scale or "model"}
                     for k, v in variants.items()},
        "counts": {g: len(rs) for g, rs in sorted(groups.items())},
        "accuracy": methods, "seconds": round(seconds, 2), "scorer": scorer,
        "failures": [r for r in rows if not r[first]][:40],
    }
