"""Train the bundled ShapesWorld captioner (CLIPCap-style prefix decoder) on CPU, by seed.

    python -m regionlab.training.train_captioner --seed 0 --out assets/models/shapes_captioner

Data: unit embeddings, by the bundled CLIP (``shapes-clip``; ``REGIONLAB_SHAPES_CLIP``
overrides its weights), of single-object scenes (object scale 6-45%), masked crops and context
crops of objects of multi-object scenes, and (``--maskinversion N``) MaskInversion embeddings
of objects, what the app captions (``regionlab.training.decoder_data``); target caption
``"a red circle"`` (article + colour + shape). Gaussian noise on the embeddings (random
strength, renormalised) makes the decoder tolerant of region embeddings that are not exactly
image embeddings. Model: MLP mapper (embedding -> 4 prefix vectors) + a 2-layer GPT-2 (width
128) over the ShapesWorld word tokenizer. Writes ``OUT.safetensors`` (fp16) and ``OUT.json``
(seed, wall time, data sizes, CLIP digest, final held-out metrics).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.captioner import (
    CaptionOptions,
    LoadedCaptioner,
    PrefixCaptioner,
    ShapesCodec,
    read_prefix_captioner,
    save_prefix_captioner,
)
from ..shapes.captions import parse_caption
from ..shapes.scenes import article
from ..shapes.views import VAL_NAMESPACE, object_views
from ..shapes.vocab import CLASSES
from .decoder_data import embed, file_digest, maskinversion_views
from .provenance import environment

MAX_LEN = 8


def caption_targets(codec: ShapesCodec) -> torch.Tensor:
    """Token ids (30, MAX_LEN) of each class's caption, padded with -100 (ignored)."""
    out = torch.full((len(CLASSES), MAX_LEN), -100, dtype=torch.long)
    for i, c in enumerate(CLASSES):
        ids = codec.encode(article(c))
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def build(seed: int, vocab_size: int, embed_dim: int) -> PrefixCaptioner:
    from transformers import GPT2Config

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=24, n_embd=128, n_layer=2, n_head=4,
                     bos_token_id=None, eos_token_id=None, pad_token_id=0,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return PrefixCaptioner(embed_dim, prefix_length=4, gpt_config=cfg, hidden=256)


def exact_match(captions: list[str], labels: list[str]) -> dict:
    """Share of captions whose colour and shape both equal the label's (and each alone)."""
    parsed = [parse_caption(c) for c in captions]
    truth = [tuple(lab.split()) for lab in labels]
    col = np.mean([p[0] == t[0] for p, t in zip(parsed, truth)])
    shp = np.mean([p[1] == t[1] for p, t in zip(parsed, truth)])
    both = np.mean([p == t for p, t in zip(parsed, truth)])
    return {"exact": float(both), "colour": float(col), "shape": float(shp), "n": len(labels)}


