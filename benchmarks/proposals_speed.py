"""Time of the classical engine's automatic proposals: the engine before 2026-12-07 against now.

    python benchmarks/proposals_speed.py [--scenes 5] [--reps 3]

Images: the app's three photo examples (at the engine's working size, longest side 512), three
of its ShapesWorld example scenes (448 px), and ``--scenes`` 448 px test scenes of each
renderer (ours, OpenCV, matplotlib). Both paths run in the same process, one thread, on the
same images:
- *before*: ``regionlab/segment/classical.py`` as of commit e6dff20 (read with ``git show``):
  every grown region is boundary-refined, then those scoring below the minimum score (0.1, the
  default) are dropped;
- *now*: a region whose refined score provably cannot reach the minimum
  (:func:`regionlab.segment.classical._score_bound`) is dropped before its refinement, and the
  refinement computes only the (edge pixel, outside sample) pairs it can use.
The outputs must be identical (every mask and score); the JSON records it per image.
Writes benchmarks/results/proposals_speed.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from regionlab.segment.classical import classical_proposals
from regionlab.segment.evaluate import held_out_scenes
from regionlab.segment.interactive import WORK_SIDE
from regionlab.segment.proposals import CLASSICAL_DEFAULTS, _work_copy
from regionlab.ui.examples import SCENE_SEEDS, photo_example, photos_available, scene_example

OUT = Path(__file__).resolve().parent / "results" / "proposals_speed.json"
MIN_SCORE = CLASSICAL_DEFAULTS["pred_iou_thresh"]
BEFORE = "e6dff20"  # the last commit with the previous engine


def engine_before():
    """The classical engine's module as of commit ``BEFORE``."""
    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "show", f"{BEFORE}:regionlab/segment/classical.py"],
                         cwd=root, check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "classical_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("classical_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def images(n_scenes: int) -> list[tuple[str, str, np.ndarray]]:
    """(group, name, RGB image at the engine's working size)."""
    out = []
    if photos_available():
        out += [("photos", name, _work_copy(photo_example(name).image, WORK_SIDE))
                for name in ("astronaut", "coffee", "chelsea")]
    out += [("example scenes", f"scene {s}", scene_example(s).image)
            for s in list(SCENE_SEEDS)[:3]]
    for renderer in ("pil", "cv", "mpl"):
        out += [(f"test scenes, {renderer}", f"{renderer} test {i}", sc.image) for i, sc in
                enumerate(held_out_scenes(n_scenes, size=448, renderer=renderer))]
    return out


def _timed(fn, reps: int):
    times, result = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pps = CLASSICAL_DEFAULTS["points_per_side"]
    before = engine_before()
    rows = []
    for group, name, img in images(args.scenes):
        t_all, a = _timed(lambda img=img: [(m, s) for m, s in before.classical_proposals(
            img, pps) if s >= MIN_SCORE], args.reps)
        t_bound, b = _timed(lambda img=img: classical_proposals(img, pps, min_score=MIN_SCORE),
                            args.reps)
        same = len(a) == len(b) and all(
            (ma == mb).all() and sa == sb for (ma, sa), (mb, sb) in zip(a, b))
        rows.append({"group": group, "image": name, "size": list(img.shape[:2]),
                     "regions": len(b), "before_s": round(t_all, 4),
                     "now_s": round(t_bound, 4), "identical": bool(same)})
        print(f"{name}: {t_all:.2f} s -> {t_bound:.2f} s, identical {same}", flush=True)
    groups = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    summary = [{"group": g, "images": len(rs),
                "before_s": round(statistics.median(r["before_s"] for r in rs), 3),
                "now_s": round(statistics.median(r["now_s"] for r in rs), 3),
                "speedup": round(statistics.median(r["before_s"] / r["now_s"]
                                                   for r in rs), 2),
                "identical": all(r["identical"] for r in rs)} for g, rs in groups.items()]
    result = {"benchmark": "proposals_speed", "before": BEFORE, "min_score": MIN_SCORE,
              "points_per_side": pps, "reps": args.reps, "threads": 1,
              "machine": platform.platform(), "processor": platform.processor(),
              "summary": summary, "images": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n| images | n | before ({BEFORE}), median s | now, median s | speed-up (median) "
          "| identical |")
    print("|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['group']} | {s['images']} | {s['before_s']:.2f} | "
              f"{s['now_s']:.2f} | {s['speedup']:.1f}x | {s['identical']} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
