"""Which part of the class does the CLIP miss on other renderers: colour or shape?

    REGIONLAB_SHAPES_CLIP=FILE python benchmarks/shift_confusion.py [--n 200] [--out FILE]

Zero-shot on ``--n`` single-object VALIDATION scenes of each renderer (pil, cv, mpl), split
into colour right and shape right, with the most frequent confusions. Writes
benchmarks/results/shift_confusion.json unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import torch

from regionlab.eval import shapes_regions as ev
from regionlab.models import load_clip
from regionlab.models.registry import get_spec
from regionlab.shapes.scenes import RenderOptions, generate_scenes
from regionlab.shapes.vocab import CLASSES

ROOT = Path(__file__).resolve().parent


def confusion(clip, scenes) -> dict:
    pred = [CLASSES[i] for i in ev.classify(clip, [s.image for s in scenes])]
    true = [s.objects[0].label for s in scenes]
    pairs = [(t.split(), p.split()) for t, p in zip(true, pred)]
    errors = collections.Counter(f"{t} -> {p}" for t, p in zip(true, pred) if t != p)
    return {"n": len(scenes), "accuracy": float(np.mean([t == p for t, p in zip(true, pred)])),
            "colour": float(np.mean([t[0] == p[0] for t, p in pairs])),
            "shape": float(np.mean([t[1] == p[1] for t, p in pairs])),
            "top_confusions": errors.most_common(8)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "shift_confusion.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    clip = load_clip("shapes-clip")
    sets = {"pil": generate_scenes("val", a.n, 0, RenderOptions(min_objects=1, max_objects=1))}
    for r in ("cv", "mpl"):
        sets[r] = ev.other_renderer_scenes(a.n, "val", objects=(1, 1), renderer=r)
    out = {name: confusion(clip, sc) for name, sc in sets.items()}
    out["weights"] = get_spec("shapes-clip", "clip").source
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    for name in ("pil", "cv", "mpl"):
        r = out[name]
        print(f"{name}: accuracy {100 * r['accuracy']:.1f}%  colour {100 * r['colour']:.1f}%  "
              f"shape {100 * r['shape']:.1f}%  {r['top_confusions'][:3]}")


if __name__ == "__main__":
    main()
