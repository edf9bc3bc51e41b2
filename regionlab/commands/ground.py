"""``regionlab ground``: find the region a referring expression describes (ReCLIP)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..inputs import load_image
from . import as_list

NAME = "ground"
HELP = "ground a referring expression among boxes, masks or automatic proposals (ReCLIP)"
MANIFEST_KEYS = ("image (path), expression, boxes ([[x0, y0, x1, y1], ...] or a JSON file), "
                 "masks (list of mask paths), detections (JSON file), image_id, scorer, models, "
                 "blur_sigma, area_prior, no_parser, combine, temperature, margin, contrast, "
                 "contrast_tolerance, contrast_gap, membership, object_min_cos, "
                 "fragment_min_inside")


def add_arguments(p) -> None:
    p.add_argument("image", nargs="?", help="image file")
    p.add_argument("expression", nargs="?", help='referring expression, e.g. "the red circle '
                   'left of the blue square"')
    p.add_argument("--boxes", default=None,
                   help="JSON file: [[x0, y0, x1, y1], ...] in pixels (or {\"boxes\": [...]}); "
                        "`index` in the output counts into this list")
    p.add_argument("--mask", action="append", default=[], help="proposal mask PNG (repeatable)")
    p.add_argument("--detections", default=None,
                   help="detections JSON (COCO results or {image_id: [...]}) as proposals")
    p.add_argument("--image-id", default=None, help="image id to select in --detections")
    p.add_argument("--scorer", default="ips", choices=["ips", "masked-crop", "maskinversion"])
    p.add_argument("--model", dest="models", action="append", default=None,
                   help="CLIP name or ARCH@SOURCE; repeat for an ensemble (default: "
                        "REGIONLAB_CLIP or shapes-clip)")
    p.add_argument("--blur-sigma", type=float, default=None,
                   help="blur view sigma in px (default 100 px scaled by longest side / 640, "
                        "at most 100)")
    p.add_argument("--area-prior", action="store_true",
                   help="drop proposals smaller than 5%% of the image (ReCLIP's prior)")
    p.add_argument("--no-parser", action="store_true", help="IPS alone (no relation parser)")
    p.add_argument("--combine", default="tree", choices=["tree", "calibrated", "reference"],
                   help="how CLIP and the parse tree decide: tree (default: the tree's own "
                        "distribution), calibrated (IPS(full) x tree at the model's logit "
                        "scale), reference (ReCLIP: IPS(full) x tree at 100 * cos)")
    p.add_argument("--temperature", type=float, default=None,
                   help="softmax temperature (default: 1 for tree, 24 for calibrated, 1 for "
                        "reference; chosen on validation scenes of the bundled CLIP)")
    p.add_argument("--margin", type=float, default=None,
                   help="membership margin in logits: proposals within it of the best match "
                        "of a noun phrase count as equally good (default: 12 for tree, 0 else)")
    p.add_argument("--contrast", type=float, default=None,
                   help="contrastive membership weight: a proposal that CLIP reads as a phrase "
                        "one known word away ('the square' for 'the circle') is lowered by "
                        "this times its preference beyond 4 logits (default: 1 for tree, 0 else; "
                        "only models that declare word groups, such as the bundled CLIP)")
    p.add_argument("--contrast-tolerance", type=float, default=None,
                   help="logits by which a proposal may prefer a one-word variant before the "
                        "contrastive penalty starts (default 4)")
    p.add_argument("--contrast-gap", type=float, default=None,
                   help="logits by which a proposal may read a noun phrase worse than the "
                        "proposal that reads it best before the contrastive penalty starts "
                        "(default inf: no relative test)")
    p.add_argument("--membership", default=None, choices=["views", "masked-crop", "both"],
                   help="what the contrastive membership reads with the ips scorer: the IPS "
                        "views, each proposal's masked crop (proposal masks, or the classical "
                        "box segmenter's mask for boxes) or both summed (default: both, chosen "
                        "on validation scenes)")
    p.add_argument("--object-min-cos", type=float, default=None,
                   help="automatic proposals only: leave out candidates whose masked crop "
                        "reads as no class the model knows (best class cosine below this; "
                        "default: the model's tuned value, bundled CLIP only; -1 turns it off)")
    p.add_argument("--fragment-min-inside", type=float, default=None,
                   help="automatic proposals only: leave out kept candidates lying at least this "
                        "share inside a larger kept one (fragments; default: the model's tuned "
                        "value, bundled CLIP only; 0 turns it off)")


def item_from_args(args, manifest: bool) -> dict:
    item = {"boxes": args.boxes, "masks": args.mask or None, "detections": args.detections,
            "image_id": args.image_id, "scorer": args.scorer, "models": args.models,
            "blur_sigma": args.blur_sigma, "area_prior": args.area_prior,
            "no_parser": args.no_parser, "combine": args.combine,
            "temperature": args.temperature, "margin": args.margin,
            "contrast": args.contrast, "contrast_tolerance": args.contrast_tolerance,
            "contrast_gap": args.contrast_gap, "membership": args.membership,
            "object_min_cos": args.object_min_cos,
            "fragment_min_inside": args.fragment_min_inside}
    if not manifest:
        item["image"] = args.image
        item["expression"] = args.expression
    return item


def _read_boxes(value):
    if value is None or isinstance(value, list):
        return value
    path = Path(str(value))
    if not path.is_file():
        raise InputError(f"boxes file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"boxes file {path} is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("boxes")
    if not isinstance(data, list):
        raise InputError(f"boxes file {path} must hold a list [[x0, y0, x1, y1], ...]")
    return data


def run(item: dict, args, out_dir) -> dict:
    from ..tasks.reclip import GroundingOptions, ground, proposals_from_boxes, read_detections

    if not item.get("image"):
        raise InputError("no image given")
    if item.get("expression") is None:
        raise InputError("no expression given")
    image = load_image(item["image"])
    boxes = _read_boxes(item.get("boxes"))
    masks = as_list(item.get("masks"))
    if boxes is not None:
        proposals = boxes
    elif masks:
        proposals = masks
    elif item.get("detections"):
        det, scores = read_detections(item["detections"], image_id=item.get("image_id"))
        proposals = proposals_from_boxes(det, image.shape[:2], "detections", scores)
    else:
        proposals = None  # automatic proposals
    options = GroundingOptions(blur_sigma=item.get("blur_sigma"),
                               area_prior=bool(item.get("area_prior")),
                               use_parser=not item.get("no_parser"),
                               combine=item.get("combine") or "tree",
                               temperature=item.get("temperature"),
                               margin=item.get("margin"),
                               contrast=item.get("contrast"),
                               contrast_tolerance=item.get("contrast_tolerance"),
                               contrast_gap=item.get("contrast_gap"),
                               membership=item.get("membership"),
                               object_min_cos=item.get("object_min_cos"),
                               fragment_min_inside=item.get("fragment_min_inside"))
    models = item.get("models")
    result = ground(image, item["expression"], proposals=proposals,
                    scorer=item.get("scorer") or "ips", models=models, options=options)
    out = {"image": str(item["image"]), **result.to_dict()}
    if result.tree is not None:
        out["tree_text"] = result.tree.describe()
    return out
