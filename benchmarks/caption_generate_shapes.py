"""Localized captions and region-conditioned generation on held-out ShapesWorld scenes.

    python benchmarks/caption_generate_shapes.py [--scenes 100] [--seed 0]

For every object of held-out multi-object scenes (the "test" seed namespace, 2-4 objects, never
used in training), the region embedding is computed by each method (MaskInversion, the global
image embedding, masked crop, crop) with the bundled CLIP, then
- captioned by the bundled captioner (beam search, 3 beams): exact match = the caption's colour
  AND shape words equal the object's class (colour / shape alone also reported);
- decoded into one image by the bundled generator (same seed for every method), which the
  bundled CLIP classifies zero-shot among the 30 classes: match = the object's class.
Chance: 1/30 for a class, 1/6 colour, 1/5 shape. Ceiling of the generation check: the same
CLIP classifying REAL held-out images of the generator's training distribution (single-object
scenes), reported as ``real_image_ceiling``, and held-out canonical views
(``regionlab.shapes.views.canonical_view``: what a generator trained with ``--targets
canonical`` learns to draw), ``canonical_target_ceiling``. Writes
benchmarks/results/caption_generate_shapes.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from regionlab.eval.shapes_regions import classify
from regionlab.models import get_spec, load, load_clip
from regionlab.models.captioner import CaptionOptions
from regionlab.region.baselines import region_embeddings
from regionlab.shapes.captions import parse_caption
from regionlab.shapes.scenes import RenderOptions, generate_scenes
from regionlab.shapes.views import VAL_NAMESPACE, canonical_views, validation_views
from regionlab.shapes.vocab import CLASSES

ROOT = Path(__file__).resolve().parent


def weights_info(name: str, kind: str) -> dict:
    path = Path(get_spec(name, kind).extra["path"])
    return {"model": name, "file": path.name,
            "sha256_16": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
            "final": ".partial." not in path.name}


def table(res: dict) -> str:
    lines = ["| region embedding | caption exact (colour+shape) | caption colour | caption shape "
             "| generated image class | generated colour | generated shape |",
             "|---|---|---|---|---|---|---|"]
    for m, r in res["methods"].items():
        c, g = r["caption"], r["generation"]
        lines.append(f"| {m} | {100 * c['exact']:.1f} | {100 * c['colour']:.1f} | "
                     f"{100 * c['shape']:.1f} | {100 * g['class']:.1f} | "
                     f"{100 * g['colour']:.1f} | {100 * g['shape']:.1f} |")
    if "real_image_ceiling" in res:
        c = res["real_image_ceiling"]
        lines.append(f"| (ceiling: real images of the generator's training distribution) | | | | "
                     f"{100 * c['class']:.1f} | {100 * c['colour']:.1f} | {100 * c['shape']:.1f} |")
    if "canonical_target_ceiling" in res:
        c = res["canonical_target_ceiling"]
        lines.append(f"| (ceiling: canonical views, the targets of --targets canonical) | | | | "
                     f"{100 * c['class']:.1f} | {100 * c['colour']:.1f} | {100 * c['shape']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="maskinversion,global,masked-crop,crop")
    p.add_argument("--beams", type=int, default=3)
    p.add_argument("--steps", type=int, default=20, help="generator denoising steps")
    p.add_argument("--guidance", type=float, default=None, help="default: the generator's")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "caption_generate_shapes.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    clip = load_clip("shapes-clip", "cpu")
    cap = load("shapes-captioner", "captioner", "cpu")
    gen = load("shapes-generator", "generator", "cpu")
    guidance = gen.defaults["guidance"] if a.guidance is None else a.guidance
    scenes = generate_scenes("test", a.scenes, seed=a.seed, options=RenderOptions(min_objects=2))
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    labels = [o.label for s in scenes for o in s.objects]
    out: dict = {"methods": {}}
    for method in methods:
        tm = time.time()
        captions, images = [], []
        t_emb = t_cap = t_gen = 0.0
        for s in scenes:
            t1 = time.time()
            emb = region_embeddings(clip, s.image, [o.mask for o in s.objects], method)
            t2 = time.time()
            captions += cap.caption(emb, CaptionOptions(beams=a.beams))
            t3 = time.time()
            for k, e in enumerate(emb):
                im = gen.generate(e, n=1, seed=a.seed + k, steps=a.steps, guidance=guidance)[0]
                images.append(np.asarray(im))
            t_emb, t_cap, t_gen = t_emb + t2 - t1, t_cap + t3 - t2, t_gen + time.time() - t3
        parsed = [parse_caption(c) for c in captions]
        truth = [tuple(lab.split()) for lab in labels]
        pred = [CLASSES[i].split() for i in classify(clip, images)]
        out["methods"][method] = {
            "caption": {
                "exact": float(np.mean([pp == t for pp, t in zip(parsed, truth)])),
                "colour": float(np.mean([pp[0] == t[0] for pp, t in zip(parsed, truth)])),
                "shape": float(np.mean([pp[1] == t[1] for pp, t in zip(parsed, truth)])),
                "examples": [{"label": lab, "caption": c}
                             for lab, c in list(zip(labels, captions))[:8]],
            },
            "generation": {
                "class": float(np.mean([tuple(g) == t for g, t in zip(pred, truth)])),
                "colour": float(np.mean([g[0] == t[0] for g, t in zip(pred, truth)])),
                "shape": float(np.mean([g[1] == t[1] for g, t in zip(pred, truth)])),
            },
            "seconds": {"embedding": round(t_emb, 1), "caption": round(t_cap, 1),
                        "generation": round(t_gen, 1), "total": round(time.time() - tm, 1)},
        }
        print(method, json.dumps({k: v for k, v in out["methods"][method].items()
                                  if k != "caption"}), flush=True)
    real = validation_views(300, a.seed)
    targets = canonical_views(real.labels, a.seed, namespace=VAL_NAMESPACE)
    for key, images in (("real_image_ceiling", real.images),
                        ("canonical_target_ceiling", targets)):
        got = [CLASSES[i].split() for i in classify(clip, list(images))]
        want = [CLASSES[i].split() for i in real.labels]
        out[key] = {
            "class": float(np.mean([g == w for g, w in zip(got, want)])),
            "colour": float(np.mean([g[0] == w[0] for g, w in zip(got, want)])),
            "shape": float(np.mean([g[1] == w[1] for g, w in zip(got, want)])), "n": len(want)}
    out.update({
        "regions": len(labels), "scenes": a.scenes, "split": "test", "seed": a.seed,
        "caption_options": {"beams": a.beams},
        "generation_options": {"n": 1, "steps": a.steps, "guidance": guidance},
        "maskinversion_settings": {k: v for k, v in clip.defaults.items() if k.startswith("mi_")},
        "chance": {"class": 1 / 30, "colour": 1 / 6, "shape": 1 / 5},
        "models": [weights_info("shapes-clip", "clip"),
                   weights_info("shapes-captioner", "captioner"),
                   weights_info("shapes-generator", "generator")],
        "wall_seconds": round(time.time() - t0, 1), "threads": a.threads,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__},
        "command": "python benchmarks/caption_generate_shapes.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items()
            if k not in ("out",) and v is not None),
    })
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out))


if __name__ == "__main__":
    main()
