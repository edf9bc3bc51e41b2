"""What the Region tab's "Add proposals" adds, with and without the objectness filter.

    python benchmarks/add_proposals_quality.py [--scenes 40] [--max-regions 8]

Held-out TEST scenes at 448 px of our renderer, the OpenCV renderer and the matplotlib renderer
(the shift set, never trained or tuned on); the app's default engine offline (classical) and
its default of 8 regions. A region is an object when its mask IoU with an object's mask is
above 0.5. Reports precision (the share of added regions that are objects), recall (the share
of objects added) and regions per scene, for ``service.propose`` without a CLIP (class-agnostic,
as before) and with the bundled CLIP (its objectness filter, labelling's threshold, chosen in
benchmarks/results/grounding_objectness/labelling_rule.md; nothing is tuned here). Writes
benchmarks/results/add_proposals_quality.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from regionlab.segment.proposals import mask_iou_matrix
from regionlab.shapes.renderers import render
from regionlab.shapes.scenes import RenderOptions, split_seed
from regionlab.ui import service

OUT = Path(__file__).resolve().parent / "results" / "add_proposals_quality.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=40)
    p.add_argument("--max-regions", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    logging.getLogger("regionlab.segment").setLevel(logging.ERROR)
    out = {"split": "test", "size": 448, "scenes": a.scenes, "max_regions": a.max_regions,
           "engine": "classical", "sets": {},
           "command": f"python benchmarks/add_proposals_quality.py --scenes {a.scenes} "
                      f"--max-regions {a.max_regions}"}
    for renderer in ("pil", "cv", "mpl"):
        counts = {k: {"added": 0, "objects_added": 0, "objects_found": 0} for k in
                  ("class-agnostic", "objectness filter")}
        n_objects, t0 = 0, time.perf_counter()
        for i in range(a.scenes):
            sc = render(renderer, split_seed("test", i), RenderOptions(size=448))
            objects = np.stack([o.mask for o in sc.objects])
            n_objects += len(objects)
            for name, clip in (("class-agnostic", None), ("objectness filter", "shapes-clip")):
                props = service.propose(sc.image, method="classical", max_regions=a.max_regions,
                                        clip=clip)
                c = counts[name]
                c["added"] += len(props)
                if not props:
                    continue
                masks = np.stack([q["mask"] for q in props])
                iou = mask_iou_matrix(np.concatenate([masks, objects]))[:len(masks),
                                                                         len(masks):]
                c["objects_added"] += int((iou.max(1) > 0.5).sum())
                c["objects_found"] += int((iou.max(0) > 0.5).sum())
        out["sets"][renderer] = {
            "objects": n_objects, "seconds": round(time.perf_counter() - t0, 1),
            **{name: {"precision": round(c["objects_added"] / max(c["added"], 1), 4),
                      "recall": round(c["objects_found"] / n_objects, 4),
                      "regions_per_scene": round(c["added"] / a.scenes, 2)}
               for name, c in counts.items()}}
        print(renderer, json.dumps(out["sets"][renderer]), flush=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
