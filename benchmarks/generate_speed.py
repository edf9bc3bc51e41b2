"""Generation time per image of the bundled ShapesWorld generator, and scaling with steps.

    python benchmarks/generate_speed.py [--steps 5 10 20 50] [--n 1 4] [--repeats 3]

Times ``LoadedGenerator.generate`` end to end (validation, sampling loop, PIL conversion) from
one fixed embedding, with classifier-free guidance on (guidance 2: two UNet evaluations per
step) and off (guidance 1), after one warm-up call. Reports the median over repeats, per call
and per image, and a least-squares fit: seconds per image = fixed + per_step * steps.
Writes benchmarks/results/generate_speed.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from regionlab.models import load, load_clip
from regionlab.shapes.scenes import RenderOptions, render_scene

ROOT = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", default="shapes-generator")
    p.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50])
    p.add_argument("--n", type=int, nargs="+", default=[1, 4])
    p.add_argument("--guidance", type=float, nargs="+", default=[2.0, 1.0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "generate_speed.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    gen = load(a.generator, "generator", a.device)
    clip = load_clip(gen.clip, a.device)
    scene = render_scene((2, 0, 0), RenderOptions(min_objects=1, max_objects=1))
    emb = clip.encode_images([scene.image])[0]
    gen.generate(emb, n=1, seed=0, steps=2)  # warm-up
    rows = []
    for guidance in a.guidance:
        for n in a.n:
            for steps in a.steps:
                times = []
                for r in range(a.repeats):
                    t0 = time.perf_counter()
                    gen.generate(emb, n=n, seed=r, steps=steps, guidance=guidance)
                    times.append(time.perf_counter() - t0)
                med = statistics.median(times)
                rows.append({"guidance": guidance, "n": n, "steps": steps,
                             "seconds_per_call": round(med, 4),
                             "seconds_per_image": round(med / n, 4),
                             "all_seconds": [round(t, 4) for t in times]})
                print(json.dumps(rows[-1]), flush=True)
    fits = []
    for guidance in a.guidance:
        for n in a.n:
            sel = [r for r in rows if r["guidance"] == guidance and r["n"] == n]
            x = np.array([r["steps"] for r in sel], float)
            y = np.array([r["seconds_per_image"] for r in sel])
            slope, icpt = np.polyfit(x, y, 1)
            fits.append({"guidance": guidance, "n": n, "fixed_s": round(float(icpt), 4),
                         "per_step_s": round(float(slope), 5)})
    out = {"generator": a.generator, "device": a.device, "threads": a.threads,
           "image_size": gen.defaults.get("size"), "rows": rows, "fits": fits,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "torch": torch.__version__},
           "command": "python benchmarks/generate_speed.py " + " ".join(
               f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
               for k, v in vars(a).items() if k != "out")}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    lines = ["| guidance | n | " + " | ".join(f"{s} steps" for s in a.steps) +
             " | per step |", "|---|---|" + "---|" * len(a.steps) + "---|"]
    for f in fits:
        sel = {r["steps"]: r for r in rows if r["guidance"] == f["guidance"] and r["n"] == f["n"]}
        cells = " | ".join(f"{sel[s]['seconds_per_image']:.3f} s" for s in a.steps)
        lines.append(f"| {f['guidance']:g} | {f['n']} | {cells} | "
                     f"{1000 * f['per_step_s']:.1f} ms |")
    print("seconds per image\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
