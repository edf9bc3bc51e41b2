"""ReCLIP evaluation: the ReCLIP JSONL format (RefCOCO/RefCOCO+/RefCOCOg) and ShapesWorld REC.

JSONL (one referred object per line, METHODS.md 3.2): ``file_name``, ``image_id``, ``ann_id``,
``anns`` (every annotated box of the image: ``{"id", "bbox": [x, y, w, h]}`` or bare
``[x, y, w, h]``), ``sentences`` (``[{"raw": ...}]``); each sentence is one test instance.
Proposals are all the image's ground-truth boxes, or a detections file
(:func:`regionlab.tasks.reclip.read_detections`, selected by ``image_id``). A prediction is
correct iff IoU(predicted box, gold box) > 0.5. Proposals are embedded once per line and every
sentence of the line reuses them; ReCLIP and IPS-only accuracies come from the same run.

``regionlab eval ground`` runs :class:`GroundTask` under the shared conventions of
:mod:`regionlab.eval.harness` (subsets, resume, summary and table, one error for a malformed
line naming the file and the line).
"""

from __future__ import annotations

import dataclasses
import json
import re
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
    make_proposals,
    proposals_from_boxes,
    read_detections,
)
from .harness import EvalTask, Unit, markdown_table, pct, run_eval

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


def _check_box(b, where: str) -> list[float]:
    if isinstance(b, dict):
        if "bbox" not in b:
            raise ValueError(f"{where} has no 'bbox'")
        b = b["bbox"]
    if (not isinstance(b, (list, tuple)) or len(b) != 4
            or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in b)):
        raise ValueError(f"{where} is not a box [x, y, w, h] of 4 numbers: {b!r}"[:200])
    return list(b)


def check_record(record, need_image_id: bool = False) -> None:
    """Raise ValueError saying what is wrong with the structure of a JSONL line (a line whose
    ``ann_id`` matches no box is run and counted wrong, as a missing image is)."""
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object but {type(record).__name__}")
    if not isinstance(record.get("file_name"), str) or not record["file_name"]:
        raise ValueError("no 'file_name'")
    if need_image_id and "image_id" not in record:
        raise ValueError("no 'image_id' (needed to pick its detections)")
    anns = record.get("anns", [])
    if not isinstance(anns, list):
        raise ValueError("'anns' is not a list")
    for k, a in enumerate(anns):
        _check_box(a, f"anns[{k}]")
    if "bbox" in record:
        _check_box(record["bbox"], "bbox")
    sents = record.get("sentences")
    if not isinstance(sents, list) or not sents:
        raise ValueError("no 'sentences' (a non-empty list of {\"raw\": text})")
    for k, s in enumerate(sents):
        if not isinstance(s.get("raw") if isinstance(s, dict) else s, str):
            raise ValueError(f"sentences[{k}] has no text ('raw')")


def read_records(path, need_image_id: bool = False) -> list[tuple[int, dict]]:
    """(line number, record) of every non-blank line of a ReCLIP JSONL file, each checked;
    a malformed line is an :class:`~regionlab.eval.harness.AnnotationError` naming the file,
    the line and its ``ann_id``."""
    from .harness import AnnotationError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"JSONL file not found: {path}")
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise AnnotationError(path, f"line {lineno}", f"not valid JSON ({exc})") from None
            try:
                check_record(record, need_image_id)
            except ValueError as exc:
                ann = record.get("ann_id") if isinstance(record, dict) else None
                entry = f"line {lineno}" + (f" (ann_id {ann})" if ann is not None else "")
                raise AnnotationError(path, entry, str(exc)) from None
            records.append((lineno, record))
    return records


