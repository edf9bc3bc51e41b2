"""``regionlab generate``: images generated from each mask's region embedding."""

from __future__ import annotations

from pathlib import Path

from . import as_list
from .caption import MI_KEYS, add_region_arguments, region_options

NAME = "generate"
HELP = "generate images from mask regions' embeddings (unCLIP-style diffusion decoder)"
MANIFEST_KEYS = ("image (path), masks (list of mask paths), method, generator, model, n, seed, "
                 "steps, guidance, engine, iterations, lr, alpha, resolution")


def add_arguments(p) -> None:
    add_region_arguments(p)
    p.add_argument("--generator", default=None,
                   help="generator name (default: REGIONLAB_GENERATOR or shapes-generator)")
    p.add_argument("--n", type=int, default=1, help="images per region")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: model's)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="folder for the PNGs: region{mask}_{k}.png")


def item_from_args(args, manifest: bool) -> dict:
    keys = ("method", "model", "generator", "n", "seed", "steps", "guidance", *MI_KEYS)
    item = {k: getattr(args, k) for k in keys}
    if not manifest:
        item["image"] = args.image
        item["masks"] = args.mask
    return item


def run(item: dict, args, out_dir) -> dict:
    import logging

    from ..tasks.generate import GenerateOptions, generate_regions

    if not item.get("image"):
        raise ValueError("no image given")
    if out_dir is None:
        raise ValueError("give --out-dir: the folder where the generated PNGs are written")
    masks = as_list(item.get("masks"))
    opts = GenerateOptions(n=item.get("n", 1), seed=item.get("seed", 0),
                           steps=item.get("steps"), guidance=item.get("guidance"))
    log = logging.getLogger("regionlab.generate")

    def progress(step: int, total: int) -> None:
        log.info("denoising step %d/%d", step, total)

    res = generate_regions(item["image"], masks, generator=item.get("generator"),
                           method=item.get("method", "maskinversion"), clip=item.get("model"),
                           options=opts, progress=progress, region_options=region_options(item))
    res.save(Path(out_dir))
    return {"image": str(item["image"]), "masks": [str(m) for m in masks], **res.to_json()}
