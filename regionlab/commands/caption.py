"""``regionlab caption``: localized captions, one per mask (region embedding -> captioner)."""

from __future__ import annotations

from . import as_list

NAME = "caption"
HELP = "caption mask regions from their region embeddings (CLIPCap-style decoder)"
MANIFEST_KEYS = ("image (path), masks (list of mask paths), method, captioner, model, beams, "
                 "no_rerank, rerank_weight, "
                 "sample, temperature, top_p, max_tokens, seed, engine, iterations, lr, alpha, "
                 "resolution")
METHODS = ["maskinversion", "global", "crop", "masked-crop", "blur", "red-circle"]
MI_KEYS = ("engine", "iterations", "lr", "alpha", "resolution")


def add_region_arguments(p) -> None:
    """Image, masks, region method and MaskInversion options (shared with ``generate``)."""
    p.add_argument("image", nargs="?", help="image file")
    p.add_argument("--mask", action="append", default=[], help="mask PNG (repeatable)")
    p.add_argument("--method", default="maskinversion", choices=METHODS,
                   help="how the region embedding is computed")
    p.add_argument("--model", default=None,
                   help="CLIP for the region embedding (default: the one the decoder reads; "
                        "another one is refused)")
    p.add_argument("--engine", default=None, choices=["auto", "autograd", "factorized"])
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--resolution", type=int, default=None)


def region_options(item: dict) -> dict:
    return {k: item[k] for k in MI_KEYS if item.get(k) is not None}


def add_arguments(p) -> None:
    add_region_arguments(p)
    p.add_argument("--captioner", default=None,
                   help="captioner name (default: REGIONLAB_CAPTIONER or shapes-captioner), "
                        "or clipcap@/path/to/weights.pt")
    p.add_argument("--beams", type=int, default=5, help="beam search width (1 = greedy)")
    p.add_argument("--no-rerank", action="store_true",
                   help="keep the captioner's top beam (whatever --rerank-weight says)")
    p.add_argument("--rerank-weight", type=float, default=None,
                   help="choose among the beams with CLIP at this weight, so the caption names "
                        "what class retrieval finds (default 0 = the top beam: the bundled "
                        "captioner's top beam agrees with retrieval more often than reranking "
                        "keeps captions right; see README)")
    p.add_argument("--sample", action="store_true", help="nucleus sampling instead of beams")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--max-tokens", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="sampling seed")


def item_from_args(args, manifest: bool) -> dict:
    keys = ("method", "model", "captioner", "beams", "sample", "temperature", "top_p",
            "max_tokens", "seed", "no_rerank", "rerank_weight", *MI_KEYS)
    item = {k: getattr(args, k) for k in keys}
    if not manifest:
        item["image"] = args.image
        item["masks"] = args.mask
    return item


def run(item: dict, args, out_dir) -> dict:
    from ..models.captioner import CaptionOptions
    from ..tasks.caption import caption_regions

    if not item.get("image"):
        raise ValueError("no image given")
    masks = as_list(item.get("masks"))
    opts = CaptionOptions(beams=item.get("beams", 5), sample=bool(item.get("sample", False)),
                          temperature=item.get("temperature", 1.0), top_p=item.get("top_p", 0.9),
                          max_tokens=item.get("max_tokens", 20), seed=item.get("seed", 0))
    res = caption_regions(item["image"], masks, captioner=item.get("captioner"),
                          method=item.get("method", "maskinversion"), clip=item.get("model"),
                          options=opts, region_options=region_options(item),
                          rerank=not item.get("no_rerank"),
                          rerank_weight=item.get("rerank_weight"))
    return {"image": str(item["image"]), "masks": [str(m) for m in masks], **res.to_json()}