class GroundTask(EvalTask):
    """ReCLIP's REC protocol on a JSONL file (units: sentences; groups: lines, whose proposals
    are embedded once for all their sentences)."""

    name = "ground"
    unit = "sentence"

    def __init__(self, refs, images, models=None, scorer: str = "ips", detections=None,
                 options: GroundingOptions | None = None, log=None):
        self.refs, self.images = Path(refs), Path(images)
        self.models, self.scorer, self.detections = models, scorer, detections
        self.options = options or GroundingOptions()
        self._log = log
        self._records: dict[str, dict] | None = None
        self._det = None
        self._clips = None

    def spec(self) -> tuple[str, dict]:
        return "regionlab.eval.reclip:GroundTask", {
            "refs": str(self.refs), "images": str(self.images),
            "models": _model_names(self.models), "scorer": self.scorer,
            "detections": None if self.detections is None else str(self.detections),
            "options": self.options}

    def config(self) -> dict:
        return {"task": self.name, "refs": str(self.refs.resolve()),
                "images": str(self.images.resolve()), "models": _model_names(self.models),
                "scorer": self.scorer,
                "detections": None if self.detections is None else str(self.detections),
                "options": json.loads(json.dumps(dataclasses.asdict(self.options),
                                                 default=str))}

    def _load(self) -> dict[str, dict]:
        if self._records is None:
            if self.detections is not None and not Path(self.detections).is_file():
                raise InputError(f"detections file not found: {self.detections}")
            recs = read_records(self.refs, need_image_id=self.detections is not None)
            self._records = {str(n): r for n, r in recs}
        return self._records

    def units(self) -> list[Unit]:
        return [Unit(f"{line}:{j}", line) for line, rec in self._load().items()
                for j in range(len(sentences(rec)))]

    def setup(self) -> None:
        from ..tasks import reclip as rc

        self._load()
        if self.detections is not None and self._det is None:
            self._det = json.loads(Path(self.detections).read_text(encoding="utf-8"))
        if self._clips is None:
            self._clips = rc.resolve_models(self.models)

    def log(self, message: str) -> None:
        if self._log:
            self._log(message)

    def run_group(self, group: str, keys: list[str]) -> list[dict]:
        from ..tasks.reclip_parser import parse_expression

        record = self._load()[group]
        sents = sentences(record)
        idx = [int(k.rsplit(":", 1)[1]) for k in keys]
        opts = self.options
        try:
            image = load_image(image_path(self.images, str(record["file_name"])))
            if self._det is None:
                boxes, _ = record_boxes(record)
                props = proposals_from_boxes(boxes, image.shape[:2], "ground-truth")
            else:
                boxes, scores = read_detections(self._det, image_id=record["image_id"])
                props = proposals_from_boxes(boxes, image.shape[:2], "detections", scores)
            gold = gold_boxes(record)
            feats = embed_proposals(image, props, self.scorer, self._clips, opts)
        except (InputError, KeyError, OSError, TypeError, ValueError) as exc:
            self.log(f"line {group}: {len(idx)} sentence(s) skipped, counted wrong "
                     f"({type(exc).__name__}: {exc})")
            return [_skipped_row(group, j, sents[j]) for j in idx]
        iou = box_iou(props.boxes, gold).max(axis=1)
        rows = []
        for j in idx:
            sent = sents[j]
            try:
                tree = parse_expression(sent) if opts.use_parser else None
                res = ground_features(feats, sent, opts, tree=tree)
            except InputError as exc:
                self.log(f"line {group}: sentence skipped, counted wrong ({exc})")
                rows.append(_skipped_row(group, j, sent))
                continue
            ips = int(np.argmax(res.ips_probs))
            rows.append({"key": f"{group}:{j}", "line": int(group), "sentence": sent,
                         "kind": expression_kind(tree),
                         "correct": int(iou[res.index] > IOU_THRESHOLD),
                         "ips_correct": int(iou[ips] > IOU_THRESHOLD),
                         "box": [round(float(v), 2) for v in props.boxes[res.index]]})
        return rows

    def summarize(self, rows: list[dict]) -> dict:
        n = len(rows)
        by_kind = {}
        for kind in sorted({r["kind"] for r in rows}):
            rs = [r for r in rows if r["kind"] == kind]
            by_kind[kind] = {"accuracy": sum(r["correct"] for r in rs) / len(rs),
                             "n_sentences": len(rs)}
        opts = self.options
        return {
            "task": self.name, "file": str(self.refs), "scorer": self.scorer,
            "proposals": "ground-truth" if self.detections is None else str(self.detections),
            "combine": opts.combine, "temperature": opts.effective_temperature,
            "n_sentences": n, "skipped": sum(r["kind"] == "skipped" for r in rows),
            "accuracy": sum(r["correct"] for r in rows) / n if n else float("nan"),
            "ips_accuracy": sum(r["ips_correct"] for r in rows) / n if n else float("nan"),
            "by_kind": by_kind,
        }

    def table(self, summary: dict) -> str:
        """ReCLIP's table: rows = proposals and method, one column per split (this file)."""
        split = _SUFFIX.sub(r"\1", self.refs.stem)
        props = "ground truth" if self.detections is None else "detected"
        rows = [[f"{props}, ReCLIP ({summary['combine']})", pct(summary["accuracy"])],
                [f"{props}, IPS only", pct(summary["ips_accuracy"])]]
        out = markdown_table(["proposals", split], rows)
        kinds = summary["by_kind"]
        out += "\n\nBy expression kind (parser's reading; skipped = counted wrong):\n\n"
        out += markdown_table(["kind", "accuracy", "sentences"],
                              [[k, pct(v["accuracy"]), v["n_sentences"]]
                               for k, v in kinds.items()])
        return out + f"\n\n{summary['n_sentences']} sentences, scorer {self.scorer}.\n"


