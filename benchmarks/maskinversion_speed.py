"""MaskInversion speed: reference vs RegionLab's autograd, factorized and auto engines.

    python benchmarks/maskinversion_speed.py [--refvenv /work/refvenv] [--sizes 224 448]
        [--masks 1 3 10 30] [--iterations 10 30] [--threads 2] [--timeout 900]
        [--device cpu|cuda] [--repeats 1]

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

``--device cuda`` (issue 30 item 5; ``benchmarks/gpu_maskinversion.sh`` runs the paper's setting
and the grid): the model and the whole MaskInversion call run on the GPU, fp32 without TF32 (as
the reference). RegionLab's cells all run in ONE fresh worker process (CUDA start-up paid
once); per engine and image size one untimed warm-up call (1 mask, 1 iteration) first pays the
lazy CUDA/cuBLAS initialisation; each timed call is bracketed by ``torch.cuda.synchronize()``,
and ``seconds`` is the median of ``--repeats`` calls. Per cell ``peak_cuda_mb`` is
``torch.cuda.max_memory_allocated`` during the call (model weights included, ``model_cuda_mb``
of them); the JSON records the card (``torch.cuda.get_device_name``), torch and CUDA versions.
The reference runs on the same card in its own virtualenv. The GEMM floor is CPU-only and not
measured on CUDA. Without a CUDA device, ``--device cuda`` stops with a one-line error.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
PEER = ROOT / "peers" / "reference_maskinversion.py"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_cell(clip, invert, size: int, n_masks: int, n_iter: int, engine: str,
              chunk: int | None, repeats: int = 1) -> dict:
    """Wall time of ``repeats`` whole MaskInversion calls of one cell (median), with peak memory:
    CUDA's allocator peak on a GPU, the process's peak RSS on the CPU."""
    from benchmarks.maskinversion_parity import make_inputs

    image, masks = make_inputs(size, n_masks)
    device = clip.device
    runs, peak, used = [], 0.0, None
    for _ in range(max(1, repeats)):
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        r = invert(clip, image, list(masks), iterations=n_iter, lr=0.5, alpha=0.0,
                   resolution=size, engine=engine, chunk=chunk)
        _sync(device)
        runs.append(time.perf_counter() - t0)
        used = r.engine
        if device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(device) / 2**20)
    out = {"seconds": statistics.median(runs), "engine_used": used}
    if len(runs) > 1:
        out["runs_s"] = [round(x, 4) for x in runs]
    if device.type == "cuda":
        out["peak_cuda_mb"] = round(peak, 1)
    else:
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def worker(args) -> None:
    """Run RegionLab cells in this (fresh) process and print one JSON line per cell and engine:
    one cell (``--size --n-masks --n-iter --engine``), or on CUDA all of ``--cells`` for every
    engine of ``--engines``, each engine and size after one untimed warm-up call."""
    import open_clip

    from benchmarks.maskinversion_parity import loaded
    from regionlab.region.maskinversion import invert

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    state = torch.load(args.state, weights_only=True)
    model = open_clip.create_model("ViT-B-16", pretrained=None)
    model.load_state_dict(state)
    clip = loaded(model.eval().requires_grad_(False), torch.float32, device)
    model_mb = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None
    cells = [tuple(int(v) for v in c.split(":")) for c in args.cells] if args.cells else [
        (args.size, args.n_masks, args.n_iter)]
    engines = args.engines if args.cells else [args.engine]
    warm = set()
    for size, n_masks, n_iter in cells:
        for engine in engines:
            row = {"size": size, "masks": n_masks, "iterations": n_iter, "engine": engine}
            try:
                if device.type == "cuda" and (engine, size) not in warm:
                    t0 = time.perf_counter()
                    time_cell(clip, invert, size, 1, 1, engine, args.chunk)
                    row["warmup_s"] = round(time.perf_counter() - t0, 4)
                    warm.add((engine, size))
                row.update(time_cell(clip, invert, size, n_masks, n_iter, engine, args.chunk,
                                     args.repeats))
                if model_mb is not None:
                    row["model_cuda_mb"] = round(model_mb, 1)
            except Exception as err:  # noqa: BLE001 - one failed cell must not lose the rest
                if device.type != "cuda":
                    raise
                row.update({"seconds": None, "error": f"{type(err).__name__}: {err}"[:300]})
                torch.cuda.empty_cache()
            print(json.dumps(row), flush=True)


def _worker_cmd(state: Path, threads: int, chunk: int | None, device: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.maskinversion_speed", "--worker", "--state",
            str(state), "--threads", str(threads), "--device", device] + (
                ["--chunk", str(chunk)] if chunk else [])


def run_ours(state: Path, engine: str, size: int, n_masks: int, n_iter: int, threads: int,
             chunk: int | None = None, device: str = "cpu"):
    cmd = _worker_cmd(state, threads, chunk, device) + [
        "--engine", engine, "--size", str(size), "--n-masks", str(n_masks),
        "--n-iter", str(n_iter)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         cwd=ROOT.parent).stdout.strip().splitlines()[-1]
    res = json.loads(out)
    for k in ("size", "masks", "iterations", "engine"):
        res.pop(k, None)
    return res


def run_ours_many(state: Path, engines: list[str], cells: list[tuple[int, int, int]],
                  threads: int, chunk: int | None, device: str, repeats: int) -> dict:
    """All cells and engines in one worker process (the CUDA path): {(size, masks, iters,
    engine): result}. Lines are echoed as they come; a crash keeps what was measured."""
    cmd = _worker_cmd(state, threads, chunk, device) + [
        "--repeats", str(repeats), "--engines", *engines, "--cells",
        *[f"{s}:{m}:{i}" for s, m, i in cells]]
    res = {}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                cwd=ROOT.parent)
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            row = json.loads(line)
            print("  ours:", line.strip(), flush=True)
            key = (row.pop("size"), row.pop("masks"), row.pop("iterations"), row.pop("engine"))
            res[key] = row
        if proc.wait():
            err.seek(0)
            print(f"worker failed (exit {proc.returncode}):\n{err.read()[-3000:]}",
                  file=sys.stderr)
    return res


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


def reference_available(refvenv: Path) -> str | None:
    """None when the reference's virtualenv can import its packages, else why not."""
    py = refvenv / "bin" / "python"
    if not py.exists():
        return f"no reference virtualenv at {refvenv} (see benchmarks/maskinversion_parity.py)"
    ok = subprocess.run([str(py), "-c", "import open_clip, legrad, maskinversion"],
                        capture_output=True, text=True)
    if ok.returncode:
        return f"{py} cannot import the reference packages: {ok.stderr.strip()[-300:]}"
    return None


