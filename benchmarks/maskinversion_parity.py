"""Parity of RegionLab's LeGrad and MaskInversion with the reference packages.

    python benchmarks/maskinversion_parity.py [--refvenv /work/refvenv] [--sizes 224 448]

The reference (legrad-torch 1.1 + maskinversion-torch 1.1 on open_clip 2.23.0) lives in its own
virtualenv (it needs open_clip < 2.26):
    python3 -m venv REFVENV && REFVENV/bin/pip install torch==2.14.1 torchvision==0.29.1 \
        open_clip_torch==2.23.0 legrad-torch==1.1 maskinversion-torch==1.1
Both sides get the same random-init ViT-B/16 weights and the same normalised input tensor,
fp32 without TF32 (and float64). Results: benchmarks/results/maskinversion_parity.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from regionlab.explain.legrad import legrad_maps
from regionlab.models.clip import OPENAI_MEAN, OPENAI_STD, REAL_DEFAULTS, LoadedCLIP
from regionlab.region import maskinversion as mi

ROOT = Path(__file__).resolve().parent
PEER = ROOT / "peers" / "reference_maskinversion.py"


def make_inputs(size: int, n_masks: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    image = (rng.rand(240, 320, 3) * 255).astype(np.uint8)
    masks = np.zeros((n_masks, 240, 320), np.float32)
    for i in range(n_masks):
        x0, y0 = rng.randint(0, 200), rng.randint(0, 140)
        masks[i, y0 : y0 + rng.randint(30, 100), x0 : x0 + rng.randint(30, 120)] = 1
    return image, masks


def loaded(model, dtype, device="cpu") -> LoadedCLIP:
    device = torch.device(device)
    return LoadedCLIP(
        "ViT-B-16@random",
        model.to(device=device, dtype=dtype),
        open_clip.get_tokenizer("ViT-B-16"),
        224,
        OPENAI_MEAN,
        OPENAI_STD,
        device,
        dtype,
        dict(REAL_DEFAULTS),
    )


def run_reference(refvenv: Path, payload: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.pt", Path(tmp) / "out.pt"
        torch.save(payload, inp)
        subprocess.run(
            [str(refvenv / "bin" / "python"), str(PEER), str(inp), str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return torch.load(out, weights_only=False)


def ours_maskinversion(clip, image, masks, iterations, lr, alpha, size, engine):
    cache = mi.prepare_image_cache(clip, image, size)
    return mi.invert(
        clip,
        image,
        list(masks),
        iterations=iterations,
        lr=lr,
        alpha=alpha,
        resolution=size,
        engine=engine,
        cache=cache,
    ).embeddings


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--refvenv", type=Path, default=Path("/work/refvenv"))
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--masks", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "maskinversion_parity.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    base = open_clip.create_model("ViT-B-16", pretrained=None).eval().requires_grad_(False)
    state = {k: v.clone() for k, v in base.state_dict().items()}
    rows = []
    for dtype_name in ("float32", "float64"):
        dtype = getattr(torch, dtype_name)
        model = open_clip.create_model("ViT-B-16", pretrained=None)
        model.load_state_dict(state)
        clip = loaded(model.eval().requires_grad_(False), dtype)
        for size in a.sizes:
            image, masks = make_inputs(size, a.masks)
            x = clip.to_tensor([image], size=size)
            queries = F.normalize(
                torch.randn(4, clip.embed_dim, generator=torch.Generator().manual_seed(1)), dim=-1
            ).to(dtype)
            ref = run_reference(
                a.refvenv,
                {
                    "arch": "ViT-B-16",
                    "state_dict": state,
                    "image": x,
                    "masks": torch.from_numpy(masks),
                    "queries": queries,
                    "iterations": a.iterations,
                    "lr": 0.5,
                    "alpha": 0.0,
                    "dtype": dtype_name,
                    "what": "both",
                    "threads": a.threads,
                },
            )
            ours_maps = torch.from_numpy(
                legrad_maps(clip, image, queries, resolution=size, layers=1).maps
            )
            row = {
                "dtype": dtype_name,
                "size": size,
                "masks": a.masks,
                "iterations": a.iterations,
                "legrad_max_abs_diff": float(
                    (ours_maps - ref["legrad"].to(ours_maps.dtype)).abs().max()
                ),
            }
            for engine in ("autograd", "factorized"):
                emb = ours_maskinversion(clip, image, masks, a.iterations, 0.5, 0.0, size, engine)
                r = ref["embeddings"].to(emb.dtype)
                row[f"{engine}_min_cosine"] = float(F.cosine_similarity(emb, r, dim=-1).min())
                row[f"{engine}_max_abs_diff"] = float((emb - r).abs().max())
            rows.append(row)
            print(json.dumps(row), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps(
            {
                "reference": "legrad-torch 1.1, maskinversion-torch 1.1, open_clip_torch 2.23.0",
                "model": "ViT-B-16 random init",
                "lr": 0.5,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
