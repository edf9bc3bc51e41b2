"""How surely does the CLIP read a proposal as its own noun phrase rather than a one-word
variant? Validation diagnostic for grounding's contrastive membership.

    python benchmarks/contrast_deficits.py [--scenes 80]

Superlatives of a shape named alone ("the biggest circle") on validation scenes of our
renderer at 448 px and 64 px and of the OpenCV renderer at 64 px; for each head noun phrase,
the deficit ``l(phrase) - max l(variant)`` (regionlab.tasks.reclip_contrast) of every object,
split into members (the named shape) and the others, read through each membership view (the
IPS views, the masked crop from the classical box segmenter, both summed). Writes
benchmarks/results/contrast_deficits.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from regionlab.shapes.expressions import generate_rec_items
from regionlab.shapes.scenes import RenderOptions
from regionlab.tasks.reclip import (
    GroundingOptions,
    embed_proposals,
    proposals_from_boxes,
    resolve_models,
)
from regionlab.tasks.reclip_contrast import MEMBERSHIPS, phrase_deficits, word_groups
from regionlab.tasks.reclip_parser import parse_expression

OUT = Path(__file__).resolve().parent / "results" / "contrast_deficits.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=80)
    a = p.parse_args()
    torch.set_num_threads(2)
    clip = resolve_models(None)[0]
    groups = word_groups([clip])
    out = {"split": "val", "n_scenes": a.scenes, "sets": {}}
    for renderer, size in (("pil", 448), ("pil", 64), ("cv", 64)):
        items = generate_rec_items("val", a.scenes, 0, kinds=("shape-superlative",),
                                   renderer=renderer, options=RenderOptions(size=size))
        mem = {m: [] for m in MEMBERSHIPS}
        non = {m: [] for m in MEMBERSHIPS}
        for it in items:
            props = proposals_from_boxes(it.boxes, it.scene.image.shape[:2], "ground-truth")
            f = embed_proposals(it.scene.image, props, "ips", [clip],
                                GroundingOptions(membership="both"))
            for e in it.expressions:
                head = parse_expression(e.text).head.text
                shape = head.split()[-1]
                for m in MEMBERSHIPS:
                    d, _ = phrase_deficits(f.for_membership(m), head, groups)
                    for i, o in enumerate(it.scene.objects):
                        (mem[m] if o.shape == shape else non[m]).append(float(d[i]))
        rows = {}
        for m in MEMBERSHIPS:
            a_, b_ = np.array(mem[m]), np.array(non[m])
            rows[m] = {"members": {"n": len(a_), "frac_below_0": round(float((a_ < 0).mean()), 4),
                                   "percentiles_5_10_25_50": np.round(
                                       np.percentile(a_, [5, 10, 25, 50]), 2).tolist()},
                       "others": {"n": len(b_), "frac_above_0": round(float((b_ > 0).mean()), 4),
                                  "frac_above_minus_4": round(float((b_ > -4).mean()), 4),
                                  "percentiles_95_90_75_50": np.round(
                                      np.percentile(b_, [95, 90, 75, 50]), 2).tolist()}}
            print(renderer, size, m, json.dumps(rows[m]))
        out["sets"][f"{renderer}-{size}"] = rows
    OUT.write_text(json.dumps(out, indent=2))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