def evaluate(captioner: LoadedCaptioner, emb: torch.Tensor, labels: np.ndarray,
             kinds: np.ndarray) -> dict:
    names = {0: "single", 1: "masked_crop", 2: "context_crop", 3: "maskinversion"}
    out = {}
    for k, name in names.items():
        sel = np.nonzero(kinds == k)[0]
        if len(sel) == 0:
            continue
        caps = []
        for i in range(0, len(sel), 64):
            caps += captioner.caption(emb[sel[i : i + 64]], CaptionOptions(beams=3))
        out[name] = exact_match(caps, [CLASSES[j] for j in labels[sel]])
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--single", type=int, default=12000)
    p.add_argument("--masked", type=int, default=6000)
    p.add_argument("--context", type=int, default=3000)
    p.add_argument("--maskinversion", type=int, default=0,
                   help="MaskInversion embeddings of objects of multi-object scenes")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--noise", type=float, default=0.5, help="max noise norm (unit embeddings)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--init", type=Path, default=None,
                   help="start from this captioner (fine-tune after the CLIP changed)")
    p.add_argument("--out", type=Path, default=Path("assets/models/shapes_captioner"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from ..models import load_clip
    from ..models.registry import get_spec

    t0, c0 = time.time(), time.process_time()
    clip = load_clip("shapes-clip", "cpu")
    clip_path = get_spec("shapes-clip").extra["path"]
    train = object_views(a.single, a.masked, a.context, seed=a.seed)
    val = object_views(600, 600, 300, seed=a.seed, namespace=VAL_NAMESPACE)
    t_render = time.time() - t0
    emb_train, emb_val = embed(clip, train.images), embed(clip, val.images)
    labels_train, labels_val = train.labels, val.labels
    kinds_val = val.kinds
    if a.maskinversion:
        mi_train, mi_labels = maskinversion_views(clip, a.maskinversion, seed=a.seed)
        mi_val, mi_val_labels = maskinversion_views(clip, 300, seed=a.seed,
                                                    namespace=VAL_NAMESPACE)
        emb_train = torch.cat([emb_train, mi_train])
        labels_train = np.concatenate([labels_train, mi_labels])
        emb_val = torch.cat([emb_val, mi_val])
        labels_val = np.concatenate([labels_val, mi_val_labels])
        kinds_val = np.concatenate([kinds_val, np.full(len(mi_val_labels), 3)])
    t_data = time.time() - t0
    print(f"data: {len(train.labels)} train / {len(val.labels)} val views, "
          f"render {t_render:.0f}s, total {t_data:.0f}s", flush=True)

    codec = ShapesCodec()
    targets = caption_targets(codec)
    if a.init:
        torch.manual_seed(a.seed)
        model = read_prefix_captioner(a.init)[0]
    else:
        model = build(a.seed, codec.vocab_size, emb_train.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    warm = max(1, a.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / a.steps)))))
    gen = torch.Generator().manual_seed(a.seed)
    labels = torch.from_numpy(labels_train)
    model.train()
    history = []
    for step in range(a.steps):
        idx = torch.randint(len(labels), (a.batch,), generator=gen)
        e = emb_train[idx]
        noise = torch.randn(e.shape, generator=gen)
        strength = torch.rand(a.batch, 1, generator=gen) * a.noise
        e = F.normalize(e + F.normalize(noise, dim=-1) * strength, dim=-1)
        tgt = targets[labels[idx]]
        logits = model(e, tgt.clamp(min=0))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                               ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 200 == 0 or step + 1 == a.steps:
            print(f"step {step} {time.time() - t0:.0f}s loss={loss.item():.4f}", flush=True)
            history.append({"step": step, "loss": round(loss.item(), 5),
                            "seconds": round(time.time() - t0, 1)})
    wall = time.time() - t0
    meta = {"seed": a.seed, "steps": a.steps, "batch": a.batch, "lr": a.lr, "noise": a.noise,
            "init": str(a.init) if a.init else None,
            "views": {"single": a.single, "masked": a.masked, "context": a.context,
                      "maskinversion": a.maskinversion},
            "clip_weights_sha256": file_digest(clip_path), "wall_seconds": round(wall, 1),
            "cpu_seconds": round(time.process_time() - c0, 1), "threads": a.threads,
            "load_average_1min_at_end": round(os.getloadavg()[0], 2)}
    path = a.out.with_suffix(".safetensors")
    save_prefix_captioner(model, path, clip="shapes-clip", tokenizer="shapes", metadata=meta)
    path.chmod(0o644)
    shipped, config = read_prefix_captioner(path)  # metrics of the fp16 weights as shipped
    cap = LoadedCaptioner("shapes-captioner", shipped.eval(), codec, "shapes-clip",
                          shipped.embed_dim, config["input_norm"], torch.device("cpu"),
                          torch.float32)
    metrics = evaluate(cap, emb_val, labels_val, kinds_val)
    record = {**meta, "val_metrics_fp16": metrics, "history": history,
              "params": sum(p_.numel() for p_ in model.parameters()),
              "file_bytes": path.stat().st_size, "torch": torch.__version__,
              "environment": environment(a.threads)}
    a.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print("final", json.dumps(metrics), flush=True)


if __name__ == "__main__":
    main()