def _skipped_row(group: str, j: int, sent: str) -> dict:
    # transient: not written to items.jsonl, so a resumed run tries the line again
    return {"key": f"{group}:{j}", "line": int(group), "sentence": sent, "kind": "skipped",
            "correct": 0, "ips_correct": 0, "transient": True}


def _model_names(models):
    if models is None or isinstance(models, str):
        return models
    if hasattr(models, "encode_images"):
        models = [models]
    return [m if isinstance(m, str) else getattr(m, "name", str(m)) for m in models]


def evaluate_jsonl(path, image_root, models=None, scorer: str = "ips", detections=None,
                   options: GroundingOptions | None = None, limit: int | None = None,
                   log=None, progress: bool = False, seed: int | None = None, out_dir=None,
                   ray=None) -> dict:
    """Accuracy (IoU > 0.5 with a gold box) of grounding and of IPS alone on a ReCLIP JSONL
    split, overall and by expression kind.

    ``detections``: None (ground-truth boxes as proposals) or a detections JSON path.
    ``limit``/``seed`` choose a subset of sentences; ``out_dir`` keeps per-sentence rows so a
    killed run resumes, plus ``summary.json`` and ``table.md`` (:mod:`regionlab.eval.harness`).
    A malformed line is an error naming the file and the line; a sentence that cannot be run
    (missing image, proposals refused) counts as wrong and is reported under ``skipped``;
    ``log(str)`` receives one line per skip; ``progress`` shows a progress bar on stderr."""
    task = GroundTask(path, image_root, models, scorer, detections, options, log)
    return run_eval(task, out_dir=out_dir, limit=limit, seed=seed, progress=progress, ray=ray)


# ------------------------------------------------------------------------------ ShapesWorld


