"""ShapesWorld quality of the bundled CLIP and of region embeddings, one command.

    python benchmarks/shapes_quality.py [--scenes 150] [--model shapes-clip]
    python benchmarks/shapes_quality.py --tune      # MaskInversion grid on the VAL split
    python benchmarks/shapes_quality.py --split val  # for choosing among trained checkpoints
    python benchmarks/shapes_quality.py --scenes 450 --first 600  # a fresh test sample
    REGIONLAB_SHAPES_CLIP=runs/x.safetensors python benchmarks/shapes_quality.py --out x.json
    python benchmarks/shapes_quality.py --renderer cv  # the same on the independent renderer

Held-out TEST-split scenes (the training script only sees the train split). Prints and writes
benchmarks/results/shapes_quality.json (shapes_quality_val.json with --split val,
shapes_mi_tuning.json with --tune, shapes_quality_cv.json with --renderer cv: zero-shot,
masked crops, LeGrad and every region method on scenes of regionlab.shapes.render_cv, which
nothing is trained or tuned on), or the file given by --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from regionlab.eval import shapes_regions as ev
from regionlab.models import load_clip
from regionlab.models.registry import get_spec

ROOT = Path(__file__).resolve().parent


#: MaskInversion grids on val: ``full`` as every stage was tuned; ``edge`` past its largest
#: lr (benchmarks/results/maskinversion_lr_edge_rule.md). Resolution 64 only: 128 never won on
#: val (best 36% vs 50%, shapes_mi_tuning.json of 2026-11-23) and costs three times as long.
TUNE_GRIDS = {"full": ([0.01, 0.03, 0.1, 0.3], [10, 20, 40], [0.0, 1.0]),
              "edge": ([0.1, 0.3, 0.5, 1.0], [5, 10, 20], [0.0])}


def tune(clip, n_scenes: int, grid_name: str = "full") -> dict:
    sc = ev.multi_scenes(n_scenes, split="val")
    rows = []
    grid = itertools.product(*TUNE_GRIDS[grid_name], [64])
    for lr, iters, alpha, res in grid:
        r = ev.region_accuracy(clip, sc, methods=("maskinversion",),
                               mi_options={"lr": lr, "iterations": iters, "alpha": alpha,
                                           "resolution": res})["maskinversion"]
        rows.append({"lr": lr, "iterations": iters, "alpha": alpha, "resolution": res, **r})
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: (r["acc1"], -r["seconds"]))
    return {"split": "val", "scenes": n_scenes, "grid": grid_name, "rows": rows, "best": best}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scenes", type=int, default=150, help="multi-object test scenes")
    p.add_argument("--single", type=int, default=600, help="single-object test scenes")
    p.add_argument("--model", default="shapes-clip")
    p.add_argument("--tune", action="store_true")
    p.add_argument("--tune-grid", choices=sorted(TUNE_GRIDS), default="full")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="val: for choosing checkpoints (written to shapes_quality_val.json)")
    p.add_argument("--first", type=int, default=0,
                   help="start at scene FIRST of each set (a sample no earlier result used)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--renderer", choices=("pil", "cv", "mpl"), default="pil",
                   help="cv: the OpenCV renderer (trained on from CLIP stage 11); mpl: the "
                        "matplotlib renderer (never trained or tuned on: the shift set)")
    p.add_argument("--out", type=Path, default=None,
                   help="write here instead (e.g. for weights chosen by REGIONLAB_SHAPES_CLIP)")
    a = p.parse_args(argv)
    if a.first < 0 or a.scenes < 1 or a.single < 1:
        p.error("--first must be >= 0 and --scenes, --single >= 1")
    torch.set_num_threads(a.threads)
    clip = load_clip(a.model)
    if a.tune:
        res = tune(clip, a.scenes, a.tune_grid)
        out = ROOT / "results" / ("shapes_mi_tuning.json" if a.tune_grid == "full"
                                  else f"shapes_mi_tuning_{a.tune_grid}.json")
    elif a.renderer in ("cv", "mpl"):
        t0 = time.perf_counter()
        res = {"model": a.model, "source": get_spec(a.model, "clip").source, "split": a.split,
               "renderer": f"{a.renderer} (regionlab.shapes.render_{a.renderer})",
               "defaults": clip.defaults, "first": a.first,
               "zero_shot": ev.zero_shot_on(clip, ev.other_renderer_scenes(
                   a.single, a.split, first=a.first, objects=(1, 1), renderer=a.renderer))}
        sc = ev.other_renderer_scenes(a.scenes, a.split, first=a.first, renderer=a.renderer)
        res.update(ev.masked_crops(clip, sc))
        res["legrad"] = ev.legrad_localisation(clip, sc)
        res["region_acc"] = ev.region_accuracy(clip, sc)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        out = (ROOT / "results"
               / f"shapes_quality_{a.renderer}{'' if a.split == 'test' else '_val'}.json")
    else:
        t0 = time.perf_counter()
        res = {"model": a.model, "source": get_spec(a.model, "clip").source, "split": a.split,
               "defaults": clip.defaults, "first": a.first}
        res.update(ev.zero_shot(clip, a.single, split=a.split, first=a.first))
        res["zero_shot_vild"] = ev.zero_shot(clip, a.single, split=a.split, templates="vild",
                                             first=a.first)["zero_shot"]
        sc = ev.multi_scenes(a.scenes, split=a.split, first=a.first)
        res.update(ev.masked_crops(clip, sc))
        res["legrad"] = ev.legrad_localisation(clip, sc)
        res["region_acc"] = ev.region_accuracy(clip, sc)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        suffix = "" if a.split == "test" else "_val"
        out = ROOT / "results" / f"shapes_quality{suffix}.json"
    out = a.out or out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
