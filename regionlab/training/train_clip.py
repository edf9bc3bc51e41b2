"""Train the bundled ShapesWorld CLIP on CPU, deterministically by seed.

    python -m regionlab.training.train_clip --steps 1200 --seed 0 --out assets/models/shapes_clip

Objectives (all on procedurally generated scenes, see ``regionlab.shapes.scenes``):

1. ``clip``: symmetric InfoNCE between multi-object scenes and their captions.
2. ``cls``: single-object scenes (object scale from small to full-frame) and masked/context
   crops of objects from multi-object scenes, classified against the 30 class prompts (a random
   template per step). Without full-frame objects the OVSeg masked-crop recipe fails.
3. ``region``: mask-pooled final patch tokens of every object (through ln_post and proj)
   classified against the class prompts, so patch tokens carry local semantics.
4. ``legrad``: the LeGrad map of the object's class prompt (last block, mean-pooled feature,
   exactly as ``regionlab.explain.legrad``) is pushed towards the object's mask with a soft Dice
   loss (second-order gradient). Real CLIPs localise because of their data scale; a tiny model
   trained on a few hundred thousand scenes does not, unless asked to.
5. ``contrast`` (weight 0 unless asked for): the object's mask must be matched better (Dice) by
   the LeGrad map of its own class prompt than by the maps of the 9 classes sharing its colour
   or its shape (cross-entropy over the 10 Dice scores). MaskInversion reads the class off the
   embedding whose map matches the mask, so maps of the wrong shape must not match it.
   With ``--mi-negatives N`` the embedding that N MaskInversion steps find for the object
   (from the scene's global embedding, as the method starts) joins the candidates as an extra
   negative whenever it is closer to a wrong class prompt: the Dice objective alone leaves the
   shape part of that embedding free when the colour already singles the object out.
6. ``mi`` (weight 0 unless asked for): MaskInversion itself in the loop. The ``--mi-steps``
   AdamW steps that MaskInversion takes at inference (on the patch grid, from the scene's
   global embedding) are unrolled with their graph, and the embedding they end at is
   classified against the class prompts; the loss is back-propagated through the unrolled
   optimisation into the model (third-order autograd through the last block). The forward
   values are exactly AdamW's; only the backward treats Adam's per-coordinate denominator as a
   constant per embedding (its exact derivative is ~1/|g| and explodes on tiny gradients).

The wall time, seed and final metrics are written next to the weights (``.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..explain.legrad import relevance_from_grad
from ..explain.vit import embed_tokens, pooled_mean_embedding, run_blocks, trace_block
from ..shapes.model import CONFIG, build_model, tokenizer
from ..shapes.scenes import RenderOptions, article, render_scene
from ..shapes.views import MEAN, SIZE, context_crop, fit, masked_crop
from ..shapes.vocab import CLASSES, COLOUR_NAMES, SHAPES
from ..tasks.templates import IMAGENET, VILD
from .domain import box_crop, mixed_scene, photometric
from .provenance import environment

STD = np.array([0.26862954, 0.26130258, 0.27577711])
PATCH = CONFIG["vision_cfg"]["patch_size"]
CAPTION_WRAPS = ("{}", "a photo of {}.", "an image of {}.", "there is {} in the scene.")
LOSSES = ("clip", "cls", "region", "legrad", "contrast", "mi", "partial", "partial_t2i")
PARTIAL_NOUNS = ("object", "shape", "thing")
CLS_TEMPLATES = tuple(dict.fromkeys(VILD + IMAGENET + ("a {}", "{}")))


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 arrays (already SIZE x SIZE) -> normalised float tensor (B, 3, H, W)."""
    arr = np.stack(images).astype(np.float32) / 255.0
    arr = (arr - MEAN) / STD
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float()


def grid_fraction(mask: np.ndarray, grid: int) -> np.ndarray:
    """Fraction of each patch covered by the mask (grid x grid), mask resized to grid*PATCH."""
    m = Image.fromarray(mask.astype(np.uint8) * 255).resize((grid * 8, grid * 8), Image.BILINEAR)
    arr = np.asarray(m, dtype=np.float32) / 255.0
    return arr.reshape(grid, 8, grid, 8).mean(axis=(1, 3))


