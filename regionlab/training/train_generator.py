"""Train the bundled ShapesWorld generator (CLIP-embedding-conditioned diffusion) on CPU.

    python -m regionlab.training.train_generator --seed 0 --out assets/models/shapes_generator

Data: single-object ShapesWorld scenes (object radius ``--min-scale`` (15%) to 20-45% of the
image: the generator draws the region's object prominently; resized to 64 px) and their unit
embeddings by the bundled CLIP (``shapes-clip``; ``REGIONLAB_SHAPES_CLIP`` overrides its
weights); ``--masked`` / ``--context`` add crops of objects of multi-object scenes. Targets:
the view itself (``--targets scene``), or (``--targets canonical``, the shipped generator's
last stages) a canonical view of the object's class (centred, upright:
:func:`regionlab.shapes.views.canonical_view`), so the embedding of any view -- also the
MaskInversion embeddings of ``--mi`` objects of multi-object scenes, ``--mi-share`` of each
batch -- teaches the same drawing. Model: :class:`regionlab.models.generator.ShapesDiffusion`
(2 x 2 folded pixels, diffusers ``UNet2DModel`` at 32 x 32, embedding -> scale-shift
conditioning, a small full-resolution refinement), DDPM v-prediction objective with a cosine
noise schedule, 10% condition dropout (classifier-free guidance), noise on the conditioning
embedding, random flips (and, for scene targets, 90-degree rotations) of the target, and an
exponential moving average of the weights (what is shipped). Deterministic by seed (unless
``--max-minutes`` cuts the run short; the JSON then records the steps actually done).

The JSON next to the weights records the wall time and held-out metrics: images generated
from validation embeddings, classified zero-shot by the bundled CLIP (class, colour, shape).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..eval.shapes_regions import classify
from ..models.generator import (
    ShapesDiffusion,
    read_shapes_generator,
    sample_shapes,
    save_shapes_generator,
    to_pil,
    training_scheduler,
)
from ..shapes.views import GENERATOR_MIN_SCALE as MIN_SCALE
from ..shapes.views import canonical_views, object_views, validation_views
from ..shapes.vocab import CLASSES
from .decoder_data import embed, file_digest, maskinversion_views
from .provenance import environment


def augment(x: torch.Tensor, gen: torch.Generator, rotate: bool = True) -> torch.Tensor:
    """Random horizontal flip and (``rotate``) 90-degree rotation per image (B, 3, H, W)."""
    b = x.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if not rotate:
        return x
    rot = torch.randint(4, (b,), generator=gen)
    return torch.stack([torch.rot90(xi, int(k), dims=(-2, -1)) for xi, k in zip(x, rot)])


def generation_metrics(clip, model, emb: torch.Tensor, labels: np.ndarray, steps: int,
                       guidance: float, seed: int) -> dict:
    """Generate one image per embedding; classify it with the CLIP; compare with ``labels``."""
    images = []
    for i in range(0, len(emb), 32):
        x = sample_shapes(model, emb[i : i + 32], seed + i, steps, guidance)
        images += [np.asarray(im) for im in to_pil(x)]
    pred = classify(clip, images)
    truth = [CLASSES[j].split() for j in labels]
    got = [CLASSES[j].split() for j in pred]
    return {
        "class": float(np.mean(pred == labels)),
        "colour": float(np.mean([g[0] == t[0] for g, t in zip(got, truth)])),
        "shape": float(np.mean([g[1] == t[1] for g, t in zip(got, truth)])),
        "n": len(labels), "steps": steps, "guidance": guidance,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenes", type=int, default=16000, help="single-object scenes")
    p.add_argument("--masked", type=int, default=0, help="masked crops of objects")
    p.add_argument("--context", type=int, default=0, help="context crops of objects")
    p.add_argument("--mi", type=int, default=0,
                   help="MaskInversion embeddings of objects of multi-object scenes (needs "
                        "--targets canonical: they have no image of their own)")
    p.add_argument("--mi-share", type=float, default=0.0,
                   help="share of each batch drawn from the --mi embeddings (0: uniform over "
                        "all training embeddings)")
    p.add_argument("--targets", choices=("scene", "canonical"), default="scene",
                   help="what the generator learns to draw for a view's embedding: the view "
                        "itself (scene) or a canonical view of the object's class (centred, "
                        "upright, regionlab.shapes.views.canonical_view)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--min-scale", type=float, default=MIN_SCALE, help="smallest object radius")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--channels", type=str, default="32,64,128")
    p.add_argument("--drop", type=float, default=0.1, help="condition dropout (CFG)")
    p.add_argument("--noise", type=float, default=0.3, help="max noise norm on embeddings")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--eval-n", type=int, default=300)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop early (0: never)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--init", type=Path, default=None,
                   help="start from this generator (fine-tune after the CLIP changed)")
    p.add_argument("--out", type=Path, default=Path("assets/models/shapes_generator"))
    a = p.parse_args(argv)
    if a.mi and a.targets != "canonical":
        p.error("--mi needs --targets canonical")
    if not 0.0 <= a.mi_share <= 1.0:
        p.error(f"--mi-share must lie in [0, 1], got {a.mi_share}")
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)  # subnormal floats late in training slow CPUs down a lot
    from ..models import load_clip
    from ..models.registry import get_spec

    t0, c0 = time.time(), time.process_time()
    clip = load_clip("shapes-clip", "cpu")
    clip_path = get_spec("shapes-clip").extra["path"]
    train = object_views(a.scenes, a.masked, a.context, seed=a.seed, min_scale=a.min_scale)
    val = validation_views(a.eval_n, a.seed, a.min_scale)
    emb_train, emb_val = embed(clip, train.images), embed(clip, val.images)
    labels = train.labels
    if a.mi:
        emb_mi, labels_mi = maskinversion_views(clip, a.mi, seed=a.seed)
        emb_train = torch.cat([emb_train, emb_mi.to(emb_train.dtype)])
        labels = np.concatenate([labels, labels_mi])
    targets = canonical_views(labels, a.seed) if a.targets == "canonical" else train.images
    images = torch.from_numpy(targets).permute(0, 3, 1, 2).contiguous()  # uint8
    t_data = time.time() - t0
    print(f"data: {len(images)} scenes in {t_data:.0f}s", flush=True)

    torch.manual_seed(a.seed)
    channels = tuple(int(c) for c in a.channels.split(","))
    if a.init:
        model, _ = read_shapes_generator(a.init)
        channels = tuple(model.config["channels"])
    else:
        model = ShapesDiffusion(embed_dim=emb_train.shape[1], channels=channels)
    ema = copy.deepcopy(model).requires_grad_(False)
    sched = training_scheduler()
    alphas = sched.alphas_cumprod
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    warm = max(1, a.steps // 30)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / a.steps)))))
    gen = torch.Generator().manual_seed(a.seed)
    history, done = [], 0
    t_train = time.time()
    for step in range(a.steps):
        idx = torch.randint(len(images), (a.batch,), generator=gen)
        if a.mi and a.mi_share > 0:  # the last a.mi rows are the MaskInversion embeddings
            from_mi = torch.rand(a.batch, generator=gen) < a.mi_share
            mi_idx = len(images) - a.mi + torch.randint(a.mi, (a.batch,), generator=gen)
            idx = torch.where(from_mi, mi_idx, idx)
        x0 = augment(images[idx].float() / 127.5 - 1, gen, rotate=a.targets == "scene")
        e = emb_train[idx]
        strength = torch.rand(a.batch, 1, generator=gen) * a.noise
        e = F.normalize(e + F.normalize(torch.randn(e.shape, generator=gen), dim=-1) * strength,
                        dim=-1)
        drop = torch.rand(a.batch, generator=gen) < a.drop
        t = torch.randint(len(alphas), (a.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        ab = alphas[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        target = ab.sqrt() * eps - (1 - ab).sqrt() * x0  # v-prediction
        loss = F.mse_loss(model(xt, t, e, drop), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        decay = min(a.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        done = step + 1
        if step % 100 == 0 or done == a.steps:
            el = time.time() - t_train
            print(f"step {step} {el:.0f}s ({el / done:.2f}s/step) loss={loss.item():.4f}",
                  flush=True)
            history.append({"step": step, "loss": round(loss.item(), 5),
                            "seconds": round(time.time() - t0, 1)})
        if a.max_minutes and time.time() - t0 > a.max_minutes * 60:
            print(f"stopping early at step {done} (--max-minutes {a.max_minutes})", flush=True)
            break
    t_end = time.time()
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)
    meta = {"seed": a.seed, "steps": a.steps, "steps_done": done, "batch": a.batch, "lr": a.lr,
            "channels": list(channels), "scenes": a.scenes, "masked": a.masked,
            "context": a.context, "mi": a.mi, "mi_share": a.mi_share,
            "targets": a.targets,
            "min_scale": a.min_scale,
            "init": str(a.init) if a.init else None,
            "cond_dropout": a.drop,
            "embedding_noise": a.noise, "ema": a.ema,
            "clip_weights_sha256": file_digest(clip_path),
            "wall_seconds": round(t_end - t0, 1), "train_seconds": round(t_end - t_train, 1),
            "data_seconds": round(t_data, 1), "threads": a.threads,
            "cpu_seconds": round(time.process_time() - c0, 1),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2)}
    path = a.out.with_suffix(".safetensors")
    save_shapes_generator(ema, path, clip="shapes-clip", metadata=meta)
    path.chmod(0o644)
    shipped, _ = read_shapes_generator(path)  # metrics of the fp16 weights as shipped
    shipped.eval()
    t_eval = time.time()
    metrics = {f"guidance_{g:g}": generation_metrics(clip, shipped, emb_val, val.labels, 20, g,
                                                     a.seed)
               for g in (1.0, 2.0, 4.0)}
    record = {**meta, "val_metrics_fp16": metrics, "eval_seconds": round(time.time() - t_eval, 1),
              "history": history, "params": sum(p_.numel() for p_ in model.parameters()),
              "file_bytes": path.stat().st_size, "torch": torch.__version__,
              "environment": environment(a.threads)}
    a.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print("final", json.dumps(metrics), flush=True)


if __name__ == "__main__":
    main()
