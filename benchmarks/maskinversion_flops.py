"""Why the factorized engine's speed-up over the reference is bounded on a small CPU.

    python benchmarks/maskinversion_flops.py [--size 448] [--masks 10] [--iterations 10]

Counts the multiply-accumulates (MACs) of one MaskInversion call with the factorized engine
(METHODS.md 2.1, folded variant as implemented in ``regionlab.region.maskinversion``) for a
ViT-B/16, measures this machine's sustained fp32 matrix-product rate at the engine's dominant
shape ((P N) x 4C times 4C x C) with the same thread count, and prints the shortest possible
wall time of the call at that rate next to the time a given speed-up over a measured reference
would require. Writes benchmarks/results/maskinversion_flops.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent


def vit_forward_macs(n: int, c: int, layers: int) -> float:
    """MACs of a ViT forward: per block 4 N C^2 (qkv + out) + 8 N C^2 (MLP) + 2 N^2 C (attn)."""
    return layers * (12 * n * c * c + 2 * n * n * c)


def factorized_macs(n: int, c: int, p: int, iters: int, layers: int) -> dict:
    """MACs of one call: the image forward, every iteration's maps for P masks (the folded
    (P N, 4C) x (4C, C) product and dS/dA = G V^T over heads) and their backward (the same
    products transposed), and one final map evaluation."""
    per_map = n * 4 * c * c + n * n * c
    return {"forward": vit_forward_macs(n, c, layers),
            "iterations": 2 * per_map * p * iters,
            "final_maps": per_map * p}


def gemm_rate(m: int, k: int, n: int, threads: int, repeats: int = 5) -> float:
    """Sustained fp32 MACs/s of an (m x k) @ (k x n) product (median of ``repeats``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    times.sort()
    return m * k * n / times[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=448)
    p.add_argument("--masks", type=int, default=10)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--speedup", type=float, default=10.0)
    p.add_argument("--speed-json", type=Path, default=ROOT / "results" / "maskinversion_speed.json",
                   help="where to read the reference's measured time for this cell")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "maskinversion_flops.json")
    a = p.parse_args()
    c, layers, patch = 768, 12, 16  # ViT-B/16
    n = (a.size // patch) ** 2 + 1
    macs = factorized_macs(n, c, a.masks, a.iterations, layers)
    total = sum(macs.values())
    rate = gemm_rate(a.masks * n, 4 * c, c, a.threads)
    ref = None
    if a.speed_json.is_file():
        for row in json.loads(a.speed_json.read_text()).get("rows", []):
            if (row["size"], row["masks"], row["iterations"]) == (a.size, a.masks, a.iterations):
                ref = row.get("reference", {}).get("seconds")
    out = {
        "model": "ViT-B/16", "size": a.size, "tokens": n, "masks": a.masks,
        "iterations": a.iterations, "threads": a.threads,
        "gmacs": {k: round(v / 1e9, 1) for k, v in macs.items()},
        "gmacs_total": round(total / 1e9, 1),
        "gemm_gmacs_per_s": round(rate / 1e9, 1),
        "gemm_shape": [a.masks * n, 4 * c, c],
        "lower_bound_seconds": round(total / rate, 2),
        "reference_seconds": ref,
        "target_speedup": a.speedup,
        "target_seconds": round(ref / a.speedup, 2) if ref else None,
        "best_possible_speedup": round(ref / (total / rate), 1) if ref else None,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