def shape_swapped_caption(scene, wrap: str, rng) -> str:
    """A hard negative: the same colours in the same order, every shape replaced."""
    objs = sorted(scene.objects, key=lambda o: o.center[0])
    names = []
    for o in objs:
        others = [s for s in SHAPES if s != o.shape]
        names.append(article(f"{o.colour} {others[rng.integers(len(others))]}"))
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return wrap.format(text)


def make_batch(
    seed: int,
    step: int,
    n_multi: int,
    n_single: int,
    n_crop: int,
    hard_negatives: bool = False,
    single_scale: float = 0.48,
    legrad_max: int = 0,
    single_min_scale: float = 0.08,
    jitter_max: float = 1.0,
    domain_mix: float = 0.0,
    augment: float = 0.0,
    box_crops: float = 0.0,
) -> dict:
    rng = np.random.default_rng([seed, step, 991])
    # domain randomisation draws from its own stream: without it the batches of the recorded
    # recipes stay bit-identical
    drng = np.random.default_rng([seed, step, 992])
    grid = SIZE // PATCH
    multi_imgs, captions, objs, negatives = (
        [],
        [],
        [],
        [],
    )  # objs: (image index, class index, grid fraction)
    cls_imgs, cls_labels = [], []
    crop_pool = []
    for i in range(n_multi + n_single):
        single = i >= n_multi
        render_size = int(rng.choice([48, 64, 64, 64, 80, 96, 128]))
        opts = RenderOptions(
            size=render_size,
            min_objects=1 if single else 2,
            max_objects=1 if single else 4,
            scale=(
                (single_min_scale, float(rng.uniform(0.2, single_scale)))
                if single
                else (0.08, 0.22)
            ),
            antialias=int(rng.choice([1, 2, 4])),
            # drawn only when asked for, so the batches of earlier recipes stay the same
            colour_jitter=float(rng.uniform(0.5, jitter_max)) if jitter_max != 1.0 else 1.0,
        )
        if domain_mix or augment:
            use_cv = bool(drng.uniform() < domain_mix)
            if use_cv and single:
                opts = replace(opts, scale=(opts.scale[0], min(opts.scale[1], 0.4)))
            scene = mixed_scene((3, seed, step, i), opts, single, use_cv)
            if drng.uniform() < augment:
                scene.image = photometric(scene.image, drng)
        else:
            scene = render_scene((3, seed, step, i), opts)
        img = fit(scene.image, SIZE)
        if single:
            cls_imgs.append(img)
            cls_labels.append(CLASSES.index(scene.objects[0].label))
            continue
        idx = len(multi_imgs)
        multi_imgs.append(img)
        wrap = CAPTION_WRAPS[rng.integers(len(CAPTION_WRAPS))]
        captions.append(wrap.format(scene.caption()))
        if hard_negatives:
            negatives.append(shape_swapped_caption(scene, wrap, rng))
        for ob in scene.objects:
            frac = grid_fraction(ob.mask, grid)
            if frac.sum() < 0.25:
                continue
            objs.append((idx, CLASSES.index(ob.label), frac))
            crop_pool.append((scene, ob))
    for j in rng.permutation(len(crop_pool))[:n_crop]:
        if box_crops and drng.uniform() < box_crops:  # the IPS view (domain.box_crop)
            use_cv = bool(drng.uniform() < domain_mix)
            img, label = box_crop((5, seed, step, int(j)), drng, use_cv, augment, SIZE)
            cls_imgs.append(img)
            cls_labels.append(label)
            continue
        scene, ob = crop_pool[j]
        if rng.uniform() < 0.7:
            cls_imgs.append(masked_crop(scene.image, ob.mask, SIZE))
        else:
            cls_imgs.append(context_crop(scene.image, ob.box, rng.uniform(1.3, 2.5), SIZE))
        cls_labels.append(CLASSES.index(ob.label))
    return {
        "multi": to_tensor(multi_imgs),
        "captions": captions,
        "negatives": negatives,
        "cls": to_tensor(cls_imgs),
        "cls_labels": torch.tensor(cls_labels),
        "obj_img": torch.tensor([o[0] for o in objs]),
        "obj_cls": torch.tensor([o[1] for o in objs]),
        "obj_frac": torch.from_numpy(np.stack([o[2] for o in objs]).reshape(len(objs), -1)),
        "template": CLS_TEMPLATES[rng.integers(len(CLS_TEMPLATES))],
        # the noun of colour-only prompts ("a green object"), on a stream of its own
        "partial_noun": PARTIAL_NOUNS[np.random.default_rng([seed, step, 993]).integers(3)],
        "legrad_subset": (
            torch.from_numpy(np.sort(rng.permutation(len(objs))[:legrad_max]))
            if legrad_max and len(objs) > legrad_max
            else None
        ),
    }


