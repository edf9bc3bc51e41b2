"""ReCLIP on ShapesWorld referring expressions: RegionLab's default vs the reference combination.

    python benchmarks/reclip_shapes.py [--scenes 300] [--seed 0] [--model shapes-clip ...]

Held-out scenes (the "test" seed namespace, never used in training or tuning), ground-truth
boxes as proposals. Four sets, each reported for every combination from the same forwards:
- ``test``: our renderer, the expression kinds the temperature was tuned on (attribute /
  relation / superlative, on validation scenes);
- ``test-everyday``: our renderer, everyday phrasings never tuned on (negation, paraphrased
  superlatives, ordinals, anchors, generic heads);
- ``test-unseen``: our renderer, the same questions in other words written once and never
  tuned on nor used in parser development (``regionlab.shapes.expressions.UNSEEN_BOOK``): a
  phrasing shift set;
- ``shift``, ``shift-everyday``, ``shift-unseen``: the same on the OpenCV renderer
  (``regionlab.shapes.render_cv``), never tuned on (its scenes join the CLIP's training from
  stage 11 on: domain randomisation);
- ``shift-mpl``, ``shift-mpl-everyday``, ``shift-mpl-unseen``: the same on the matplotlib
  renderer (``regionlab.shapes.render_mpl``), never trained or tuned on.
- ``*-shape-superlative``: superlatives over one shape in several colours named by the shape
  alone ("the biggest circle"), on each renderer (tuned on their validation scenes of ours).
Methods: ``default`` (combine="tree", its default temperature and margin), ``calibrated``,
``reference`` (ReCLIP exactly), IPS alone, random (mean 1/P). Writes
benchmarks/results/reclip_shapes.json.

``--tune`` instead searches the tree combination's temperature x margin grid on ``--scenes``
*validation* scenes of our renderer (every kind, everyday phrasings included) and applies the
rule fixed before it ran: the best spatial accuracy; ties to the smaller margin, then the
smaller temperature. Writes benchmarks/results/reclip_tuning.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import torch

from regionlab.eval.reclip import shapes_rec_benchmark
from regionlab.models import get_spec, load_clip
from regionlab.tasks.reclip import GroundingOptions

ROOT = Path(__file__).resolve().parent


def weights_info(name: str) -> dict:
    spec = get_spec(name, "clip")
    path = Path(spec.extra.get("path", "")) if spec.extra.get("path") else None
    if path is None or not path.is_file():
        return {"model": name, "source": spec.source}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return {"model": name, "weights": str(path), "sha256_16": digest,
            "final": not path.name.endswith(".partial.safetensors"),
            "mtime_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))}


def table(sets: dict) -> str:
    methods = ["default", "calibrated", "reference", "ips", "random"]
    lines = ["| set | expressions | n | " + " | ".join(methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    for name, res in sets.items():
        acc, counts = res["accuracy"], res["counts"]
        for g in ("attribute", "relation", "superlative", "shape-superlative", "everyday",
                  "unseen", "spatial"):
            if g in counts:
                cells = " | ".join(f"{100 * acc[m][g]:.1f}" for m in methods)
                lines.append(f"| {name} | {g} | {counts[g]} | {cells} |")
    return "\n".join(lines)


TEMPERATURES = (1, 2, 4, 8, 16)
MARGINS = (0, 2, 4, 6, 8, 12, 16)


def tune(a, models) -> None:
    from regionlab.shapes.expressions import ALL_KINDS

    grid = {f"T{t}/m{m}": GroundingOptions(temperature=t, margin=m)
            for t in TEMPERATURES for m in MARGINS}
    grid["reference"] = GroundingOptions(combine="reference")
    res = shapes_rec_benchmark(a.scenes, a.seed, "val", models, GroundingOptions(), a.scorer,
                               grid, ALL_KINDS, "pil")
    spatial = {k: res["accuracy"][k]["spatial"] for k in grid if k != "reference"}
    best = max(spatial, key=lambda k: (spatial[k], -grid[k].margin, -grid[k].temperature))
    out = {"split": "val", "n_scenes": a.scenes, "seed": a.seed, "counts": res["counts"],
           "spatial": spatial, "reference_spatial": res["accuracy"]["reference"]["spatial"],
           "accuracy": res["accuracy"],
           "rule": "max spatial accuracy; ties: smaller margin, then smaller temperature",
           "chosen": {"temperature": grid[best].temperature, "margin": grid[best].margin,
                      "spatial": spatial[best]},
           "command": f"python benchmarks/reclip_shapes.py --tune --scenes {a.scenes}"}
    path = a.out.parent / "reclip_tuning.json"
    path.write_text(json.dumps(out, indent=2))
    for t in TEMPERATURES:
        print(f"T={t:<3}" + " ".join(f"m{m}={100 * spatial[f'T{t}/m{m}']:.1f}" for m in MARGINS))
    print(f"reference {100 * out['reference_spatial']:.1f}; chosen {out['chosen']}; wrote {path}")


SETS = {"test": ("pil", None), "test-everyday": ("pil", ("everyday",)),
        "test-unseen": ("pil", ("unseen",)),
        "shift": ("cv", None), "shift-everyday": ("cv", ("everyday",)),
        "shift-unseen": ("cv", ("unseen",)),
        "shift-mpl": ("mpl", None), "shift-mpl-everyday": ("mpl", ("everyday",)),
        "shift-mpl-unseen": ("mpl", ("unseen",)),
        "test-shape-superlative": ("pil", ("shape-superlative",)),
        "shift-shape-superlative": ("cv", ("shape-superlative",)),
        "shift-mpl-shape-superlative": ("mpl", ("shape-superlative",))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", action="append", default=None, help="CLIP name (repeatable)")
    p.add_argument("--scorer", default="ips", choices=["ips", "masked-crop", "maskinversion"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tune", action="store_true", help="search temperature x margin on val")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "reclip_shapes.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    names = a.model or ["shapes-clip"]
    models = [load_clip(n) for n in names]
    if a.tune:
        return tune(a, models)
    variants = {"default": GroundingOptions(), "calibrated": GroundingOptions(combine="calibrated"),
                "reference": GroundingOptions(combine="reference")}
    sets = {}
    for name, (renderer, kinds) in SETS.items():
        res = shapes_rec_benchmark(a.scenes, a.seed, "test", models, GroundingOptions(), a.scorer,
                                   variants, kinds, renderer)
        sets[name] = res
        print(f"{name}: {res['n_expressions']} expressions, {res['seconds']} s")
    out = {"sets": sets, "models": [weights_info(n) for n in names],
           "command": f"python benchmarks/reclip_shapes.py --scenes {a.scenes} --seed {a.seed} "
                      f"--scorer {a.scorer}",
           "machine": {"platform": platform.platform(), "torch": torch.__version__,
                       "threads": a.threads}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))
    print(table(sets))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
