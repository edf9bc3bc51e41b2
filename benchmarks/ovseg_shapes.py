"""OVSeg labelling mIoU on held-out ShapesWorld scenes with the bundled CLIP.

    python benchmarks/ovseg_shapes.py [--scenes 300] [--val-scenes 100]

Proposals: the objects' ground-truth masks, and automatic proposals (SAM when a checkpoint is
here, else the classical fallback). Classifiers, side by side: masked crop (OVSeg), plain crop
(tight box, no mean fill), square masked crop, MaskInversion alone, the geometric ensemble
``p_crop^(1-lambda) * p_mi^lambda``, and the masked crop with a ``min_score`` (masks below it
stay unlabelled). Evaluation fusion (soft sum, argmax) for every row, plus the demo fusion of
the masked crop for reference. 30 classes; background pixels are ground-truth 0, so a class
painted on background is a false positive. Test split = the ShapesWorld "test" seed namespace
(never used in training); lambda and min_score are chosen on the "val" split.

Writes benchmarks/results/ovseg_shapes.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import time
from pathlib import Path

import torch

from regionlab.eval.ovseg import evaluate_shapes_variants
from regionlab.models import get_spec, load_clip
from regionlab.tasks.ovseg import LabelOptions

OUT = Path(__file__).resolve().parent / "results" / "ovseg_shapes.json"
LAMBDAS = (0.3, 0.5, 0.7)
MIN_SCORES = (0.0, 0.3, 0.5, 0.7, 0.9)


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=300, help="held-out test scenes")
    ap.add_argument("--val-scenes", type=int, default=100, help="validation scenes (lambda)")
    ap.add_argument("--auto-scenes", type=int, default=None,
                    help="test scenes for automatic proposals (default: --scenes)")
    ap.add_argument("--auto-val-scenes", type=int, default=None,
                    help="validation scenes for automatic proposals (default: --val-scenes)")
    ap.add_argument("--proposals", nargs="+", default=["gt", "auto"])
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    clip = load_clip(args.model)
    spec = get_spec(clip.name)
    weights = spec.extra.get("path")
    sha = _sha(weights) if weights else None  # of the file actually loaded (read it now)
    base = LabelOptions(fusion="eval", render=False)
    t0 = time.time()
    rows, tuning = [], {}
    for prop in args.proposals:
        # lambda of the ensemble (and nothing else) is chosen on validation scenes
        t1 = time.perf_counter()
        grid = {("lambda", lam): dataclasses.replace(base, ensemble=lam) for lam in LAMBDAS}
        grid.update({("min_score", t): dataclasses.replace(base, min_score=t)
                     for t in MIN_SCORES})
        n_test = args.scenes if prop == "gt" else (args.auto_scenes or args.scenes)
        n_val = args.val_scenes if prop == "gt" else (args.auto_val_scenes or args.val_scenes)
        val = evaluate_shapes_variants(grid, clip, n=n_val, split="val", proposals=prop)
        best = max(LAMBDAS, key=lambda lam: val[("lambda", lam)]["miou"])
        thr = max(MIN_SCORES, key=lambda t: val[("min_score", t)]["miou"])
        tuning[prop] = {"val_miou": {f"{k}={v}": round(r["miou"], 4) for (k, v), r in val.items()},
                        "lambda": best, "min_score": thr,
                        "seconds": round(time.perf_counter() - t1, 1)}
        variants = {
            "masked crop": base,
            "crop (no mean fill)": dataclasses.replace(base, crop="box"),
            "masked crop, square box": dataclasses.replace(base, square=True),
            "MaskInversion": dataclasses.replace(base, ensemble=1.0),
            f"masked crop x MaskInversion (lambda {best})":
                dataclasses.replace(base, ensemble=best),
            "masked crop, demo fusion": dataclasses.replace(base, fusion="demo"),
            f"masked crop, min_score {thr}": dataclasses.replace(base, min_score=thr),
        }
        res = evaluate_shapes_variants(variants, clip, n=n_test, split="test", proposals=prop)
        for name, r in res.items():
            r["method"] = name
            rows.append(r)
            print(f"{prop:5s} {name:45s} mIoU {r['miou']:.4f}  acc {r['pixel_accuracy']:.4f}  "
                  f"objects {r['miou_object_pixels']:.4f}  "
                  f"bgFP {r['background_false_positive_rate']:.4f}", flush=True)
    result = {
        "benchmark": "ovseg_shapes",
        "model": clip.name, "weights": weights, "weights_sha256_16": sha,
        "split": "test",
        "image_size": 64, "classes": 30, "templates": base.templates,
        "mi_settings": {k: clip.defaults.get(k) for k in ("mi_iterations", "mi_lr",
                                                          "mi_resolution")},
        "tuning": tuning, "rows": rows,
        "machine": platform.platform(), "threads": 1, "seconds": round(time.time() - t0, 1),
        "command": f"python benchmarks/ovseg_shapes.py --scenes {args.scenes} --val-scenes "
                   f"{args.val_scenes} --auto-scenes {args.auto_scenes or args.scenes} "
                   f"--auto-val-scenes {args.auto_val_scenes or args.val_scenes}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| proposals | classifier (eval fusion unless noted) | test scenes | mIoU | "
          "mIoU on object pixels | object pixel acc. | background FP rate | proposals/scene |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['proposals']} | {r['method']} | {r['scenes']} | {r['miou']:.3f} | "
              f"{r['miou_object_pixels']:.3f} | {r['pixel_accuracy']:.3f} | "
              f"{r['background_false_positive_rate']:.3f} | "
              f"{r['mean_proposals']} |")


if __name__ == "__main__":
    main()
