"""The matrix-product floor of one factorized MaskInversion call, measured on this machine.

    python -m benchmarks.gemm_floor [--size 448] [--masks 10] [--iterations 10] [--chunk 4]
        [--threads 2] [--repeats 3]

Definition (issue 30 item 3, "time / (GMAC / rate)"):

- ``gmac``: the multiply-accumulates of the call as counted by
  :func:`benchmarks.maskinversion_flops.factorized_macs` (image forward + every iteration's maps
  and their backward + the final maps), in units of 1e9.
- The count is split over the matrix products that carry it, each at the shape the engine runs
  it with (:func:`product_shapes`): the forward's qkv / out / MLP / attention products per
  block, and per chunk of masks the folded ``(P N, 4C) x (4C, C)`` product, the
  ``(P H, N, d) x (d, N)`` product that gives dS/dA, and the transposed products of their
  backward. ``P`` is the chunk size of :func:`regionlab.region.maskinversion.invert`
  (``--chunk``, default ``MASK_CHUNK``); a last, smaller chunk gets its own shapes.
- Each distinct shape is timed with ``torch.matmul`` on random fp32 tensors at the same torch
  thread count as the timed run (one warm-up, median of ``repeats`` samples of >= 20 ms), giving
  its rate ``r_s``. It runs in its own process right after the cell's engines, so a busy machine
  slows the floor and the timed call alike, though not necessarily by the same factor.
- ``floor_s = sum_s MACs_s / r_s``: the wall time of the call if every multiply-accumulate ran
  at the speed this machine reaches for the product it belongs to, and nothing else cost time.
- ``gemm_rate_gmacs = gmac / floor_s``: the MAC-weighted harmonic mean of the per-shape rates,
  so ``floor_s == gmac / gemm_rate_gmacs`` exactly and
  ``floor_ratio = measured seconds / floor_s = seconds / (gmac / gemm_rate_gmacs)``.

Not in the count (so they are part of what a ratio above 1 measures): the elementwise work
(GELU derivative, ReLU over dS/dA, LayerNorm VJPs, interpolation, the loss, AdamW) and the
one-off per-image cache of the factorized engine (one more pass of the last block and the
products W1 W_o, yhat W1^T, yhat W_o: about 11 GMAC next to the 566 counted at 448 px, 10 masks,
10 iterations).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass

import torch

from benchmarks.maskinversion_flops import factorized_macs

#: ViT-B/16, the model of the speed benchmark.
WIDTH, LAYERS, PATCH, HEADS = 768, 12, 16, 12


@dataclass(frozen=True)
class Product:
    """``count`` products ``(batch x) (m x k) @ (k x n)``; ``trans_b``: B is a transposed view
    (the backward's products with a cached matrix)."""

    name: str
    batch: int
    m: int
    k: int
    n: int
    count: int = 1
    trans_b: bool = False

    @property
    def key(self) -> tuple:
        return (self.batch, self.m, self.k, self.n, self.trans_b)

    @property
    def macs(self) -> int:
        return self.count * self.batch * self.m * self.k * self.n


def tokens(size: int, patch: int = PATCH) -> int:
    return (size // patch) ** 2 + 1


def chunk_sizes(masks: int, chunk: int | None) -> list[int]:
    """Mask counts of the chunks :func:`invert` optimises one after another."""
    if chunk is None:
        from regionlab.region.maskinversion import MASK_CHUNK

        chunk = MASK_CHUNK
    size = max(1, int(chunk))
    return [min(size, masks - i) for i in range(0, masks, size)]


def product_shapes(size: int, masks: int, iterations: int, chunk: int | None = None,
                   c: int = WIDTH, layers: int = LAYERS, heads: int = HEADS) -> list[Product]:
    """The matrix products that carry :func:`factorized_macs`, at the engine's shapes."""
    n = tokens(size)
    d = c // heads
    out = [Product("fwd qkv", 1, n, c, 3 * c, layers),
           Product("fwd attn out", 1, n, c, c, layers),
           Product("fwd mlp fc", 1, n, c, 4 * c, layers),
           Product("fwd mlp proj", 1, n, 4 * c, c, layers),
           Product("fwd q k^T", heads, n, d, n, layers),
           Product("fwd attn v", heads, n, n, d, layers)]
    per_p: dict[int, int] = {}
    for p in chunk_sizes(masks, chunk):
        per_p[p] = per_p.get(p, 0) + 1
    for p, times in sorted(per_p.items(), reverse=True):
        maps = times * (iterations + 1)  # forward map evaluations of chunks of p masks
        back = times * iterations
        out += [Product(f"P={p} fold (PN,4C)x(4C,C)", 1, p * n, 4 * c, c, maps),
                Product(f"P={p} fold backward (PN,C)x(C,4C)", 1, p * n, c, 4 * c, back, True),
                Product(f"P={p} dS/dA (PH,N,d)x(d,N)", p * heads, n, d, n, maps),
                Product(f"P={p} dS/dA backward (PH,N,N)x(N,d)", p * heads, n, n, d, back, True)]
    total = sum(factorized_macs(n, c, masks, iterations, layers).values())
    assert sum(s.macs for s in out) == total, "product split disagrees with the flops count"
    return out


def time_product(s: Product, threads: int, repeats: int = 3, min_sample_s: float = 0.02) -> float:
    """Seconds of one product of shape ``s``: one warm-up, then the median of ``repeats``
    samples, each the mean of enough back-to-back products to last ``min_sample_s`` (small
    shapes take well under a millisecond)."""
    previous = torch.get_num_threads()  # restored: callers (and tests) keep their setting
    torch.set_num_threads(threads)
    try:
        lead = (s.batch,) if s.batch > 1 else ()
        a = torch.randn(*lead, s.m, s.k)
        if s.trans_b:
            b = torch.randn(*lead, s.n, s.k).transpose(-1, -2)
        else:
            b = torch.randn(*lead, s.k, s.n)
        t = time.perf_counter()
        torch.matmul(a, b)  # warm-up
        inner = max(1, math.ceil(min_sample_s / max(time.perf_counter() - t, 1e-9)))
        times = []
        for _ in range(max(1, repeats)):
            t = time.perf_counter()
            for _ in range(inner):
                torch.matmul(a, b)
            times.append((time.perf_counter() - t) / inner)
        times.sort()
        return times[len(times) // 2]
    finally:
        torch.set_num_threads(previous)


def floor_from_rates(shapes: list[Product], rates: dict) -> dict:
    """Combine per-shape rates (MACs/s, keyed by :attr:`Product.key`) into the floor."""
    gmac = sum(s.macs for s in shapes) / 1e9
    floor = sum(s.macs / rates[s.key] for s in shapes)
    return {"gmac": gmac, "floor_s": floor, "gemm_rate_gmacs": gmac / floor}


def floor_ratio(seconds: float | None, floor: dict | None) -> float | None:
    """``seconds / floor_s`` = measured time / (GMAC / rate)."""
    if not seconds or not floor or not floor.get("floor_s"):
        return None
    return seconds / floor["floor_s"]


def measure_floor(size: int, masks: int, iterations: int, chunk: int | None = None,
                  threads: int = 2, repeats: int = 3, timer=time_product) -> dict:
    """Time every distinct product shape of the call and return the floor (module docstring)."""
    shapes = product_shapes(size, masks, iterations, chunk)
    rates, per_shape = {}, []
    for s in shapes:
        if s.key not in rates:
            rates[s.key] = s.macs / s.count / timer(s, threads, repeats)
        per_shape.append({"name": s.name, "shape": [s.batch, s.m, s.k, s.n], "count": s.count,
                          "gmac": round(s.macs / 1e9, 3),
                          "rate_gmacs": round(rates[s.key] / 1e9, 2)})
    res = floor_from_rates(shapes, rates)
    return {"gmac": round(res["gmac"], 3), "gemm_rate_gmacs": round(res["gemm_rate_gmacs"], 2),
            "floor_s": round(res["floor_s"], 4), "threads": threads,
            "chunks": chunk_sizes(masks, chunk), "products": per_shape}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=448)
    p.add_argument("--masks", type=int, default=10)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--chunk", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    print(json.dumps(measure_floor(a.size, a.masks, a.iterations, a.chunk, a.threads,
                                   a.repeats)))


if __name__ == "__main__":
    main()
