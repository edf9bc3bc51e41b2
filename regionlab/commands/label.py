"""``regionlab label``: open-vocabulary labelling of mask proposals into an index-image map.

    regionlab label IMAGE --classes "cat, dog, sofa" [--proposals auto|sam|fallback|DIR]
                    [--mask M ...] --out map.png --json
    regionlab label --manifest items.jsonl --out-dir results/ --json

The map PNG is an index image: 0 = unlabelled, k = the k-th class of the given list (1-based;
8-bit palette PNG up to 255 classes, 16-bit greyscale beyond). Next to it: ``*_overlay.png``
(colours + legend) and, for automatic proposals, the proposal masks (``*_masks/NNN.png``).
A class name containing a comma can only be given in a manifest ``classes`` list (command-line
strings and vocabulary files are split on commas).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..inputs import load_image
from . import add_model_argument, as_list, save_mask_png

NAME = "label"
HELP = "label mask proposals with open-vocabulary classes (OVSeg) into a label map"
MANIFEST_KEYS = ("image (path), classes (list or comma string), masks (list of mask PNGs used as "
                 "the proposals), proposals (auto|sam|fallback|DIR), out (map PNG), fusion, crop, "
                 "square, top_k, min_score, ensemble, templates, model")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")


def add_arguments(p) -> None:
    p.add_argument("image", nargs="?", help="image file")
    p.add_argument("--classes", default=None,
                   help="comma-separated classes, a vocabulary file, or voc/coco/shapes")
    p.add_argument("--proposals", default="auto",
                   help="auto (SAM if available, else the classical fallback), sam, fallback, "
                        "a SAM model name (sam-vit-b, ...), or a folder of mask PNGs")
    p.add_argument("--mask", action="append", default=None, metavar="M",
                   help="a mask PNG used as a proposal (repeatable; overrides --proposals)")
    p.add_argument("--out", type=Path, default=None, help="label map PNG to write")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="folder for map.png, overlay.png, masks/ (manifest: DIR/<line>/)")
    p.add_argument("--fusion", choices=["demo", "eval"], default="demo",
                   help="demo: best mask per class; eval: soft sum over masks, argmax")
    p.add_argument("--crop", choices=["masked", "box"], default="masked",
                   help="masked (OVSeg: mean fill outside the mask) or box (plain crop)")
    p.add_argument("--square", action="store_true", help="square crops instead of tight boxes")
    p.add_argument("--templates", choices=["single", "vild", "imagenet"], default="vild")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--min-score", type=float, default=0.0,
                   help="masks whose best class probability is lower stay unlabelled")
    p.add_argument("--ensemble", type=float, default=0.0, metavar="LAMBDA",
                   help="blend with MaskInversion probabilities: p^(1-L) * p_mi^L (0 = off)")
    p.add_argument("--no-others", action="store_true",
                   help="with a single class, do not add the 'others' competitor")
    p.add_argument("--max-proposals", type=int, default=None,
                   help="at most this many automatic proposals (default 50, limit 200)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="crops per forward (default: all crops in one forward)")
    p.add_argument("--ovseg-checkpoint", default=None,
                   help="OVSeg checkpoint (.pth/.safetensors): use its mask-adapted ViT-L/14")
    add_model_argument(p)


def item_from_args(args, manifest: bool) -> dict:
    item = {
        "classes": args.classes, "proposals": args.proposals, "fusion": args.fusion,
        "crop": args.crop, "square": args.square, "templates": args.templates,
        "top_k": args.top_k, "min_score": args.min_score, "ensemble": args.ensemble,
        "others": not args.no_others, "max_proposals": args.max_proposals,
        "batch_size": args.batch_size, "model": args.model,
        "ovseg_checkpoint": args.ovseg_checkpoint,
    }
    if args.mask:
        item["masks"] = list(args.mask)
    if not manifest:
        item["image"] = args.image
        item["out"] = args.out
    return item


def _mask_dir(path: Path) -> list[str]:
    files = sorted(str(f) for f in path.iterdir() if f.suffix.lower() in MASK_SUFFIXES)
    if not files:
        raise InputError(f"proposal folder {path} holds no mask images "
                         f"({', '.join(MASK_SUFFIXES)})")
    return files


def _outputs(item: dict, out_dir: Path | None) -> tuple[Path, Path, Path]:
    """(map PNG, overlay PNG, proposal-mask folder)."""
    if out_dir is not None:
        return out_dir / "map.png", out_dir / "overlay.png", out_dir / "masks"
    out = item.get("out")
    if not out:
        raise InputError("give --out MAP.png (or --out-dir DIR) for the label map")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise InputError(f"--out must be a .png file (an index image), got {out}")
    return out, out.with_name(out.stem + "_overlay.png"), out.with_name(out.stem + "_masks")


def run(item: dict, args, out_dir) -> dict:
    from PIL import Image

    from .. import viz
    from ..tasks.ovseg import PROPOSAL_SOURCES, LabelOptions, _is_sam_name, label

    image_path = item.get("image")
    if not image_path:
        raise InputError("no image given")
    if item.get("classes") in (None, "", []):
        raise InputError("no classes given: use --classes 'cat, dog' (or a manifest 'classes')")
    image = load_image(image_path)
    masks = as_list(item.get("masks")) or None
    proposals = str(item.get("proposals") or "auto")
    if masks is None and proposals not in PROPOSAL_SOURCES and not _is_sam_name(proposals):
        folder = Path(proposals).expanduser()
        if not folder.is_dir():
            raise InputError(f"--proposals must be one of {PROPOSAL_SOURCES}, a SAM model name "
                             f"or a folder of mask PNGs; {folder} is neither")
        masks = _mask_dir(folder)
    model = item.get("model")
    if item.get("ovseg_checkpoint"):
        from ..models.ovseg_clip import register_ovseg_checkpoint

        model = register_ovseg_checkpoint(item["ovseg_checkpoint"])
    options = LabelOptions(
        fusion=item.get("fusion", "demo"), crop=item.get("crop", "masked"),
        square=bool(item.get("square", False)), templates=item.get("templates", "vild"),
        top_k=item.get("top_k", 5), min_score=item.get("min_score", 0.0),
        ensemble=item.get("ensemble", 0.0), others=bool(item.get("others", True)),
        max_proposals=item.get("max_proposals") or 50,
        batch_size=item.get("batch_size"),
    )
    map_path, overlay_path, masks_dir = _outputs(item, out_dir)
    result = label(image, item["classes"], masks=masks,
                   proposals=proposals if masks is None else "auto", options=options,
                   model=model)
    map_path.parent.mkdir(parents=True, exist_ok=True)
    viz.index_image(result.label_map, viz.palette(len(result.classes))).save(map_path)
    Image.fromarray(result.overlay).save(overlay_path)
    regions = []
    for i, r in enumerate(result.regions):
        path = str(masks[i]) if masks is not None and isinstance(masks[i], (str, Path)) else \
            save_mask_png(r.mask, masks_dir / f"{i:03d}.png")
        regions.append({"mask": path, "box": list(r.box), "label": r.label, "top": r.top,
                        "proposal_score": r.proposal_score})
    return {"image": str(image_path), "map": str(map_path), "overlay": str(overlay_path),
            "classes": result.classes, "regions": regions, "fusion": result.fusion,
            "proposals": result.proposals, "notice": result.notice,
            **({"warnings": result.warnings} if result.warnings else {})}
