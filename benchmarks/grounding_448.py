"""Grounding at the app's scale: validation scenes rendered at 448 px (the example scenes'
size), ground-truth boxes, the default combination (or ``T MARGIN`` given).

    REGIONLAB_SHAPES_CLIP=runs/stageN.safetensors \
        python benchmarks/grounding_448.py [SIZE [T MARGIN]]

60 scenes per kind: superlatives of a shape named alone, attributes, superlatives. A validation
check used in the rule that shipped CLIP stage 15 (never test scenes, never the app's examples).
"""

import sys

import numpy as np
import torch

from regionlab.shapes.expressions import generate_rec_items
from regionlab.shapes.scenes import RenderOptions
from regionlab.tasks.reclip import (
    GroundingOptions,
    embed_proposals,
    ground_features,
    proposals_from_boxes,
)

torch.set_num_threads(2)
size = int(sys.argv[1]) if len(sys.argv) > 1 else 448
opts = (GroundingOptions(temperature=float(sys.argv[2]), margin=float(sys.argv[3]))
        if len(sys.argv) > 3 else GroundingOptions())
res = {}
for kind in ("shape-superlative", "attribute", "superlative"):
    ok = []
    for it in generate_rec_items("val", 60, 0, kinds=(kind,), options=RenderOptions(size=size)):
        props = proposals_from_boxes(it.boxes, it.scene.image.shape[:2], "gt")
        f = embed_proposals(it.scene.image, props, "ips", None)
        ok += [int(ground_features(f, e.text, opts).index == e.target) for e in it.expressions]
    res[kind] = (round(float(np.mean(ok)), 3), len(ok))
print(size, res)
