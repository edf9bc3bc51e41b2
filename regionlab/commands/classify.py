"""``regionlab classify``: whole-image zero-shot classification."""

from __future__ import annotations

from ..inputs import load_image
from . import add_model_argument, as_list

NAME = "classify"
HELP = "zero-shot classification of whole images against a vocabulary"
MANIFEST_KEYS = "image (path), vocab (name, file or comma list), model, templates, top_k"


def add_arguments(p) -> None:
    p.add_argument("images", nargs="*", help="image files")
    p.add_argument("--vocab", default="shapes", help="voc, coco, shapes, a file, or 'a,b,c'")
    p.add_argument("--templates", default="single", choices=["single", "vild", "imagenet"])
    p.add_argument("--top-k", type=int, default=5)
    add_model_argument(p)


def item_from_args(args, manifest: bool) -> dict:
    item = {"vocab": args.vocab, "model": args.model, "templates": args.templates,
            "top_k": args.top_k}
    if not manifest:
        item["images"] = args.images
    return item


def run(item: dict, args, out_dir) -> dict | list:
    from ..tasks.retrieval import classify_images

    paths = as_list(item.get("images")) or as_list(item.get("image"))
    if not paths:
        raise ValueError("no image given")
    images = [load_image(p) for p in paths]
    results = classify_images(images, item["vocab"], model=item.get("model"),
                              templates=item.get("templates", "single"),
                              top_k=int(item.get("top_k", 5)))
    from ..models import load_clip
    from ..tasks.vocabularies import resolve_vocab, vocabulary_warnings

    warnings = vocabulary_warnings(load_clip(item.get("model")), resolve_vocab(item["vocab"]))
    out = [{"image": str(p), "top": r, **({"warnings": warnings} if warnings else {})}
           for p, r in zip(paths, results)]
    return out[0] if "image" in item and "images" not in item else out
