"""``regionlab example-scene``: write one of the app's ShapesWorld example scenes and its object
masks, to try the other subcommands on (the README's examples start with it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

NAME = "example-scene"
HELP = ("write the app's example ShapesWorld scene SEED (448 px) as scene.png and one mask PNG "
        "per object, named by its label (red_star.png, blue_circle.png, ...)")
MANIFEST_KEYS = ""
TAKES_MANIFEST = False


def add_arguments(p) -> None:
    p.add_argument("--seed", type=int, default=24,
                   help="example scene seed (default 24: a red star, a red triangle, a blue "
                        "circle and a purple triangle)")
    p.add_argument("--out-dir", type=Path, default=Path("."), help="folder to write into")


def item_from_args(args, manifest: bool) -> dict:
    return {"seed": args.seed}


def write_example(out_dir: Path, seed: int = 24) -> dict:
    """Write ``scene.png`` and ``<colour>_<shape>.png`` masks (0/255) into ``out_dir``."""
    from ..ui.examples import scene

    sc = scene(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = out_dir / "scene.png"
    Image.fromarray(sc.image).save(image)
    objects, used = [], set()
    for o in sc.objects:
        stem = o.label.replace(" ", "_")
        k = 2
        while stem in used:  # two objects with one label: red_star.png, red_star_2.png
            stem = f"{o.label.replace(' ', '_')}_{k}"
            k += 1
        used.add(stem)
        path = out_dir / f"{stem}.png"
        Image.fromarray(o.mask.astype(np.uint8) * 255).save(path)
        objects.append({"label": o.label, "mask": str(path),
                        "center": [int(round(v)) for v in o.center],
                        "box": [int(v) for v in o.box], "area": int(o.area)})
    return {"image": str(image), "seed": seed, "size": list(sc.image.shape[1::-1]),
            "objects": objects}


def run(item: dict, args, out_dir) -> dict:
    return write_example(Path(out_dir) if out_dir is not None else Path("."), item["seed"])
