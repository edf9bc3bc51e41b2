"""``regionlab shapes export``: a ShapesWorld split in a standard dataset format.

``regionlab shapes export --format coco|reclip|semseg --out DIR --n N --seed S`` writes what
``regionlab eval classify`` (COCO instances), ``eval ground`` (ReCLIP JSONL) and ``eval label``
(image + index-PNG label folders) read; see :mod:`regionlab.eval.shapes_export`.
``regionlab shapes-dataset`` keeps writing the project's own layout (one mask PNG per object).
"""

from __future__ import annotations

from pathlib import Path

NAME = "shapes"
HELP = "ShapesWorld data: 'export' writes a split as COCO instances, ReCLIP JSONL or semseg PNGs"
MANIFEST_KEYS = ""
TAKES_MANIFEST = False


def add_arguments(p) -> None:
    from ..eval.shapes_export import FORMATS

    p.add_argument("action", choices=["export"], help="what to do")
    p.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    p.add_argument("--out", "--out-dir", dest="out_dir", type=Path, required=True)
    p.add_argument("--n", type=int, default=100, help="number of scenes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--size", type=int, default=64, help="image side (coco, semseg)")
    p.add_argument("--min-objects", type=int, default=1, help="coco, semseg")
    p.add_argument("--max-objects", type=int, default=4, help="coco, semseg")
    p.add_argument("--uncompressed-rle", action="store_true",
                   help="coco: masks as uncompressed RLE (run-length lists), not compressed")
    p.add_argument("--kinds", default="attribute,relation,superlative",
                   help="reclip: expression kinds (attribute, relation, superlative, everyday)")
    p.add_argument("--renderer", default="pil", choices=["pil", "cv", "mpl"],
                   help="reclip: ours (pil) or another renderer (cv: OpenCV, mpl: matplotlib)")


def item_from_args(args, manifest: bool) -> dict:
    return {}


def run(item: dict, args, out_dir) -> dict:
    from ..eval.shapes_export import export

    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    return export(args.out_dir, args.fmt, args.n, args.split, args.seed, size=args.size,
                  min_objects=args.min_objects, max_objects=args.max_objects,
                  compressed=not args.uncompressed_rle, kinds=kinds, renderer=args.renderer)
