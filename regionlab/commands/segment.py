"""``regionlab segment``: clicks and/or a box -> a mask (SAM, or the classical fallback)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from . import save_mask_png

NAME = "segment"
HELP = "segment an object from clicks and/or a box (SAM, or the classical offline fallback)"
MANIFEST_KEYS = ("image (path), points ([[x, y, label], ...]; label 1 = object, 0 = "
                 "background), box ([x0, y0, x1, y1], exclusive ends), segmenter, multimask")


def parse_numbers(text: str, what: str, counts: tuple[int, ...]) -> list[float]:
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise InputError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if len(vals) not in counts:
        raise InputError(f"{what} needs {' or '.join(map(str, counts))} numbers, got {text!r}")
    return vals


def add_arguments(p) -> None:
    p.add_argument("image", nargs="?", help="image file")
    p.add_argument("--point", action="append", default=[], metavar="X,Y[,LABEL]",
                   help="a click in pixels (x right, y down); label 1 = object (default), "
                        "0 = background; repeatable")
    p.add_argument("--box", default=None, metavar="X0,Y0,X1,Y1",
                   help="a box in pixels, exclusive ends")
    p.add_argument("--segmenter", default=None,
                   help="sam-vit-b, sam-vit-l, sam-vit-h, ARCH@checkpoint.pth or classical "
                        "(default: REGIONLAB_SAM, else a SAM with weights here, else classical)")
    p.add_argument("--multimask", action="store_true",
                   help="also write every candidate mask (best first)")
    p.add_argument("--out", type=Path, default=None, help="mask PNG to write")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="folder for mask.png (per manifest line: OUT_DIR/<line>/)")


def item_from_args(args, manifest: bool) -> dict:
    item = {"segmenter": args.segmenter, "multimask": args.multimask}
    if not manifest:
        item["image"] = args.image
        item["points"] = [parse_numbers(s, "--point", (2, 3)) for s in args.point]
        item["box"] = parse_numbers(args.box, "--box", (4,)) if args.box else None
    return item


def _segmenter_for(item: dict, args):
    """Reuse the segmenter (and so the image embedding) of the previous line for the same
    image: one embedding per image across a manifest."""
    from ..segment.interactive import make_segmenter

    key = (item.get("segmenter"), str(item["image"]))
    cache = args.__dict__.setdefault("_segment_cache", {})
    if key not in cache:
        cache.clear()  # keep one image's state at a time
        seg = make_segmenter(item.get("segmenter"))
        seg.set_image(item["image"])
        cache[key] = seg
    return cache[key]


def run(item: dict, args, out_dir) -> dict:
    if not item.get("image"):
        raise InputError("no image given")
    points = item.get("points") or []
    if isinstance(points, str):
        points = [parse_numbers(s, "points", (2, 3)) for s in points.split(";") if s.strip()]
    box = item.get("box")
    if isinstance(box, str):
        box = parse_numbers(box, "box", (4,))
    out = item.get("out") or (None if out_dir else getattr(args, "out", None))
    if out_dir is not None:
        path = Path(out_dir) / (Path(out).name if out else "mask.png")
    elif out:
        path = Path(out)
    else:
        raise InputError("give --out mask.png or --out-dir DIR")
    seg = _segmenter_for(item, args)
    multimask = bool(item.get("multimask", False))
    res = seg.predict(points, box, multimask=multimask)
    result = {"image": str(item["image"]), "mask": save_mask_png(res.mask, path),
              "score": round(res.score, 4), "segmenter": res.segmenter, "fallback": res.fallback,
              "area": int(res.mask.sum())}
    if res.notice:
        result["notice"] = res.notice
    if multimask:
        result["candidates"] = [
            {"mask": save_mask_png(m, path.with_name(f"{path.stem}_{i}{path.suffix}")),
             "score": round(float(s), 4)} for i, (m, s) in enumerate(zip(res.masks, res.scores))]
    return result
