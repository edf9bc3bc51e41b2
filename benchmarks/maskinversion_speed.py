"""MaskInversion speed: reference vs RegionLab's autograd, factorized and auto engines.

    python benchmarks/maskinversion_speed.py [--refvenv /work/refvenv] [--sizes 224 448]
        [--masks 1 3 10 30] [--iterations 10 30] [--threads 2] [--timeout 900]

One run, same random-init ViT-B/16 weights, same input, fp32. Every cell runs in a fresh
subprocess (wall time of the whole MaskInversion call including the image forward; peak RSS of
the process, model included). The reference (see maskinversion_parity.py for its virtualenv)
is given ``--timeout`` seconds per cell; a cell that exceeds it is recorded as a lower bound.
Results: benchmarks/results/maskinversion_speed.json (+ a markdown table on stdout).

The floor (issue 30 item 3): after a cell's engines ran, a fresh subprocess times this machine's
fp32 matrix products at the factorized engine's shapes for that cell (same ``--threads`` and
``--chunk``; ``benchmarks/gemm_floor.py`` has the exact definition), and the row gains ``gmac``
(the count of ``benchmarks/maskinversion_flops.py``), ``gemm_rate_gmacs``, ``floor_s`` =
gmac / rate and ``floor_ratio`` = factorized seconds / floor_s (target <= 1.3; ``None`` when the
factorized engine was not run). ``--no-floor`` skips it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
PEER = ROOT / "peers" / "reference_maskinversion.py"


def worker(args) -> None:
    """Run one RegionLab cell in this (fresh) process and print a JSON line."""
    import open_clip

    from benchmarks.maskinversion_parity import loaded, make_inputs
    from regionlab.region.maskinversion import invert

    torch.set_num_threads(args.threads)
    state = torch.load(args.state, weights_only=True)
    model = open_clip.create_model("ViT-B-16", pretrained=None)
    model.load_state_dict(state)
    clip = loaded(model.eval().requires_grad_(False), torch.float32)
    image, masks = make_inputs(args.size, args.n_masks)
    t0 = time.perf_counter()
    r = invert(clip, image, list(masks), iterations=args.n_iter, lr=0.5, alpha=0.0,
               resolution=args.size, engine=args.engine, chunk=args.chunk)
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "engine_used": r.engine,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_ours(state: Path, engine: str, size: int, n_masks: int, n_iter: int, threads: int,
             chunk: int | None = None):
    cmd = [sys.executable, "-m", "benchmarks.maskinversion_speed", "--worker", "--state",
           str(state), "--engine", engine, "--size", str(size), "--n-masks", str(n_masks),
           "--n-iter", str(n_iter), "--threads", str(threads)] + (
               ["--chunk", str(chunk)] if chunk else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         cwd=ROOT.parent).stdout.strip().splitlines()[-1]
    return json.loads(out)


def run_floor(size: int, n_masks: int, n_iter: int, threads: int, chunk: int | None = None):
    """The GEMM floor of one cell, measured in a fresh process (benchmarks/gemm_floor.py)."""
    cmd = [sys.executable, "-m", "benchmarks.gemm_floor", "--size", str(size), "--masks",
           str(n_masks), "--iterations", str(n_iter), "--threads", str(threads)] + (
               ["--chunk", str(chunk)] if chunk else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         cwd=ROOT.parent).stdout.strip().splitlines()[-1]
    return json.loads(out)


def add_floor(row: dict, floor: dict) -> dict:
    """Put the floor's numbers into a row; the ratio is against the factorized engine's time."""
    from benchmarks.gemm_floor import floor_ratio

    ratio = floor_ratio((row.get("factorized") or {}).get("seconds"), floor)
    row.update({"gmac": floor["gmac"], "gemm_rate_gmacs": floor["gemm_rate_gmacs"],
                "floor_s": floor["floor_s"],
                "floor_ratio": None if ratio is None else round(ratio, 3),
                "floor_products": floor["products"]})
    return row


def run_reference(refvenv: Path, state: dict, size: int, n_masks: int, n_iter: int,
                  threads: int, timeout: float):
    import open_clip

    from benchmarks.maskinversion_parity import loaded, make_inputs

    model = open_clip.create_model("ViT-B-16", pretrained=None)
    model.load_state_dict(state)
    clip = loaded(model, torch.float32)
    image, masks = make_inputs(size, n_masks)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.pt", Path(tmp) / "out.pt"
        torch.save({"arch": "ViT-B-16", "state_dict": state, "image": clip.to_tensor([image], size),
                    "masks": torch.from_numpy(masks), "queries": None, "iterations": n_iter,
                    "lr": 0.5, "alpha": 0.0, "dtype": "float32", "what": "maskinversion",
                    "threads": threads}, inp)
        try:
            subprocess.run([str(refvenv / "bin" / "python"), str(PEER), str(inp), str(out)],
                           check=True, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"seconds": None, "timeout_s": timeout}
        res = torch.load(out, weights_only=False)
    return {"seconds": res["maskinversion_s"], "peak_rss_mb": res["peak_rss_mb"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--state", type=Path)
    p.add_argument("--engine", default="auto")
    p.add_argument("--size", type=int)
    p.add_argument("--n-masks", type=int)
    p.add_argument("--n-iter", type=int)
    p.add_argument("--refvenv", type=Path, default=Path("/work/refvenv"))
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    p.add_argument("--masks", type=int, nargs="+", default=[1, 3, 10, 30])
    p.add_argument("--iterations", type=int, nargs="+", default=[10, 30])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--no-floor", action="store_true",
                   help="skip the GEMM floor measurement (gmac, gemm_rate_gmacs, floor_ratio)")
    p.add_argument("--chunk", type=int, default=None,
                   help="masks optimised at once (default: invert's MASK_CHUNK)")
    p.add_argument("--engines", nargs="+", default=["autograd", "factorized", "auto"],
                   choices=["autograd", "factorized", "auto"])
    p.add_argument("--out", type=Path, default=ROOT / "results" / "maskinversion_speed.json")
    a = p.parse_args(argv)
    if a.worker:
        return worker(a)
    import open_clip

    torch.manual_seed(0)
    state = open_clip.create_model("ViT-B-16", pretrained=None).state_dict()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        spath = Path(tmp) / "state.pt"
        torch.save(state, spath)
        for size in a.sizes:
            for n_iter in a.iterations:
                for n_masks in a.masks:
                    row = {"size": size, "masks": n_masks, "iterations": n_iter}
                    for engine in a.engines:
                        row[engine] = run_ours(spath, engine, size, n_masks, n_iter, a.threads,
                                               a.chunk)
                    if not a.no_floor:
                        add_floor(row, run_floor(size, n_masks, n_iter, a.threads, a.chunk))
                    if not a.no_reference:
                        row["reference"] = run_reference(a.refvenv, state, size, n_masks, n_iter,
                                                         a.threads, a.timeout)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    a.out.parent.mkdir(parents=True, exist_ok=True)
                    a.out.write_text(json.dumps({"model": "ViT-B-16 random init, fp32",
                                                 "threads": a.threads, "rows": rows}, indent=2))
    print(table(rows))


def table(rows) -> str:
    def fmt(cell):
        if cell is None or not cell:
            return "-"
        if cell.get("seconds") is None:
            return f"> {cell['timeout_s']:.0f} s"
        return f"{cell['seconds']:.2f} s"

    lines = ["| S | masks | iters | reference | autograd | factorized | auto | ref / factorized "
             "| floor ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = r.get("reference")
        ratio = "-"
        if ref and ref.get("seconds"):
            ratio = f"{ref['seconds'] / r['factorized']['seconds']:.1f}x"
        elif ref:
            ratio = f"> {ref['timeout_s'] / r['factorized']['seconds']:.1f}x"
        auto = r.get("auto") or {}
        floor = "not measured" if "floor_s" not in r else (
            "-" if r.get("floor_ratio") is None else
            f"{r['floor_ratio']:.2f} ({r['floor_s']:.2f} s at {r['gemm_rate_gmacs']:.0f} GMAC/s)")
        lines.append(f"| {r['size']} | {r['masks']} | {r['iterations']} | {fmt(ref)} | "
                     f"{fmt(r.get('autograd'))} | {fmt(r.get('factorized'))} | {fmt(auto)} "
                     f"({auto.get('engine_used', '-')}) | {ratio} | {floor} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
