"""Grounding at the app's scale: validation scenes rendered at 448 px (the example scenes'
size), ground-truth boxes, the default combination (or ``T MARGIN`` given).

    REGIONLAB_SHAPES_CLIP=runs/stageN.safetensors \\
        python benchmarks/grounding_448.py [SIZE [T MARGIN]]

60 scenes per kind: superlatives of a shape named alone, attributes, superlatives. A validation
check used in the rule that shipped CLIP stage 15 (never test scenes, never the app's examples).
"""

import sys

import torch

from regionlab.eval.reclip import shapes_rec_benchmark
from regionlab.shapes.scenes import RenderOptions
from regionlab.tasks.reclip import GroundingOptions

torch.set_num_threads(2)
size = int(sys.argv[1]) if len(sys.argv) > 1 else 448
opts = (GroundingOptions(temperature=float(sys.argv[2]), margin=float(sys.argv[3]))
        if len(sys.argv) > 3 else GroundingOptions())
res = {}
for kind in ("shape-superlative", "attribute", "superlative"):
    r = shapes_rec_benchmark(60, 0, "val", variants={"reclip": opts}, kinds=(kind,),
                             render_options=RenderOptions(size=size))
    res[kind] = (r["accuracy"]["reclip"]["all"], r["n_expressions"])
print(size, res)