def soft_dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """METHODS.md soft Dice loss per row: 1 - (2 sum(x m) + 1) / (sum x + sum m + 1)."""
    inter = (pred * target).sum(-1)
    return 1 - (2 * inter + 1) / (pred.sum(-1) + target.sum(-1) + 1)


def legrad_grid_maps(visual, x_in: torch.Tensor, queries: torch.Tensor, create_graph: bool):
    """LeGrad maps at the last block on the patch grid, (K, g*g), min-max normalised.

    ``x_in`` are the inputs of the last block (K, N, C), one row per query (unit, (K, D)).
    """
    tr = trace_block(visual.transformer.resblocks[-1], x_in, attn_requires_grad=True)
    f = F.normalize(pooled_mean_embedding(visual, tr.out), dim=-1)
    s = (f * queries).sum()
    (g,) = torch.autograd.grad(s, tr.attn, create_graph=create_graph)
    return grid_maps_from_grad(g)


def grid_maps_from_grad(grad_attn: torch.Tensor) -> torch.Tensor:
    """(K, H, N, N) dS/dA -> (K, g*g) LeGrad relevance on the patch grid, min-max per row.

    Not ``explain.legrad.minmax``: its epsilon (a clamp at 1e-12) differs from this ``+ 1e-8``,
    and changing it would change the gradients, so the recorded stages would not replay."""
    r = relevance_from_grad(grad_attn)
    lo, hi = r.min(dim=1, keepdim=True).values, r.max(dim=1, keepdim=True).values
    return (r - lo) / (hi - lo + 1e-8)


def confusable_classes(c: int) -> list[int]:
    """Class ``c`` first, then the 9 classes sharing its colour or its shape."""
    colour, shape = CLASSES[c].split()
    return [c] + [
        i
        for i, n in enumerate(CLASSES)
        if i != c and (n.split()[0] == colour or n.split()[1] == shape)
    ]


CONFUSABLE = torch.tensor([confusable_classes(c) for c in range(len(CLASSES))])


def contrast_loss(
    visual,
    x_in,
    class_txt,
    obj_cls,
    frac,
    temperature: float = 20.0,
    mi_emb: torch.Tensor | None = None,
):
    """Cross-entropy over Dice(map of class k, object mask) for the object's 10 confusables,
    plus (if given) the MaskInversion embedding of the object where it retrieves a wrong class."""
    cand = CONFUSABLE[obj_cls]  # (K, 10), true class first
    k, m = cand.shape
    queries = class_txt[cand].detach()  # (K, 10, D)
    if mi_emb is not None:
        queries = torch.cat([queries, mi_emb[:, None]], dim=1)
        m += 1
    maps = legrad_grid_maps(visual, x_in.repeat_interleave(m, 0), queries.reshape(k * m, -1), True)
    dice = 1 - soft_dice(maps, frac.repeat_interleave(m, 0)).reshape(k, m)
    if mi_emb is not None:  # a correct MaskInversion embedding is not a negative
        wrong = (mi_emb @ class_txt.detach().T).argmax(-1) != obj_cls
        dice = torch.cat([dice[:, :-1], dice[:, -1:].masked_fill(~wrong[:, None], -1e4)], 1)
    return F.cross_entropy(temperature * dice, torch.zeros(k, dtype=torch.long))


