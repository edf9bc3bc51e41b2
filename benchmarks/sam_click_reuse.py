"""Cost of further clicks vs the first click on one image, SAM ViT-B at 1024 px on CPU.

The first click on an image pays for the image encoder (``Segmenter.set_image``) plus the
prompt decoder; every further click reuses the session's embedding and pays only the decoder.
Goal (issue 5): a second click costs at most 5% of the first.

Real SAM weights are not needed for timing (the cost does not depend on weight values), so by
default the ViT-B is randomly initialised; ``--checkpoint`` times a real one. The run goes
through the same per-session ``make_segmenter`` code path the app uses
(``regionlab.segment.interactive.SamSegmenter``) and counts image-encoder calls with a
forward hook to prove the reuse.

    .venv/bin/python benchmarks/sam_click_reuse.py            # ~3-6 min on 1 CPU thread
    .venv/bin/python benchmarks/sam_click_reuse.py --images 1 --clicks 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from regionlab.models.sam import ARCHS, LoadedSAM, build_sam_model, infer_arch, read_checkpoint  # noqa: E402
from regionlab.segment.interactive import SamSegmenter  # noqa: E402
from regionlab.shapes.scenes import RenderOptions, render_scene  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "sam_click_reuse.json"


def make_model(arch: str, checkpoint: str | None) -> LoadedSAM:
    if checkpoint:
        state = read_checkpoint(Path(checkpoint))
        arch = infer_arch(state)
        model = build_sam_model(arch)
        model.load_state_dict(state)
        name = f"sam-{arch.replace('_', '-')} ({Path(checkpoint).name})"
    else:
        torch.manual_seed(0)
        model = build_sam_model(arch)
        name = f"sam-{arch.replace('_', '-')} (random init: timing only)"
    model = model.eval().requires_grad_(False)
    return LoadedSAM(name, model, arch, torch.device("cpu"), torch.float32)


def test_image(index: int, width: int, height: int) -> np.ndarray:
    """A ShapesWorld scene rendered at the longest side, cropped to width x height."""
    side = max(width, height)
    scene = render_scene((9, index), RenderOptions(size=side, antialias=1, max_objects=6,
                                                   min_objects=3))
    return np.ascontiguousarray(scene.image[:height, :width])


def clicks_for(image: np.ndarray, n: int, seed: int) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    return [(int(rng.integers(w)), int(rng.integers(h)), int(i % 3 != 2)) for i in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="vit_b", choices=sorted(ARCHS))
    ap.add_argument("--checkpoint", default=None, help="a real SAM checkpoint (optional)")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--clicks", type=int, default=5, help="further clicks per image")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    loaded = make_model(args.arch, args.checkpoint)
    build_s = time.perf_counter() - t0
    encoder_calls = [0]
    loaded.model.image_encoder.register_forward_hook(
        lambda *_: encoder_calls.__setitem__(0, encoder_calls[0] + 1))

    # warm-up on a small image (first-call allocations, kernel selection) - not timed
    warm = SamSegmenter(loaded)
    warm.set_image(test_image(99, 64, 48))
    warm.predict(points=[(10, 10, 1)])
    encoder_calls[0] = 0

    per_image = []
    for i in range(args.images):
        image = test_image(i, args.width, args.height)
        seg = SamSegmenter(loaded)  # one session per image, as in the app
        clicks = clicks_for(image, args.clicks + 1, seed=i)
        calls_before = encoder_calls[0]
        t = time.perf_counter()
        seg.set_image(image)
        first = seg.predict(points=clicks[:1], multimask=True)
        first_s = time.perf_counter() - t
        further, prev = [], first.logits[0]
        for k in range(1, len(clicks)):
            t = time.perf_counter()
            r = seg.predict(points=clicks[: k + 1], multimask=False, prev_logits=prev)
            further.append(time.perf_counter() - t)
            prev = r.logits[0]
            assert r.masks.shape[1:] == image.shape[:2]
        per_image.append({
            "image": f"{args.width}x{args.height}", "first_click_s": round(first_s, 4),
            "further_clicks_s": [round(x, 5) for x in further],
            "second_click_s": round(further[0], 5),
            "second_over_first": round(further[0] / first_s, 5),
            "median_further_over_first": round(statistics.median(further) / first_s, 5),
            "encoder_calls": encoder_calls[0] - calls_before,
        })
        print(f"image {i}: first click {first_s:.2f} s, second {further[0] * 1000:.1f} ms "
              f"({100 * further[0] / first_s:.2f}%), median further "
              f"{statistics.median(further) * 1000:.1f} ms, encoder calls "
              f"{per_image[-1]['encoder_calls']}", flush=True)

    worst = max(p["second_over_first"] for p in per_image)
    result = {
        "benchmark": "sam_click_reuse", "model": loaded.name, "arch": args.arch,
        "encoder_input": loaded.image_size, "device": "cpu", "threads": args.threads,
        "torch": torch.__version__, "machine": platform.machine(),
        "cpu": platform.processor() or platform.machine(), "build_s": round(build_s, 2),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "images": per_image, "worst_second_over_first": worst,
        "goal": "second click <= 5% of the first", "goal_met": bool(worst <= 0.05),
        "command": "python " + " ".join(sys.argv),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"worst second/first = {100 * worst:.2f}% (goal <= 5%): "
          f"{'met' if result['goal_met'] else 'NOT met'}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
