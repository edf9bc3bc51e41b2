"""Quality of the classical (offline) segmenter and proposal generator on held-out ShapesWorld.

    python benchmarks/segment_fallback_quality.py [--scenes 500] [--segmenter classical]
        [--renderer pil|cv|mpl] [--size 64|448] [--split test|val]

Targets (issue 5): clicked object mean IoU >= 0.9; proposal recall >= 95% at IoU 0.5.
Scenes: the ShapesWorld "test" split (seed namespace disjoint from training; ``--split val`` to
choose settings), at 64 px (the models' input) or 448 px (the app's example scenes), from our
renderer (``pil``), the independent OpenCV renderer (``cv``) or the matplotlib shift set (``mpl``,
never tuned on). Writes benchmarks/results/segment_fallback_quality[_RENDERER][_SIZE][_val].json
and prints a markdown table.
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
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--split", default="test", choices=["test", "val"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    suffix = "".join([f"_{args.renderer}" if args.renderer != "pil" else "",
                      f"_{args.size}" if args.size != 64 else "",
                      "_val" if args.split == "val" else ""])
    args.out = args.out or OUT.with_name(f"{OUT.stem}{suffix}.json")
    torch.set_num_threads(1)
    scenes = held_out_scenes(args.scenes, size=args.size, renderer=args.renderer,
                             split=args.split)
    t0 = time.time()
    prompts = [evaluate_prompts(scenes, args.segmenter, "click", 1.5),
               evaluate_prompts(scenes, args.segmenter, "click", "centre"),
               evaluate_prompts(scenes, args.segmenter, "click", 0),
               evaluate_prompts(scenes, args.segmenter, "box")]
    props = evaluate_proposals(scenes, args.segmenter)
    result = {
        "benchmark": "segment_fallback_quality",
        "segmenter": args.segmenter,
        "split": args.split, "renderer": args.renderer, "scenes": len(scenes),
        "image_size": args.size,
        "prompts": [as_dict(p) for p in prompts],
        "proposals": {"settings": "defaults (points_per_side 16, max_proposals 50, nms_iou 0.7)",
                      **as_dict(props)},
        "targets": {"click_mean_iou": 0.9, "proposal_recall_at_0_5": 0.95},
        "machine": platform.platform(), "threads": 1,
        "seconds": round(time.time() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| prompt ({args.segmenter}, {len(scenes)} {args.split} scenes, {args.size} px) | objects | mean IoU | "
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