def mi_embeddings(visual, x_in, init, frac, steps: int, lr: float = 0.3) -> torch.Tensor:
    """MaskInversion on the patch grid (METHODS.md 2, alpha 0): AdamW on the embedding only,
    from ``init`` (unnormalised global embeddings), against soft Dice with the grid masks.
    Returns unit embeddings, detached from the model."""
    x_in = x_in.detach()
    e = init.detach().clone().requires_grad_(True)
    opt = torch.optim.AdamW([e], lr=lr, weight_decay=0.0)
    for _ in range(steps):
        with torch.enable_grad():
            maps = legrad_grid_maps(visual, x_in, F.normalize(e, dim=-1), True)
            (e.grad,) = torch.autograd.grad(soft_dice(maps, frac).mean(), e)
        opt.step()
    return F.normalize(e.detach(), dim=-1)


def mi_unrolled(
    visual, x_in, init, frac, steps: int, lr: float = 0.3, betas=(0.9, 0.999), eps: float = 1e-8
) -> torch.Tensor:
    """``mi_embeddings`` with the graph kept: the unit embeddings after ``steps`` AdamW steps
    (weight decay 0), differentiable with respect to the model through ``x_in`` and the last
    block. Forward values equal ``mi_embeddings``; see ``mi`` in the module docstring for the
    surrogate derivative of Adam's denominator."""
    tr = trace_block(visual.transformer.resblocks[-1], x_in, attn_requires_grad=True)
    f = F.normalize(pooled_mean_embedding(visual, tr.out), dim=-1)
    e = init.detach().clone().requires_grad_(True)
    m = torch.zeros_like(e)
    v = torch.zeros_like(e)
    for t in range(1, steps + 1):
        # dS/dA at this e as a VJP of f (e enters as the cotangent): differentiating the score
        # itself would also follow e's own history back into the attention
        (g,) = torch.autograd.grad(
            f, tr.attn, grad_outputs=F.normalize(e, dim=-1), create_graph=True
        )
        maps = grid_maps_from_grad(g)
        (ge,) = torch.autograd.grad(soft_dice(maps, frac).mean(), e, create_graph=True)
        m = betas[0] * m + (1 - betas[0]) * ge
        v = betas[1] * v + (1 - betas[1]) * ge.detach() ** 2
        m_hat = m / (1 - betas[0] ** t)
        denom = (v / (1 - betas[1] ** t)).sqrt() + eps
        exact = lr * m_hat / denom
        surrogate = lr * m_hat / denom.pow(2).mean(-1, keepdim=True).sqrt()
        e = e - (exact.detach() + surrogate - surrogate.detach())
    return F.normalize(e, dim=-1)