def shapes_rec_benchmark(n_scenes: int = 300, seed: int = 0, split: str = "test",
                         models=None, options: GroundingOptions | None = None,
                         scorer: str = "ips", variants: dict | None = None,
                         kinds: tuple[str, ...] | None = None, renderer: str = "pil",
                         render_options=None, candidates: str = "objects") -> dict:
    """Accuracy of grounding variants, IPS alone and a random choice on ShapesWorld referring
    expressions (ground-truth boxes as proposals, held-out scenes), split by expression kind
    and subtype. ``spatial`` pools every kind but ``attribute``.

    ``variants`` maps a method name to :class:`GroundingOptions` (default: ``{"reclip":
    options}``); all come from the same forward passes. ``kinds`` defaults to attribute,
    relation and superlative (add "everyday" for the phrasing shift); ``renderer`` "pil" (ours)
    or "cv" (the independent renderer); ``render_options`` a
    :class:`~regionlab.shapes.scenes.RenderOptions` (e.g. ``size=448``, the app's scale).
    ``candidates`` "objects" (the objects' boxes) or "automatic" (the app's default: automatic
    proposals, right when the chosen box has IoU > 0.5 with the target's; ``random`` is then
    the share of proposals that would be right, ``reachable`` whether any would be,
    ``reachable_kept`` whether any would be among those the first variant's objectness filter
    keeps)."""
    from ..shapes.expressions import KINDS, generate_rec_items
    from ..tasks.reclip_parser import parse_expression

    opts = options or GroundingOptions()
    variants = dict(variants or {"reclip": opts})
    extra = {} if render_options is None else {"options": render_options}
    items = generate_rec_items(split, n_scenes, seed, kinds=tuple(kinds or KINDS),
                               renderer=renderer, **extra)
    rows = []
    t0 = time.perf_counter()
    for item in items:
        if candidates == "automatic":
            props = make_proposals(item.scene.image, None)
        else:
            props = proposals_from_boxes(item.boxes, item.scene.image.shape[:2], "ground-truth")
        feats = embed_proposals(item.scene.image, props, scorer, models, opts)
        iou = box_iou(props.boxes, np.asarray(item.boxes, dtype=np.float64))
        for e in item.expressions:
            tree = parse_expression(e.text)
            # which proposals count as the target: itself, or any automatic one over IoU 0.5
            ok = (iou[:, e.target] > 0.5 if candidates == "automatic"
                  else np.arange(len(props)) == e.target)
            row = {
                "scene": item.index, "text": e.text, "kind": e.kind, "subtype": e.subtype,
                "target": e.target, "n_proposals": len(props), "random": float(ok.mean()),
                "reachable": int(ok.any()),
            }
            for k, (name, v_opts) in enumerate(variants.items()):
                res = ground_features(feats, e.text, v_opts, tree=tree)
                row[name] = int(ok[res.index])
                if k == 0:  # the ceiling once the first variant's objectness filter has run
                    row["reachable_kept"] = int((ok if res.objects is None
                                                 else ok & np.asarray(res.objects)).any())
                row["ips"] = int(ok[int(np.argmax(res.ips_probs))])
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
    for m in (*variants, "ips", "random", "reachable", "reachable_kept"):
        methods[m] = {g: round(float(np.mean([r[m] for r in rs])), 4) for g, rs in
                      sorted(groups.items())}
    first = next(iter(variants))
    return {
        "split": split, "seed": seed, "n_scenes": n_scenes, "n_expressions": len(rows),
        "renderer": renderer, "kinds": list(kinds or KINDS), "candidates": candidates,
        "variants": {k: {"combine": v.combine, "temperature": v.effective_temperature,
                         "margin": v.effective_margin,
                         "contrast": v.effective_contrast,
                         "contrast_tolerance": v.effective_contrast_tolerance,
                         "contrast_gap": (v.effective_contrast_gap
                                          if np.isfinite(v.effective_contrast_gap) else None),
                         "membership": v.effective_membership,
                         "logit_scale": v.effective_logit_scale or "model"}
                     for k, v in variants.items()},
        "counts": {g: len(rs) for g, rs in sorted(groups.items())},
        "accuracy": methods, "seconds": round(seconds, 2), "scorer": scorer,
        "failures": [r for r in rows if not r[first]][:40],
    }