def run_reference(refvenv: Path, state: dict, size: int, n_masks: int, n_iter: int,
                  threads: int, timeout: float, device: str = "cpu"):
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
                    "threads": threads, "device": device}, inp)
        try:
            subprocess.run([str(refvenv / "bin" / "python"), str(PEER), str(inp), str(out)],
                           check=True, capture_output=True, timeout=timeout, text=True)
        except subprocess.TimeoutExpired:
            return {"seconds": None, "timeout_s": timeout}
        except subprocess.CalledProcessError as err:
            if device == "cpu" and err.returncode >= 0:
                raise
            # killed (the kernel's OOM killer sends SIGKILL) or a GPU failure: record, go on
            why = (f"killed by signal {-err.returncode} (SIGKILL: most likely out of memory)"
                   if err.returncode == -9 else (err.stderr or "").strip()[-300:])
            return {"seconds": None, "error": why}
        res = torch.load(out, weights_only=False)
    cell = {"seconds": res["maskinversion_s"]}
    for k in ("peak_rss_mb", "peak_cuda_mb", "warmup_s"):
        if k in res:
            cell[k] = res[k]
    return cell


def cuda_info() -> dict:
    """The card and software a CUDA run used (recorded in the JSON)."""
    props = torch.cuda.get_device_properties(0)
    return {"card": torch.cuda.get_device_name(0), "card_memory_gb":
            round(props.total_memory / 2**30, 1), "capability": ".".join(
                str(v) for v in torch.cuda.get_device_capability(0)),
            "torch": torch.__version__, "cuda": torch.version.cuda, "tf32": False}


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
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where the model and MaskInversion run (cuda: the first GPU)")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed calls per cell on CUDA, the median is kept (CPU: 1 per process)")
    p.add_argument("--cells", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "maskinversion_speed.json")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error(f"--device cuda: CUDA is not available here (torch {torch.__version__}, "
                f"CUDA build {torch.version.cuda or 'none'}, {torch.cuda.device_count()} "
                "devices); run it on a machine with an NVIDIA GPU or use --device cpu")
    if a.worker:
        return worker(a)
    import open_clip

    torch.manual_seed(0)
    state = open_clip.create_model("ViT-B-16", pretrained=None).state_dict()
    cuda = a.device == "cuda"
    meta = {"model": "ViT-B-16 random init, fp32", "threads": a.threads, "device": a.device,
            "chunk": a.chunk, "repeats": a.repeats if cuda else 1}
    if cuda:
        meta.update(cuda_info())
        print(f"card: {meta['card']} (torch {meta['torch']}, CUDA {meta['cuda']})", flush=True)
    no_reference = a.no_reference
    if not no_reference:
        why = reference_available(a.refvenv)
        if why:  # e.g. a GPU machine without the reference's virtualenv: skip, say so
            print(f"reference skipped: {why}", flush=True)
            meta["reference_skipped"] = why
            no_reference = True
    cells = [(s, m, i) for s in a.sizes for i in a.iterations for m in a.masks]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        spath = Path(tmp) / "state.pt"
        torch.save(state, spath)
        ours = run_ours_many(spath, a.engines, cells, a.threads, a.chunk, a.device,
                             a.repeats) if cuda else {}
        for size, n_masks, n_iter in cells:
            row = {"size": size, "masks": n_masks, "iterations": n_iter}
            for engine in a.engines:
                row[engine] = (ours.get((size, n_masks, n_iter, engine)) if cuda else
                               run_ours(spath, engine, size, n_masks, n_iter, a.threads, a.chunk))
            if not a.no_floor and not cuda:
                add_floor(row, run_floor(size, n_masks, n_iter, a.threads, a.chunk))
            if not no_reference:
                row["reference"] = run_reference(a.refvenv, state, size, n_masks, n_iter,
                                                 a.threads, a.timeout, a.device)
            rows.append(row)
            print(json.dumps(row), flush=True)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps({**meta, "rows": rows}, indent=2))
    print(table(rows))


def table(rows) -> str:
    def fmt(cell):
        if cell is None or not cell:
            return "-"
        if cell.get("seconds") is None:
            if "timeout_s" in cell:
                return f"> {cell['timeout_s']:.0f} s"
            return "killed (out of memory)" if "signal 9" in cell.get("error", "") else "failed"
        return f"{cell['seconds']:.2f} s" if cell["seconds"] >= 0.1 else f"{cell['seconds']:.3f} s"

    lines = ["| S | masks | iters | reference | autograd | factorized | auto | ref / factorized "
             "| floor ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = r.get("reference")
        fact = (r.get("factorized") or {}).get("seconds")
        ratio = "-"
        if ref and ref.get("seconds") and fact:
            ratio = f"{ref['seconds'] / fact:.1f}x"
        elif ref and "timeout_s" in ref and fact:
            ratio = f"> {ref['timeout_s'] / fact:.1f}x"
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
