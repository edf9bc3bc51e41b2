"""A picture of region-conditioned generation (issue 28, item 3): held-out regions and the
images the bundled generator draws from them, with the class the bundled CLIP sees in each.

    python benchmarks/generation_grid.py [--scenes 3] [--per-scene 2] [--n 2] [--steps 20]

``--per-scene`` objects of each of ``--scenes`` held-out ShapesWorld scenes (test split, 2-4
objects, seed ``--seed``) make the rows. Each row: the region (its box cropped from the scene,
the outside dimmed, the mask outlined), then ``--n`` images generated from its MaskInversion
embedding and ``--n`` from its masked-crop embedding (the same noise seeds for both), each with
the class the CLIP sees in it among the 30 ShapesWorld classes and its probability (green: the
region's class; orange: its colour only; red: neither). Writes docs/generation_grid.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from regionlab.models import load, load_clip
from regionlab.shapes.scenes import RenderOptions, generate_scenes
from regionlab.tasks.generate import GenerateOptions, generate_regions
from regionlab.viz import region_view

ROOT = Path(__file__).resolve().parent.parent
METHODS = (("maskinversion", "MaskInversion"), ("masked-crop", "masked crop"))


def verdict_colour(seen: str, truth: str) -> str:
    if seen == truth:
        return "#1a7f37"
    return "#c26a00" if seen.split()[0] == truth.split()[0] else "#c62828"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=3)
    p.add_argument("--per-scene", type=int, default=2, help="regions (objects) per scene")
    p.add_argument("--n", type=int, default=2, help="images per region and method")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=11, help="scene seed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "generation_grid.png")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    clip = load_clip("shapes-clip", "cpu")
    gen = load("shapes-generator", "generator", "cpu")
    opts = GenerateOptions(n=a.n, seed=0, steps=a.steps)

    rows = []  # (region view, truth, {method: (images, seen)})
    scenes = generate_scenes("test", a.scenes, seed=a.seed, options=RenderOptions(min_objects=2))
    for sc in scenes:
        objs = sc.objects[:a.per_scene]
        masks = [o.mask for o in objs]
        out = {m: generate_regions(sc.image, masks, generator=gen, method=m, clip=clip,
                                   options=opts, vocab="shapes") for m, _ in METHODS}
        for i, o in enumerate(objs):
            rows.append((region_view(sc.image, o.mask, size=128), o.label,
                         {m: (out[m].images[i], out[m].seen[i]) for m, _ in METHODS}))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 1 + a.n * len(METHODS)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.55 * cols, 1.85 * len(rows) + 0.7),
                             squeeze=False)
    for r, (view, truth, per_method) in enumerate(rows):
        ax = axes[r][0]
        ax.imshow(view)
        ax.text(0.5, -0.04, truth, transform=ax.transAxes, ha="center", va="top", fontsize=8,
                fontweight="bold")
        c = 1
        for m, title in METHODS:
            images, seen = per_method[m]
            for k, (im, s) in enumerate(zip(images, seen)):
                ax = axes[r][c]
                ax.imshow(im)
                ax.text(0.5, -0.04, f"{s['label']} ({s['score']:.2f})", transform=ax.transAxes,
                        ha="center", va="top", fontsize=8,
                        color=verdict_colour(s["label"], truth))
                if r == 0:
                    ax.set_title(f"{title} {k + 1}", fontsize=8)
                c += 1
        if r == 0:
            axes[r][0].set_title("region", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Held-out ShapesWorld regions -> bundled generator ({a.steps} steps), under "
                 f"each image the class the bundled CLIP sees\n(green: the region's class, "
                 f"orange: its colour only, red: neither)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97), h_pad=1.4)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    plt.close(fig)
    right = {m: np.mean([s["label"] == t for _, t, pm in rows for s in pm[m][1]])
             for m, _ in METHODS}
    print(f"wrote {a.out} ({len(rows)} regions; class right: "
          + ", ".join(f"{t} {100 * right[m]:.0f}%" for m, t in METHODS)
          + f"; {time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
