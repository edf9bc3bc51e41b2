"""ReCLIP on ShapesWorld referring expressions: full ReCLIP vs IPS alone vs random.

    python benchmarks/reclip_shapes.py [--scenes 300] [--seed 0] [--model shapes-clip ...]

Held-out scenes (the "test" seed namespace, never used in training), ground-truth boxes as
proposals, expressions from ``regionlab.shapes.expressions`` (attribute / relation /
superlative kinds, split by subtype). One IPS forward per scene; ReCLIP and IPS-only come from
the same forward. Random = expected accuracy of a uniform choice (mean of 1/P).

"ReCLIP" is the reference combination (temperature 1). ``--temperatures`` also evaluates
RegionLab's softmax temperature option (``GroundingOptions.temperature``): the best value for
spatial expressions is chosen on ``--val-scenes`` validation scenes (the "val" namespace) and
then reported on the test scenes as "ReCLIP T=..." -- never chosen on test.
Writes benchmarks/results/reclip_shapes.json and prints a markdown table.
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


def table(res: dict) -> str:
    acc, counts = res["accuracy"], res["counts"]
    order = ["all", "attribute", "relation", "superlative", "spatial"]
    order += sorted(g for g in counts if "/" in g)
    methods = [m for m in acc if m.startswith("reclip")] + ["ips", "random"]
    names = {"reclip": "ReCLIP", "ips": "IPS only", "random": "random"}
    head = [names.get(m, m.replace("reclip@", "ReCLIP T=")) for m in methods]
    lines = ["| expressions | n | " + " | ".join(head) + " |",
             "|---|---|" + "---|" * len(methods)]
    for g in order:
        if g in counts:
            cells = " | ".join(f"{100 * acc[m][g]:.1f}" for m in methods)
            lines.append(f"| {g} | {counts[g]} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test")
    p.add_argument("--model", action="append", default=None, help="CLIP name (repeatable)")
    p.add_argument("--scorer", default="ips", choices=["ips", "masked-crop", "maskinversion"])
    p.add_argument("--blur-sigma", type=float, default=None)
    p.add_argument("--temperatures", type=float, nargs="*", default=[],
                   help="softmax temperatures to tune on validation scenes (e.g. 2 5 10 20)")
    p.add_argument("--val-scenes", type=int, default=150)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "reclip_shapes.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    names = a.model or ["shapes-clip"]
    models = [load_clip(n) for n in names]
    opts = GroundingOptions(blur_sigma=a.blur_sigma)
    chosen, val = [], None
    if a.temperatures:
        val = shapes_rec_benchmark(a.val_scenes, a.seed, "val", models, opts, a.scorer,
                                   tuple(a.temperatures))
        spatial = {m: v["spatial"] for m, v in val["accuracy"].items()
                   if m.startswith("reclip@")}
        best = max(spatial, key=lambda m: (spatial[m], -float(m.split("@")[1])))
        chosen = [float(best.split("@")[1])]
        print("validation (spatial accuracy by temperature):",
              {m: round(100 * v, 1) for m, v in spatial.items()}, "->", best)
    res = shapes_rec_benchmark(a.scenes, a.seed, a.split, models, opts, a.scorer,
                               tuple(chosen))
    if val is not None:
        res["validation"] = {"n_scenes": a.val_scenes, "accuracy": val["accuracy"],
                             "counts": val["counts"], "chosen_temperature": chosen[0]}
    res["models"] = [weights_info(n) for n in names]
    res["blur_sigma"] = a.blur_sigma if a.blur_sigma is not None else "default (10 px at 64 px)"
    res["command"] = " ".join(["python benchmarks/reclip_shapes.py", f"--scenes {a.scenes}",
                               f"--seed {a.seed}", f"--scorer {a.scorer}"]
                              + (["--temperatures", *map(str, a.temperatures),
                                  f"--val-scenes {a.val_scenes}"] if a.temperatures else []))
    res["machine"] = {"platform": platform.platform(), "torch": torch.__version__,
                      "threads": a.threads}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print(table(res))
    print(f"\nwrote {a.out} ({res['n_expressions']} expressions, {res['seconds']} s)")


if __name__ == "__main__":
    main()
