"""Quality of the classical (offline) segmenter and proposal generator on held-out ShapesWorld.

    python benchmarks/segment_fallback_quality.py [--scenes 500] [--segmenter classical]
        [--renderer pil|cv]

Targets (issue 5): clicked object mean IoU >= 0.9; proposal recall >= 95% at IoU 0.5.
Scenes: the ShapesWorld "test" split (seed namespace disjoint from training), 64 px, from our
renderer (``pil``) or the independent OpenCV renderer (``cv``, a shift set nothing is tuned on).
Writes benchmarks/results/segment_fallback_quality[_cv].json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from regionlab.segment.evaluate import (
    as_dict,
    evaluate_prompts,
    evaluate_proposals,
    held_out_scenes,
)

OUT = Path(__file__).resolve().parent / "results" / "segment_fallback_quality.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=500)
    ap.add_argument("--segmenter", default="classical")
    ap.add_argument("--renderer", default="pil", choices=["pil", "cv", "mpl"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    args.out = args.out or (OUT if args.renderer == "pil"
                            else OUT.with_name(f"{OUT.stem}_{args.renderer}.json"))
    torch.set_num_threads(1)
    if args.renderer in ("cv", "mpl"):
        from regionlab.shapes.renderers import render
        from regionlab.shapes.scenes import SPLITS

        scenes = [render(args.renderer, (SPLITS["test"], 0, i)) for i in range(args.scenes)]
    else:
        scenes = held_out_scenes(args.scenes)
    t0 = time.time()
    prompts = [evaluate_prompts(scenes, args.segmenter, "click", 1.5),
               evaluate_prompts(scenes, args.segmenter, "click", "centre"),
               evaluate_prompts(scenes, args.segmenter, "click", 0),
               evaluate_prompts(scenes, args.segmenter, "box")]
    props = evaluate_proposals(scenes, args.segmenter)
    result = {
        "benchmark": "segment_fallback_quality",
        "segmenter": args.segmenter,
        "split": "test", "renderer": args.renderer, "scenes": len(scenes), "image_size": 64,
        "prompts": [as_dict(p) for p in prompts],
        "proposals": {"settings": "defaults (points_per_side 16, max_proposals 50, nms_iou 0.7)",
                      **as_dict(props)},
        "targets": {"click_mean_iou": 0.9, "proposal_recall_at_0_5": 0.95},
        "machine": platform.platform(), "threads": 1,
        "seconds": round(time.time() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| prompt ({args.segmenter}, {len(scenes)} test scenes) | objects | mean IoU | "
          "median IoU | IoU >= 0.9 | ms/object |")
    print("|---|---|---|---|---|---|")
    for p in prompts:
        print(f"| {p.prompt} | {p.objects} | {p.mean_iou:.3f} | {p.median_iou:.3f} | "
              f"{100 * p.share_iou_at_least_0_9:.1f}% | {1000 * p.seconds_per_object:.1f} |")
    print()
    print("| proposals | objects | recall@0.5 | mean best IoU | proposals/image | ms/image |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.segmenter} | {props.objects} | {100 * props.recall_at_0_5:.1f}% | "
          f"{props.mean_best_iou:.3f} | {props.mean_proposals:.1f} | "
          f"{1000 * props.seconds_per_image:.0f} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
