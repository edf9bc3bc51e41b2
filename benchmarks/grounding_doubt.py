"""When should grounding say "the answer looks like something else"? Validation scenes only.

    python benchmarks/grounding_doubt.py [--scenes 300]
    python benchmarks/grounding_doubt.py --split test --renderer mpl   # report only

Every referring expression of ShapesWorld scenes (all kinds, ground-truth boxes as candidates,
the default grounding options) is grounded, and the chosen candidate's reading of the head noun
phrase against its one-word variants is kept (``GroundingResult.answer_reading``: its deficit,
regionlab.tasks.reclip_contrast). For each threshold t the warning would fire when the answer
prefers a variant by more than t logits. A false alarm is a warning on a right answer; a catch
is a warning on a wrong one. Rule fixed before the run: the smallest threshold whose false-alarm
rate is at most 2% on our renderer's validation scenes at 64 px (the training scale) and at
448 px (the app's). The OpenCV renderer's validation scenes are reported, not used to choose.
Writes benchmarks/results/grounding_doubt.json; the chosen value is ANSWER_DOUBT_DEFICIT in
regionlab/tasks/reclip.py. ``--split test`` (and ``--renderer cv|mpl``) reports the rates of the
shipped threshold and of the grid on held-out scenes (results/grounding_doubt_<split>_<renderer>
.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from regionlab.shapes.expressions import ALL_KINDS, generate_rec_items
from regionlab.shapes.scenes import RenderOptions
from regionlab.tasks import reclip
from regionlab.tasks.reclip import (
    GroundingOptions,
    embed_proposals,
    ground_features,
    proposals_from_boxes,
    resolve_models,
)
from regionlab.tasks.reclip_parser import parse_expression

THRESHOLDS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)
RESULTS = Path(__file__).resolve().parent / "results"


def readings(split: str, n: int, renderer: str, size: int, models, seed: int = 0) -> list[dict]:
    """One row per expression: right or wrong, and the answer's deficit (None: no reading)."""
    items = generate_rec_items(split, n, seed, kinds=ALL_KINDS, renderer=renderer,
                               options=RenderOptions(size=size))
    opts = GroundingOptions()
    rows = []
    for item in items:
        props = proposals_from_boxes(item.boxes, item.scene.image.shape[:2], "ground-truth")
        feats = embed_proposals(item.scene.image, props, "ips", models, opts)
        for e in item.expressions:
            res = ground_features(feats, e.text, opts, tree=parse_expression(e.text))
            r = res.answer_reading
            rows.append({"text": e.text, "kind": e.kind, "right": res.index == e.target,
                         "deficit": None if r is None else r["deficit"],
                         "warned": bool(res.warnings)})
    return rows


def rates(rows: list[dict]) -> dict:
    """False alarms and catches per threshold (rows without a reading never warn)."""
    right = [r for r in rows if r["right"]]
    wrong = [r for r in rows if not r["right"]]
    out = {"n": len(rows), "right": len(right), "wrong": len(wrong),
           "with_reading": sum(r["deficit"] is not None for r in rows), "by_threshold": {}}
    for t in THRESHOLDS:
        def fires(r, t=t):
            return r["deficit"] is not None and r["deficit"] < -t
        out["by_threshold"][str(t)] = {
            "false_alarms": round(float(np.mean([fires(r) for r in right])) if right else 0, 4),
            "catches": round(float(np.mean([fires(r) for r in wrong])) if wrong else 0, 4)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=300)
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--renderer", choices=("pil", "cv", "mpl"), default="pil")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    models = resolve_models(None)
    if a.split == "val":
        sets = {f"{r}-{s}": rates(readings("val", n, r, s, models))
                for r, s, n in (("pil", 64, a.scenes), ("pil", 448, a.scenes // 2),
                                ("cv", 64, a.scenes))}
        ok = [t for t in THRESHOLDS
              if all(sets[k]["by_threshold"][str(t)]["false_alarms"] <= 0.02
                     for k in ("pil-64", "pil-448"))]
        out = {"split": "val", "scenes": a.scenes, "sets": sets,
               "rule": "smallest threshold with at most 2% false alarms (warnings on right "
                       "answers) on our renderer's validation scenes at 64 and 448 px",
               "chosen": min(ok) if ok else None,
               "command": f"python benchmarks/grounding_doubt.py --scenes {a.scenes}"}
        path = RESULTS / "grounding_doubt.json"
    else:
        sets = {f"{a.renderer}-{s}": rates(readings(a.split, n, a.renderer, s, models))
                for s, n in ((64, a.scenes), (448, a.scenes // 2))}
        out = {"split": a.split, "renderer": a.renderer, "scenes": a.scenes,
               "shipped": reclip.ANSWER_DOUBT_DEFICIT, "sets": sets,
               "command": f"python benchmarks/grounding_doubt.py --split {a.split} "
                          f"--renderer {a.renderer} --scenes {a.scenes}"}
        path = RESULTS / f"grounding_doubt_{a.split}_{a.renderer}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    for k, v in sets.items():
        print(k, v["n"], "wrong", v["wrong"], {t: (x["false_alarms"], x["catches"])
                                               for t, x in v["by_threshold"].items()})
    print("chosen", out.get("chosen"), "->", path)


if __name__ == "__main__":
    main()
