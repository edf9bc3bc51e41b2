"""Where OVSeg labelling time goes: the whole ``label()`` call vs ONE batched forward of all crops.

    python benchmarks/ovseg_speed.py [--reps 5] [--skip-vit-b]

Settings (CPU, 1 thread, text embeddings cached after a warm-up call, as in the app):
- ``shapes-clip``: the bundled CLIP on 64 px ShapesWorld test scenes, with the classical
  fallback's proposals (up to 50) and with the ground-truth masks, 30 classes;
- ``ViT-B-16 (random init)``: open_clip's ViT-B/16 architecture with random weights (speed
  only; no pretrained weights here) on a 512 px ShapesWorld scene with 4 objects, 224 px crops,
  the fallback's proposals, 20 VOC classes.

For each: the median time of ``label(image, classes, masks=precomputed proposals)`` (crops +
forward + classification + fusion + overlay), the share of the ONE batched forward of all crops
inside those calls (from the call's own timings), the same forward timed alone, and the label
time including the automatic proposal generation.
Writes benchmarks/results/ovseg_speed.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from regionlab.tasks.ovseg import LabelOptions, encode_crops, label, region_crops
from regionlab.tasks.vocabularies import VOC

OUT = Path(__file__).resolve().parent / "results" / "ovseg_speed.json"


def _timed(fn, reps: int) -> tuple[float, list]:
    """(median wall time, results of every call)."""
    times, results = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        results.append(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), results


def _vit_b16_random():
    import open_clip

    from regionlab.models.clip import OPENAI_MEAN, OPENAI_STD, REAL_DEFAULTS, LoadedCLIP

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None).eval().requires_grad_(False)
    return LoadedCLIP("ViT-B-16 (random init)", model, open_clip.get_tokenizer("ViT-B-16"), 224,
                      OPENAI_MEAN, OPENAI_STD, torch.device("cpu"), torch.float32,
                      dict(REAL_DEFAULTS))


def measure(clip, image: np.ndarray, classes: list[str], masks: np.ndarray, reps: int,
            proposals: str | None, setting: str) -> dict:
    opts = LabelOptions(fusion="demo", render=True)
    label(image, classes, masks=masks, clip=clip, options=opts)  # warm-up: text cache, imports
    t_label, results = _timed(lambda: label(image, classes, masks=masks, clip=clip,
                                            options=opts), reps)
    crops, _, _ = region_crops(image, masks, clip.image_size, clip.mean, clip.std)
    t_fwd, _ = _timed(lambda: encode_crops(clip, crops), reps)
    share = statistics.median(r.timings["forward_s"] / r.timings["total_s"] for r in results)
    parts = {k: round(statistics.median(r.timings[k] for r in results), 4)
             for k in results[0].timings}
    row = {"setting": setting, "model": clip.name, "image_px": image.shape[0],
           "crop_px": clip.image_size, "masks": int(len(masks)), "classes": len(classes),
           "reps": reps, "label_s": round(t_label, 4),
           "forward_share_in_call": round(share, 3), "breakdown_median_s": parts,
           "one_batched_forward_alone_s": round(t_fwd, 4),
           "forward_alone_over_label": round(t_fwd / t_label, 3)}
    if proposals is not None:
        same = dataclasses.replace(opts, max_proposals=len(masks))  # the same proposals
        t_all, res_all = _timed(lambda: label(image, classes, proposals=proposals, clip=clip,
                                              options=same), max(1, reps // 2))
        row.update({"label_with_proposals_s": round(t_all, 4),
                    "forward_share_in_call_with_proposals": round(statistics.median(
                        r.timings["forward_s"] / r.timings["total_s"] for r in res_all), 3),
                    "proposals_s": round(statistics.median(
                        r.timings["proposals_s"] for r in res_all), 4)})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--scenes", type=int, default=3, help="ShapesWorld scenes (shapes-clip)")
    ap.add_argument("--skip-vit-b", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from regionlab.models import load_clip
    from regionlab.segment.proposals import generate_proposals
    from regionlab.shapes.scenes import RenderOptions, generate_scenes, render_scene
    from regionlab.shapes.vocab import CLASSES

    rows = []
    clip = load_clip()
    from regionlab.models import get_spec

    weights = get_spec(clip.name).extra.get("path")
    sha = None
    if weights:
        import hashlib

        sha = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:16]
    for sc in generate_scenes("test", args.scenes, seed=7,
                              options=RenderOptions(min_objects=4, max_objects=4)):
        props = np.stack([p.mask for p in generate_proposals(sc.image, "classical",
                                                             max_proposals=50)])
        rows.append(measure(clip, sc.image, list(CLASSES), props, args.reps, "fallback",
                            "shapes-clip, 64 px, fallback proposals"))
        gt = np.stack([o.mask for o in sc.objects])
        rows.append(measure(clip, sc.image, list(CLASSES), gt, args.reps, None,
                            "shapes-clip, 64 px, ground-truth masks"))
    if not args.skip_vit_b:
        vit = _vit_b16_random()
        sc = render_scene((2, 7, 0), RenderOptions(size=512, min_objects=4, max_objects=4))
        props = np.stack([p.mask for p in generate_proposals(sc.image, "classical",
                                                             max_proposals=32)])
        rows.append(measure(vit, sc.image, list(VOC), props, max(1, args.reps // 2), "fallback",
                            "ViT-B/16 (random init), 512 px, fallback proposals"))
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k != "breakdown_median_s"}), flush=True)
    result = {"benchmark": "ovseg_speed", "rows": rows, "threads": 1, "device": "cpu",
              "shapes_clip_weights": weights, "weights_sha256_16": sha,
              "machine": platform.platform(), "torch": torch.__version__,
              "command": f"python benchmarks/ovseg_speed.py --reps {args.reps} "
                         f"--scenes {args.scenes}" + (" --skip-vit-b" if args.skip_vit_b else "")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| setting | masks | label() s | forward share (same call) | forward alone s | "
          "label() incl. proposals s | forward share incl. proposals |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['masks']} | {r['label_s']:.3f} | "
              f"{r['forward_share_in_call']:.0%} | {r['one_batched_forward_alone_s']:.3f} | "
              f"{r.get('label_with_proposals_s', float('nan')):.3f} | "
              f"{r.get('forward_share_in_call_with_proposals', float('nan')):.0%} |")


if __name__ == "__main__":
    main()
