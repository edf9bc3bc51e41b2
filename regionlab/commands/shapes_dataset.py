"""``regionlab shapes-dataset``: write ShapesWorld scenes to disk (images, masks, JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

NAME = "shapes-dataset"
HELP = "write a ShapesWorld dataset: images, one mask PNG per object, annotations.json"
MANIFEST_KEYS = ""
TAKES_MANIFEST = False


def add_arguments(p) -> None:
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--n", type=int, default=100, help="number of scenes")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--min-objects", type=int, default=1)
    p.add_argument("--max-objects", type=int, default=4)
    p.add_argument("--expressions", action="store_true",
                   help="also write referring expressions with their targets")


def item_from_args(args, manifest: bool) -> dict:
    return {}


def write_dataset(out_dir: Path, n: int, split: str = "test", seed: int = 0, size: int = 64,
                  min_objects: int = 1, max_objects: int = 4, expressions: bool = False) -> dict:
    """Render ``n`` scenes into ``out_dir``; returns the annotation record (also saved)."""
    from ..errors import InputError
    from ..shapes.scenes import RenderOptions, render_scene, split_seed

    if not 1 <= n <= 100_000:
        raise InputError(f"--n must be in 1..100000, got {n}")
    if not 1 <= min_objects <= max_objects <= 4:
        raise InputError("need 1 <= min-objects <= max-objects <= 4")
    opts = RenderOptions(size=size, min_objects=min_objects, max_objects=max_objects)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        scene = render_scene(split_seed(split, i, seed), opts)
        name = f"{split}_{seed}_{i:06d}"
        Image.fromarray(scene.image).save(out_dir / "images" / f"{name}.png")
        objs = []
        for k, o in enumerate(scene.objects):
            mpath = Path("masks") / f"{name}_{k}.png"
            Image.fromarray(o.mask.astype(np.uint8) * 255).save(out_dir / mpath)
            objs.append({"label": o.label, "colour": o.colour, "shape": o.shape,
                         "box": list(o.box), "mask": str(mpath), "area": o.area})
        rec = {"image": f"images/{name}.png", "seed": list(scene.seed), "caption": scene.caption(),
               "background": scene.background, "objects": objs}
        if expressions:
            import dataclasses

            from ..shapes.expressions import attribute_expressions

            rng = np.random.default_rng([seed, i, 5])
            rec["expressions"] = [dataclasses.asdict(e)
                                  for e in attribute_expressions(scene, rng)]
        records.append(rec)
    meta = {"split": split, "seed": seed, "size": size, "n": n, "scenes": records}
    (out_dir / "annotations.json").write_text(json.dumps(meta, indent=1))
    return meta


def run(item: dict, args, out_dir) -> dict:
    meta = write_dataset(Path(args.out_dir), args.n, args.split, args.seed, args.size,
                         args.min_objects, args.max_objects, args.expressions)
    return {"out_dir": str(args.out_dir), "scenes": meta["n"],
            "objects": sum(len(s["objects"]) for s in meta["scenes"])}
