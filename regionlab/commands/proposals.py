"""``regionlab proposals``: class-agnostic mask proposals (SAM's automatic mask generator, or
the classical offline fallback)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from . import save_mask_png

NAME = "proposals"
HELP = "class-agnostic mask proposals (SAM automatic masks, or the classical offline fallback)"
MANIFEST_KEYS = ("image (path), method, points_per_side, pred_iou_thresh, "
                 "stability_score_thresh, min_area, min_region_area, max_proposals, nms_iou")
OPTIONS = ("method", "points_per_side", "pred_iou_thresh", "stability_score_thresh",
           "min_area", "min_region_area", "max_proposals", "nms_iou")


def add_arguments(p) -> None:
    p.add_argument("image", nargs="?", help="image file")
    p.add_argument("--method", default="auto",
                   help="auto, classical, or a SAM name (sam-vit-b, ARCH@checkpoint.pth)")
    p.add_argument("--points-per-side", type=int, default=None,
                   help="seed grid per side (SAM default 32, classical 16)")
    p.add_argument("--pred-iou-thresh", type=float, default=None, help="SAM default 0.88")
    p.add_argument("--stability-score-thresh", type=float, default=None,
                   help="SAM default 0.95; classical: minimum score (default 0)")
    p.add_argument("--min-area", type=int, default=None,
                   help="drop masks smaller than this (pixels; default 0.1%% of the image)")
    p.add_argument("--min-region-area", type=int, default=0,
                   help="SAM: remove islands/holes below this many pixels")
    p.add_argument("--max-proposals", type=int, default=50)
    p.add_argument("--nms-iou", type=float, default=0.7, help="mask-IoU threshold of the NMS")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="folder for the mask PNGs (per manifest line: OUT_DIR/<line>/)")


def item_from_args(args, manifest: bool) -> dict:
    item = {k: getattr(args, k) for k in OPTIONS}
    if not manifest:
        item["image"] = args.image
    return item


def run(item: dict, args, out_dir) -> dict:
    from ..segment.proposals import generate_proposals

    if not item.get("image"):
        raise InputError("no image given")
    if out_dir is None:
        raise InputError("give --out-dir DIR for the mask PNGs")
    opts = {k: item[k] for k in OPTIONS if k in item and item[k] is not None and k != "method"}
    props = generate_proposals(item["image"], item.get("method") or "auto", **opts)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "image": str(item["image"]),
        "source": props[0].source if props else None,
        "fallback": bool(props) and props[0].source == "classical",
        "proposals": [{"mask": save_mask_png(p.mask, folder / f"proposal_{i:03d}.png"),
                       "box": list(p.box), "score": round(p.score, 4), "area": p.area}
                      for i, p in enumerate(props)],
    }
