"""``regionlab regions``: region embeddings (MaskInversion or a baseline) -> ranked classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..inputs import load_image, load_masks
from . import add_model_argument, as_list

NAME = "regions"
HELP = "embed mask regions (MaskInversion or a baseline) and retrieve their classes"
MANIFEST_KEYS = ("image (path), masks (list of mask paths), vocab, method, model, engine, "
                 "iterations, lr, alpha, resolution, templates, top_k")


def add_arguments(p) -> None:
    p.add_argument("image", nargs="?", help="image file")
    p.add_argument("--mask", action="append", default=[], help="mask PNG (repeatable)")
    p.add_argument("--vocab", default="shapes", help="voc, coco, shapes, a file, or 'a,b,c'")
    p.add_argument("--method", default="maskinversion",
                   choices=["maskinversion", "global", "crop", "masked-crop", "blur",
                            "red-circle"])
    add_model_argument(p)
    p.add_argument("--engine", default="auto", choices=["auto", "autograd", "factorized"])
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--templates", default="single", choices=["single", "vild", "imagenet"])
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--save-embeddings", type=Path, default=None,
                   help="write the (masks x dim) unnormalised embeddings as .npy")
    p.add_argument("--heatmaps", type=Path, default=None,
                   help="folder for LeGrad heatmap overlays (MaskInversion only)")


def item_from_args(args, manifest: bool) -> dict:
    item = {k: getattr(args, k) for k in ("vocab", "method", "model", "engine", "iterations",
                                          "lr", "alpha", "resolution", "templates", "top_k")}
    if not manifest:
        item["image"] = args.image
        item["masks"] = args.mask
    return item


def run(item: dict, args, out_dir) -> dict:
    from ..models import load_clip
    from ..region.baselines import region_embeddings
    from ..tasks.retrieval import retrieve

    if not item.get("image"):
        raise ValueError("no image given")
    mask_paths = as_list(item.get("masks"))
    image = load_image(item["image"])
    masks = load_masks(mask_paths, image.shape[:2])
    clip = load_clip(item.get("model"))
    method = item.get("method", "maskinversion")
    result = None
    if method == "maskinversion":
        from ..region.maskinversion import invert

        result = invert(clip, image, masks, iterations=item.get("iterations"),
                        lr=item.get("lr"), alpha=item.get("alpha"),
                        resolution=item.get("resolution"), engine=item.get("engine", "auto"))
        emb = result.embeddings
    else:
        emb = region_embeddings(clip, image, masks, method)
    tops = retrieve(emb, item.get("vocab", "shapes"), clip=clip,
                    templates=item.get("templates", "single"), top_k=int(item.get("top_k", 5)))
    from ..tasks.vocabularies import resolve_vocab, vocabulary_warnings

    out = {"image": str(item["image"]),
           "regions": [{"mask": str(m), "top": t} for m, t in zip(mask_paths, tops)]}
    warnings = vocabulary_warnings(clip, resolve_vocab(item.get("vocab", "shapes")))
    if warnings:
        out["warnings"] = warnings
    save = item.get("save_embeddings") or getattr(args, "save_embeddings", None)
    if save:
        path = Path(save) if out_dir is None else Path(out_dir) / Path(save).name
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, emb.numpy())
        out["embeddings"] = str(path)
    heat = getattr(args, "heatmaps", None)
    if heat and result is not None:
        from ..viz import heatmap_overlay

        folder = Path(heat) if out_dir is None else Path(out_dir) / "heatmaps"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, m in enumerate(result.maps):
            pth = folder / f"region{i}.png"
            Image.fromarray(heatmap_overlay(image, m)).save(pth)
            paths.append(str(pth))
        out["heatmaps"] = paths
    if result is not None:
        out["engine"] = result.engine
        out["timings"] = result.timings
    return out