def partial_prompts(model, tok, batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(unit text embeddings, each image's index among them)] for the 5 shape prompts ("a
    photo of a star.") and the 6 colour prompts ("a photo of a green object.") of a batch."""
    tpl, noun = batch["template"], batch["partial_noun"]
    names = [CLASSES[i].split() for i in batch["cls_labels"].tolist()]
    return [
        (F.normalize(model.encode_text(tok([tpl.format(s) for s in SHAPES])), dim=-1),
         torch.tensor([SHAPES.index(n[1]) for n in names])),
        (F.normalize(model.encode_text(
            tok([tpl.format(f"{c} {noun}") for c in COLOUR_NAMES])), dim=-1),
         torch.tensor([COLOUR_NAMES.index(n[0]) for n in names])),
    ]


def partial_loss(model, tok, batch, img: torch.Tensor, scale, prompts=None) -> torch.Tensor:
    """Single objects and crops classified by their shape alone among the 5 shape prompts
    and by their colour alone among the 6 colour prompts (:func:`partial_prompts`):
    referring expressions name objects by one attribute ("the star", "the green one"), which
    full class prompts never teach."""
    prompts = prompts or partial_prompts(model, tok, batch)
    return sum(F.cross_entropy(scale * img @ txt.T, lbl) for txt, lbl in prompts) / 2


def partial_t2i_loss(model, tok, batch, img: torch.Tensor, scale,
                     prompts=None) -> torch.Tensor:
    """The other direction of :func:`partial_loss`, the one grounding uses: each shape prompt
    ("a photo of a star.") and colour prompt picks its own images out of the batch (softmax
    over images, every image of that shape or colour a positive, SupCon-style mean). Grounding
    "the star" compares one text across proposals; image-to-text training alone left the bare
    shape text closer to the wrong object's crop on 24% of validation expressions."""
    total = img.new_zeros(())
    for txt, lbl in prompts or partial_prompts(model, tok, batch):
        logp = F.log_softmax(scale * txt @ img.T, dim=1)  # (T, B): over the batch's images
        pos = (lbl[None, :] == torch.arange(len(txt))[:, None]).float()
        has = pos.sum(1) > 0
        total = total + ((-(logp * pos).sum(1) / pos.sum(1).clamp(min=1))[has]).mean()
    return total / 2


def train_step(model, batch, tok, weights: dict, mi_steps: int = 0, mi_unroll: int = 10) -> dict:
    visual = model.visual
    scale = model.logit_scale.exp().clamp(max=100)
    # text: captions + class prompts
    class_txt = F.normalize(
        model.encode_text(tok([batch["template"].format(c) for c in CLASSES])), dim=-1
    )
    cap_txt = F.normalize(model.encode_text(tok(batch["captions"])), dim=-1)
    # images: everything through the trunk, last block traced
    nm = batch["multi"].shape[0]
    images = torch.cat([batch["multi"], batch["cls"]])
    x = embed_tokens(visual, images)
    x_in = run_blocks(visual, x, visual.transformer.resblocks[:-1])
    out = trace_block(visual.transformer.resblocks[-1], x_in).out
    pooled = visual.ln_post(out[:, 0]) @ visual.proj
    img = F.normalize(pooled, dim=-1)
    losses = {}
    # 1. InfoNCE on multi-object scenes
    logits = scale * img[:nm] @ cap_txt.T
    tgt = torch.arange(nm)
    i2t = logits
    if batch.get("negatives"):
        neg_txt = F.normalize(model.encode_text(tok(batch["negatives"])), dim=-1)
        i2t = torch.cat([logits, scale * img[:nm] @ neg_txt.T], dim=1)
    losses["clip"] = (F.cross_entropy(i2t, tgt) + F.cross_entropy(logits.T, tgt)) / 2
    # 2. classification of single objects and crops
    losses["cls"] = F.cross_entropy(scale * img[nm:] @ class_txt.T, batch["cls_labels"])
    if weights.get("partial") or weights.get("partial_t2i"):
        prompts = partial_prompts(model, tok, batch)  # the shape alone, the colour alone
        if weights.get("partial"):  # 2b. each image picks its shape word and colour word
            losses["partial"] = partial_loss(model, tok, batch, img[nm:], scale, prompts)
        if weights.get("partial_t2i"):  # 2c. each word picks its images (grounding)
            losses["partial_t2i"] = partial_t2i_loss(model, tok, batch, img[nm:], scale,
                                                     prompts)
    # 3. mask-pooled patch tokens per object
    frac = batch["obj_frac"]
    w = frac / frac.sum(-1, keepdim=True)
    tokens = out[batch["obj_img"], 1:]  # (K, g*g, C)
    region = visual.ln_post((w.unsqueeze(-1) * tokens).sum(1)) @ visual.proj
    region = F.normalize(region, dim=-1)
    losses["region"] = F.cross_entropy(scale * region @ class_txt.T, batch["obj_cls"])
    # 4. LeGrad map of the true class prompt vs the object mask
    sel = batch.get("legrad_subset")
    sel = torch.arange(len(batch["obj_img"])) if sel is None else sel
    # the objects of losses 4-6; each loss indexes the image tensors afresh, so that the
    # backward (and the weights of the recorded recipes) stays bit-identical to earlier runs
    obj_cls, obj_frac = batch["obj_cls"][sel], frac[sel]

    def per_object(t: torch.Tensor) -> torch.Tensor:
        return t[batch["obj_img"][sel]]

    maps = legrad_grid_maps(visual, per_object(x_in), class_txt[obj_cls].detach(), True)
    losses["legrad"] = soft_dice(maps, obj_frac).mean()
    if weights.get("contrast"):
        mi = None
        if mi_steps:
            mi = mi_embeddings(visual, per_object(x_in), per_object(pooled), obj_frac, mi_steps)
            losses["mi_acc"] = ((mi @ class_txt.detach().T).argmax(-1) == obj_cls).float().mean()
        losses["contrast"] = contrast_loss(
            visual, per_object(x_in), class_txt, obj_cls, obj_frac, mi_emb=mi
        )
    if weights.get("mi"):
        mi = mi_unrolled(visual, per_object(x_in), per_object(pooled), obj_frac, mi_unroll)
        logits = scale * mi @ class_txt.T
        losses["mi"] = F.cross_entropy(logits, obj_cls)
        losses["mi_unrolled_acc"] = (logits.argmax(-1) == obj_cls).float().mean()
    losses["total"] = sum(weights[k] * v for k, v in losses.items() if k in weights)
    return losses


@torch.no_grad()
def _embed_images(model, images: list[np.ndarray]) -> torch.Tensor:
    return F.normalize(model.encode_image(to_tensor(images)), dim=-1)


def evaluate(model, n: int = 300, seed: int = 0, cv: bool = False) -> dict:
    """Quick held-out metrics (validation split): zero-shot, masked crops, LeGrad Dice of the
    true class map, and ``map_top1``: how often the true class map matches the object's mask
    best among the 30 class maps (MaskInversion can only classify well when this is high), and
    ``mi_top1``: Acc@1 of 10 MaskInversion steps on the patch grid (a quick proxy for the
    engine's MaskInversion, which works at pixel resolution). With ``cv``, also zero-shot and
    masked crops on validation scenes of the second renderer (``*_cv``), which domain-randomised
    stages train on."""
    model.eval()
    tok = tokenizer()
    with torch.no_grad():
        txt = F.normalize(model.encode_text(tok([f"a photo of a {c}." for c in CLASSES])), dim=-1)
    single = [
        render_scene((1, seed, i), RenderOptions(min_objects=1, max_objects=1)) for i in range(n)
    ]
    pred = (_embed_images(model, [s.image for s in single]) @ txt.T).argmax(-1)
    zs = np.mean([CLASSES[p] == s.objects[0].label for p, s in zip(pred.tolist(), single)])
    multi = [
        render_scene((1, seed, 10_000 + i), RenderOptions(min_objects=2)) for i in range(n // 3)
    ]
    crops, labels, dices = [], [], []
    for s in multi:
        for ob in s.objects:
            crops.append(masked_crop(s.image, ob.mask, SIZE))
            labels.append(ob.label)
    pred = (_embed_images(model, crops) @ txt.T).argmax(-1)
    mc = np.mean([CLASSES[p] == lab for p, lab in zip(pred.tolist(), labels)])
    map_top1, mi_top1 = [], []
    for s in multi:
        x = embed_tokens(model.visual, to_tensor([s.image]))
        x_in = run_blocks(model.visual, x, model.visual.transformer.resblocks[:-1]).detach()
        with torch.enable_grad():  # the maps of all 30 class prompts
            m = legrad_grid_maps(model.visual, x_in.expand(len(CLASSES), -1, -1), txt, False)
        g = SIZE // PATCH
        up = F.interpolate(
            m.reshape(-1, 1, g, g), scale_factor=PATCH, mode="bilinear", align_corners=False
        )
        up = up.flatten(1)
        up = (up - up.min(1, keepdim=True).values) / (
            up.max(1, keepdim=True).values - up.min(1, keepdim=True).values + 1e-8
        )
        for o in s.objects:
            tgt = torch.from_numpy(o.mask.reshape(1, -1).astype(np.float32))
            d = 1 - soft_dice(up, tgt.expand(len(CLASSES), -1))
            c = CLASSES.index(o.label)
            dices.append(float(d[c]))
            map_top1.append(int(d.argmax()) == c)
        fr = torch.from_numpy(np.stack([grid_fraction(o.mask, g).reshape(-1) for o in s.objects]))
        with torch.no_grad():
            init = model.visual(to_tensor([s.image])).expand(len(s.objects), -1)
        e = mi_embeddings(model.visual, x_in.expand(len(s.objects), -1, -1), init, fr, 10)
        pred = (e @ txt.T).argmax(-1).tolist()
        mi_top1 += [CLASSES[p] == o.label for p, o in zip(pred, s.objects)]
    model.train()
    extra = evaluate_cv(model, txt, n, seed) if cv else {}
    return {
        **extra,
        "zero_shot": float(zs),
        "masked_crop": float(mc),
        "legrad_dice": float(np.mean(dices)),
        "map_top1": float(np.mean(map_top1)),
        "mi_top1": float(np.mean(mi_top1)),
    }


def evaluate_cv(model, txt: torch.Tensor, n: int, seed: int) -> dict:
    """Zero-shot and masked-crop accuracy on validation scenes of the second renderer."""
    from ..shapes.render_cv import render_scene_cv

    model.eval()
    single = [render_scene_cv((1, seed + 3000, i), n_objects=(1, 1), scale=(0.1, 0.3))
              for i in range(n)]
    single = [s for s in single if s.objects]
    pred = (_embed_images(model, [s.image for s in single]) @ txt.T).argmax(-1).tolist()
    zs = np.mean([CLASSES[p] == s.objects[0].label for p, s in zip(pred, single)])
    crops, labels = [], []
    for i in range(n // 3):
        s = render_scene_cv((1, seed + 3000, 10_000 + i), n_objects=(2, 5))
        for ob in s.objects:
            crops.append(masked_crop(s.image, ob.mask, SIZE))
            labels.append(ob.label)
    pred = (_embed_images(model, crops) @ txt.T).argmax(-1).tolist()
    mc = np.mean([CLASSES[p] == lab for p, lab in zip(pred, labels)])
    model.train()
    return {"zero_shot_cv": float(zs), "masked_crop_cv": float(mc)}


def save_weights(model, path: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "pt",
        "arch": json.dumps(CONFIG),
        **{k: json.dumps(v) for k, v in metadata.items()},
    }
    save_file(state, str(path), metadata=meta)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--multi", type=int, default=96)
    p.add_argument("--single", type=int, default=32)
    p.add_argument("--crops", type=int, default=48)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--eval-n", type=int, default=300, help="held-out single-object scenes")
    p.add_argument(
        "--hard-negatives",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="add a shape-swapped caption per scene as an extra text negative",
    )
    p.add_argument(
        "--legrad-max",
        type=int,
        default=0,
        help="objects per step that get the LeGrad loss (0 = all)",
    )
    p.add_argument(
        "--single-scale",
        type=float,
        default=0.48,
        help="largest object radius (fraction of the image) of single-object scenes",
    )
    p.add_argument(
        "--single-min-scale",
        type=float,
        default=0.08,
        help="smallest object radius (fraction of the image) of single-object scenes",
    )
    p.add_argument(
        "--jitter-max",
        type=float,
        default=1.0,
        help="colour jitter of each scene drawn from [0.5, this] (1 = the fixed default jitter)",
    )
    p.add_argument(
        "--mi-negatives",
        type=int,
        default=0,
        metavar="N",
        help="MaskInversion steps per object whose wrong embeddings join the contrast loss "
        "(0 = off; needs a contrast weight)",
    )
    p.add_argument(
        "--mi-steps",
        type=int,
        default=10,
        help="MaskInversion steps unrolled by the mi loss (the bundled model's inference default)",
    )
    p.add_argument(
        "--domain-mix",
        type=float,
        default=0.0,
        help="share of scenes drawn by the second renderer (regionlab.shapes.render_cv)",
    )
    p.add_argument(
        "--augment",
        type=float,
        default=0.0,
        help="share of scenes given a photometric corruption (blur, noise, contrast, JPEG)",
    )
    p.add_argument(
        "--box-crops",
        type=float,
        default=0.0,
        help="share of the crops that are an object's box cut from a 64-448 px scene, "
        "neighbours included (the view grounding shows the CLIP; domain.box_crop)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("assets/models/shapes_clip"))
    p.add_argument(
        "--init", type=Path, default=None, help="start from these weights (stage 2 of the recipe)"
    )
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument(
        "--weights",
        default="clip=1,cls=1,region=1,legrad=1",
        help="loss weights, e.g. clip=1,cls=2,region=1,legrad=1 (unnamed ones: 1, contrast, "
        "mi, partial and partial_t2i 0)",
    )
    a = p.parse_args(argv)
    if a.steps < 1:
        p.error("--steps must be at least 1")
    weights = {**dict.fromkeys(LOSSES, 1.0), "contrast": 0.0, "mi": 0.0, "partial": 0.0,
               "partial_t2i": 0.0}
    try:
        weights.update({k: float(v) for k, v in (kv.split("=") for kv in a.weights.split(","))})
    except ValueError:
        p.error(f"--weights: expected name=number pairs, got {a.weights!r}")
    if set(weights) - set(LOSSES):
        p.error(
            f"--weights: unknown loss(es) {sorted(set(weights) - set(LOSSES))}; "
            f"the losses are {', '.join(LOSSES)}"
        )
    if not (0 <= a.domain_mix <= 1 and 0 <= a.augment <= 1 and 0 <= a.box_crops <= 1):
        p.error("--domain-mix, --augment and --box-crops: shares in [0, 1]")
    if a.mi_steps < 1:
        p.error("--mi-steps must be at least 1")
    if not 0.5 < a.jitter_max <= 3:
        p.error("--jitter-max: a number in (0.5, 3]")
    if a.mi_negatives < 0 or (a.mi_negatives and not weights["contrast"]):
        p.error("--mi-negatives: a number of steps >= 0, and only with a contrast weight")
    randomised = bool(a.domain_mix or a.augment)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = build_model()
    if a.init:
        from safetensors.torch import load_file

        model.load_state_dict({k: v.float() for k, v in load_file(str(a.init)).items()})
    model.train()
    tok = tokenizer()
    decay = [p_ for n, p_ in model.named_parameters() if p_.ndim >= 2 and "embedding" not in n]
    no_decay = [
        p_ for n, p_ in model.named_parameters() if not (p_.ndim >= 2 and "embedding" not in n)
    ]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=a.lr
    )
    warm = max(1, min(a.warmup, a.steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warm
            if s < warm
            else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, a.steps - warm)))
        ),
    )
    t0 = time.time()
    history = []
    for step in range(a.steps):
        batch = make_batch(
            a.seed,
            step,
            a.multi,
            a.single,
            a.crops,
            a.hard_negatives,
            a.single_scale,
            a.legrad_max,
            a.single_min_scale,
            a.jitter_max,
            a.domain_mix,
            a.augment,
            a.box_crops,
        )
        losses = train_step(model, batch, tok, weights, a.mi_negatives, a.mi_steps)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 20 == 0:
            msg = " ".join(f"{k}={v.item():.3f}" for k, v in losses.items())
            print(f"step {step} {time.time() - t0:.0f}s {msg}", flush=True)
        if (step + 1) % a.eval_every == 0 or step + 1 == a.steps:
            metrics = evaluate(model, a.eval_n, cv=randomised)
            history.append({"step": step + 1, "seconds": round(time.time() - t0, 1), **metrics})
            print("eval", history[-1], flush=True)
            save_weights(model, a.out.with_suffix(".partial.safetensors"), {"step": step + 1})
    wall = time.time() - t0
    meta = {
        "seed": a.seed,
        "steps": a.steps,
        "lr": a.lr,
        "batch": [a.multi, a.single, a.crops],
        "hard_negatives": a.hard_negatives,
        "single_scale": a.single_scale,
        "single_min_scale": a.single_min_scale,
        "legrad_max": a.legrad_max,
        "mi_negatives": a.mi_negatives,
        "jitter_max": a.jitter_max,
        "mi_steps": a.mi_steps,
        **({"domain_mix": a.domain_mix, "augment": a.augment}
           if a.domain_mix or a.augment else {}),
        **({"box_crops": a.box_crops} if a.box_crops else {}),
        "init": str(a.init) if a.init else None,
        "wall_seconds": round(wall, 1),
        "threads": a.threads,
        "loss_weights": weights,
    }
    save_weights(model, a.out.with_suffix(".safetensors"), meta)
    # metrics of the weights as shipped (fp16 round trip)
    from safetensors.torch import load_file

    model.load_state_dict(
        {k: v.float() for k, v in load_file(str(a.out.with_suffix(".safetensors"))).items()}
    )
    final = evaluate(model, a.eval_n, cv=randomised)
    record = {**meta, "val_metrics_fp16": final, "history": history, "torch": torch.__version__,
              "environment": environment(a.threads)}
    a.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print("final", final, flush=True)


if __name__ == "__main__":
    main()
