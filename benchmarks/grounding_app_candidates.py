"""Grounding as the app runs it: automatic proposals as candidates, 448 px test scenes.

    python benchmarks/grounding_app_candidates.py [--scenes 40]

``benchmarks/reclip_shapes.py`` grounds among the objects' own boxes at 64 px; the app's
Grounding tab grounds, by default, among automatic proposals (the classical engine offline) on
448 px images. This reports that path on held-out TEST scenes of our renderer, the OpenCV
renderer and the matplotlib renderer (the shift set, never trained or tuned on), every
expression kind, report only (nothing is chosen here): right when the chosen proposal's box has
IoU > 0.5 with the target's. Variants from the same forwards: ``default``; ``views only`` (the
membership before the masked crop: IPS views, tolerance 3, gap 10); ``reference`` (ReCLIP);
IPS alone; ``random`` = the share of proposals that would be right; ``reachable`` = whether
any proposal would be (the ceiling the candidates set). The same scenes with the
objects' boxes are reported beside it. Writes benchmarks/results/grounding_app_candidates.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from regionlab.eval.reclip import shapes_rec_benchmark
from regionlab.shapes.expressions import ALL_KINDS
from regionlab.shapes.scenes import RenderOptions
from regionlab.tasks.reclip import GroundingOptions

OUT = Path(__file__).resolve().parent / "results" / "grounding_app_candidates.json"
VARIANTS = {"default": GroundingOptions(),
            "views only": GroundingOptions(membership="views", contrast_tolerance=3.0,
                                           contrast_gap=10.0),
            "reference": GroundingOptions(combine="reference")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    out = {"split": "test", "size": 448, "n_scenes": a.scenes, "sets": {},
           "command": f"python benchmarks/grounding_app_candidates.py --scenes {a.scenes}"}
    for renderer in ("pil", "cv", "mpl"):
        for candidates in ("automatic", "objects"):
            t0 = time.perf_counter()
            res = shapes_rec_benchmark(a.scenes, 0, "test", None, GroundingOptions(), "ips",
                                       VARIANTS, ALL_KINDS, renderer, RenderOptions(size=448),
                                       candidates)
            acc = res["accuracy"]
            row = {"n_expressions": res["n_expressions"], "counts": res["counts"],
                   "seconds": round(time.perf_counter() - t0, 1),
                   "accuracy": {m: {g: acc[m][g] for g in ("all", "spatial", "attribute")
                                    if g in acc[m]} for m in acc},
                   "by_kind_default": {g: v for g, v in acc["default"].items() if "/" not in g}}
            out["sets"][f"{renderer}/{candidates}"] = row
            print(renderer, candidates, res["n_expressions"], row["seconds"], "s",
                  json.dumps(row["accuracy"]), flush=True)
            OUT.write_text(json.dumps(out, indent=2))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
