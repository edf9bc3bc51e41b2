"""When should grounding say "no candidate looks like X"? Validation scenes only.

    python benchmarks/grounding_no_match.py [--scenes 300]
    python benchmarks/grounding_no_match.py --split test --renderer mpl   # report only

For validation scenes of our renderer at 64 px (the training scale) and 448 px (the app's),
ground-truth boxes as candidates, every noun phrase "the <colour> <shape>" and "the <shape>"
is scored against its one-word variants (regionlab.tasks.reclip_contrast; read through the
default membership view, IPS views + masked crop): a phrase naming an
object in the scene should find a candidate that prefers it (present), one naming nothing in
the scene should not (absent). For each threshold t the warning fires when every candidate
prefers a variant by more than t logits. Rule fixed before the run: the smallest threshold
whose false-alarm rate on present phrases is at most 1% at both sizes. Writes
benchmarks/results/grounding_no_match.json; the chosen value is NO_MATCH_DEFICIT in
regionlab/tasks/reclip.py. ``--split test`` (and ``--renderer cv|mpl``) reports the rates of the
shipped threshold on held-out scenes instead (results/grounding_no_match_<split>_<renderer>.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from regionlab.shapes.scenes import RenderOptions
from regionlab.shapes.vocab import COLOUR_NAMES, SHAPES
from regionlab.tasks.reclip import (
    GroundingOptions,
    embed_proposals,
    proposals_from_boxes,
    resolve_models,
)
from regionlab.tasks.reclip_contrast import phrase_deficits, word_groups

THRESHOLDS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
RESULTS = Path(__file__).resolve().parent / "results"


def scene_rows(scene, clip, opts, groups, rng) -> list[dict]:
    boxes = np.asarray([o.box for o in scene.objects], float)
    feats = embed_proposals(scene.image, proposals_from_boxes(boxes, scene.image.shape[:2],
                                                              "gt"), "ips", [clip], opts)
    labels = {(o.colour, o.shape) for o in scene.objects}
    shapes = {o.shape for o in scene.objects}
    absent_pairs = [(c, s) for c in COLOUR_NAMES for s in SHAPES if (c, s) not in labels]
    absent_shapes = [s for s in SHAPES if s not in shapes]
    phrases = [(f"the {c} {s}", True, "colour+shape") for c, s in sorted(labels)]
    phrases += [(f"the {s}", True, "shape") for s in sorted(shapes)]
    for c, s in [absent_pairs[i] for i in rng.choice(len(absent_pairs), 2, replace=False)]:
        phrases.append((f"the {c} {s}", False, "colour+shape"))
    if absent_shapes:
        phrases.append((f"the {absent_shapes[rng.integers(len(absent_shapes))]}", False,
                        "shape"))
    rows = []
    for text, present, kind in phrases:
        d, _ = phrase_deficits(feats.for_membership(opts.effective_membership), text, groups,
                               opts.prompt)
        rows.append({"text": text, "present": present, "kind": kind,
                     "best_deficit": float(d.max())})
    return rows


def main() -> None:
    from regionlab.shapes.scenes import split_seed

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=300)
    p.add_argument("--split", default="val", choices=["val", "test"])
    p.add_argument("--renderer", default="pil", choices=["pil", "cv", "mpl"])
    a = p.parse_args()
    from regionlab.shapes.renderers import render as render_with
    torch.set_num_threads(2)
    clip = resolve_models(None)[0]
    groups, opts = word_groups([clip]), GroundingOptions()
    out = {"split": a.split, "renderer": a.renderer, "n_scenes": a.scenes,
           "thresholds": list(THRESHOLDS), "sizes": {}}
    for size in (64, 448):
        rng = np.random.default_rng(size)
        rows = []
        for i in range(a.scenes):
            scene = render_with(a.renderer, split_seed(a.split, i), RenderOptions(size=size))
            rows += scene_rows(scene, clip, opts, groups, rng)
        res = {}
        for t in THRESHOLDS:
            fire = [r["best_deficit"] < -t for r in rows]
            res[str(t)] = {
                "false_alarm": round(float(np.mean([f for f, r in zip(fire, rows)
                                                    if r["present"]])), 4),
                "detected": round(float(np.mean([f for f, r in zip(fire, rows)
                                                 if not r["present"]])), 4),
                **{f"detected_{k}": round(float(np.mean(
                    [f for f, r in zip(fire, rows) if not r["present"] and r["kind"] == k])), 4)
                   for k in ("colour+shape", "shape")}}
        out["sizes"][str(size)] = {"n_present": sum(r["present"] for r in rows),
                                   "n_absent": sum(not r["present"] for r in rows),
                                   "by_threshold": res}
        print(size, json.dumps(res))
    if a.split != "val":
        from regionlab.tasks.reclip import NO_MATCH_DEFICIT

        out["shipped_threshold"] = NO_MATCH_DEFICIT
        path = RESULTS / f"grounding_no_match_{a.split}_{a.renderer}.json"
        path.write_text(json.dumps(out, indent=2))
        print("shipped", NO_MATCH_DEFICIT, "wrote", path)
        return
    ok = [t for t in THRESHOLDS
          if all(out["sizes"][s]["by_threshold"][str(t)]["false_alarm"] <= 0.01
                 for s in out["sizes"])]
    out["rule"] = ("smallest threshold with false alarms on present phrases <= 1% at both "
                   "sizes")
    out["chosen"] = min(ok) if ok else None
    path = RESULTS / "grounding_no_match.json"
    path.write_text(json.dumps(out, indent=2))
    print("chosen", out["chosen"], "wrote", path)


if __name__ == "__main__":
    main()
