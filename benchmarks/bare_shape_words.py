"""Does the CLIP find an object named by its shape alone ("the star")? Validation diagnostic.

    REGIONLAB_SHAPES_CLIP=runs/stageN.safetensors python benchmarks/bare_shape_words.py [pil|cv|mpl]

The attribute expressions of 200 validation scenes that name a unique shape without its colour;
ground-truth boxes as proposals; the proposal whose IPS view(s) best match the text, per view
(crop, blur, both summed) and per prompt ("a photo of the star", "a photo of a star.", and the
best over the six colours). Used to choose CLIP stages 14-15 (never on test scenes); results in
benchmarks/results/domain_randomisation/grounding_words/.
"""

import sys

import numpy as np
import torch

from regionlab.shapes.expressions import generate_rec_items
from regionlab.shapes.vocab import COLOUR_NAMES
from regionlab.tasks.reclip import (
    GroundingOptions,
    embed_proposals,
    proposals_from_boxes,
    resolve_models,
)

torch.set_num_threads(2)
clip = resolve_models(None)[0]
items = generate_rec_items("val", 200, 0, kinds=("attribute",),
                           renderer=sys.argv[1] if len(sys.argv) > 1 else "pil")
res: dict[str, list[bool]] = {}
for item in items:
    props = proposals_from_boxes(item.boxes, item.scene.image.shape[:2], "gt")
    emb = embed_proposals(item.scene.image, props, "ips", None, GroundingOptions()).embeddings[0]
    for e in item.expressions:
        if e.subtype != "shape":
            continue
        shape = e.text.split()[-1]

        def score(texts, emb=emb):
            t = torch.nn.functional.normalize(clip.encode_texts(texts).float(), dim=-1)
            return torch.einsum("vpd,td->vpt", emb, t)

        prompts = {"the": score([f"a photo of the {shape}"])[..., 0],
                   "a": score([f"a photo of a {shape}."])[..., 0],
                   "colours": score([f"a photo of a {c} {shape}." for c in COLOUR_NAMES])
                   .max(-1).values}
        for name, s in prompts.items():
            for view, ss in (("crop", s[0]), ("blur", s[1]), ("both", s.sum(0))):
                res.setdefault(f"{view}_{name}", []).append(int(ss.argmax()) == e.target)
for k, v in res.items():
    print(k, round(float(np.mean(v)), 3), len(v))
