"""Time per grounded expression vs one batched image forward of its 2P IPS views.

    python benchmarks/reclip_speed.py [--models shapes-clip random:ViT-B-32] [--repeats 15]

For P in {5, 20, 50} proposals: ``ground(image, expression, boxes)`` end to end (input checks,
spaCy parse, crop + blur views, the batched forward, text encoding, tree execution) against
``clip.encode_images(views)`` of the same 2P prepared views in ONE batch. Medians over
``--repeats`` runs after a warm-up, expressions varying (no parse cache). ``random:ARCH`` is an
open_clip architecture with random weights (speed does not depend on weights): ViT-B-32 at
224 px stands for the real CLIPs ReCLIP uses, on a 640x480 image. Target: ratio <= 1.5 for
ReCLIP's pipeline. The bundled CLIP (it declares word groups) also reads every proposal's masked
crop for the contrastive membership: one more forward of P crops and, for box proposals, a
classical box segmentation each (``membership_masks_s``), so its ratio is about 2.2-2.9.
Writes benchmarks/results/reclip_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from regionlab.models import load_clip
from regionlab.models.clip import OPENAI_MEAN, OPENAI_STD, REAL_DEFAULTS, LoadedCLIP
from regionlab.tasks.reclip import GroundingOptions, ground, ips_views

ROOT = Path(__file__).resolve().parent
EXPRESSIONS = [
    "the red circle left of the blue square", "the leftmost star", "the biggest green cross",
    "the square on the right", "the yellow triangle above the purple circle",
    "the circle between the two squares", "the second star from the left",
    "the cross next to the orange star", "the smallest square at the top",
    "the blue circle below the red star",
]


def random_clip(arch: str) -> LoadedCLIP:
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None).eval().requires_grad_(False)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return LoadedCLIP(f"{arch}@random", model, open_clip.get_tokenizer(arch), size, OPENAI_MEAN,
                      OPENAI_STD, torch.device("cpu"), torch.float32, dict(REAL_DEFAULTS))


def make_case(clip, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if clip.image_size <= 64:  # ShapesWorld-sized model: a 64 px scene
        h = w = 64
    else:
        h, w = 480, 640
    image = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    x0 = rng.uniform(0, w * 0.8, n)
    y0 = rng.uniform(0, h * 0.8, n)
    bw = rng.uniform(w * 0.05, w * 0.2, n)
    bh = rng.uniform(h * 0.05, h * 0.2, n)
    boxes = np.stack([x0, y0, np.minimum(x0 + bw, w), np.minimum(y0 + bh, h)], 1).round()
    return image, boxes


def measure(clip, n: int, repeats: int, warmup: int) -> dict:
    """Median time of the batched forward of 2P views and of one grounded expression, measured
    interleaved (forward, expression, forward, ...) so both see the same machine load; the
    ratio is the median of the per-pair ratios."""
    image, boxes = make_case(clip, n, np.random.default_rng(n))
    views = ips_views(image, boxes)
    opts = GroundingOptions()
    fwd, full, timings = [], [], []
    for k in range(warmup + repeats):
        t0 = time.perf_counter()
        clip.encode_images(views, batch=len(views))
        t1 = time.perf_counter()
        res = ground(image, EXPRESSIONS[k % len(EXPRESSIONS)], proposals=boxes, models=[clip],
                     options=opts)
        t2 = time.perf_counter()
        if k >= warmup:
            fwd.append(t1 - t0)
            full.append(t2 - t1)
            timings.append(res.timing)
    breakdown = {key: round(1000 * statistics.median(t[key] for t in timings), 2)
                 for key in timings[0]}
    return {
        "model": clip.name, "image": list(image.shape[:2]), "P": n, "views": len(views),
        "forward_2P_ms": round(1000 * statistics.median(fwd), 2),
        "per_expression_ms": round(1000 * statistics.median(full), 2),
        "ratio": round(statistics.median(b / a for a, b in zip(fwd, full)), 3),
        "breakdown_ms": breakdown,
        "repeats": repeats, "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["shapes-clip", "random:ViT-B-32"])
    p.add_argument("--proposals", nargs="+", type=int, default=[5, 20, 50])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "reclip_speed.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from regionlab.nlp import load_spacy

    load_spacy()  # loading the pipeline is a one-off, not per expression
    rows = []
    for name in a.models:
        clip = random_clip(name.split(":", 1)[1]) if name.startswith("random:") else load_clip(name)
        for n in a.proposals:
            row = measure(clip, n, a.repeats, a.warmup)
            rows.append(row)
            print(f"{row['model']:>22} P={n:>3}: forward(2P) {row['forward_2P_ms']:8.1f} ms, "
                  f"per expression {row['per_expression_ms']:8.1f} ms, ratio {row['ratio']:.2f}")
    if a.out.is_file():  # keep rows of other models measured earlier
        old = json.loads(a.out.read_text())
        keep = {r["model"] for r in rows}
        rows = [r for r in old.get("rows", []) if r["model"] not in keep] + rows
    out = {"rows": rows, "repeats": a.repeats, "threads": a.threads,
           "machine": {"platform": platform.platform(), "torch": torch.__version__,
                       "processor": platform.processor()},
           "command": "python benchmarks/reclip_speed.py " + " ".join(
               ["--models", *a.models, "--repeats", str(a.repeats), "--warmup", str(a.warmup)])}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
