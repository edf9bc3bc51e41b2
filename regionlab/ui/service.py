"""Model work behind the app, as plain functions (no gradio): the UI handlers and the named
API endpoints both call these, so a click and an API call run exactly the same code.

Task modules are imported lazily through :mod:`regionlab.ui.features`; a missing one raises
:class:`~regionlab.ui.features.FeatureUnavailable` with the module it looked for.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..config import LIMITS
from ..errors import InputError
from ..inputs import check_number, check_text
from .features import require
from .gpu import gpu_task, on_zero_gpu

METHODS = ("global", "crop", "masked-crop", "blur", "red-circle", "maskinversion")
ProgressFn = Callable[[float, str], None] | None


#: the top-1 entry of a region when no class of the vocabulary is one the model can represent
NO_CLASS = {"label": None, "score": None}

def load_clip(name: str, device: str | None = None):
    from ..models import load

    return load(name, "clip", device)


def _note(progress: ProgressFn, frac: float, what: str) -> None:
    if progress is not None:
        progress(frac, what)


# ------------------------------------------------------------------------------- regions


@dataclass
class SegmentOutcome:
    masks: np.ndarray  # (K, H, W) bool, best first
    scores: list[float]
    logits: Any  # low-res logits of the best mask (to refine with the next click)
    backend: str
    segmenter: Any  # the per-image segmenter (embedding computed once), reusable
    seconds: float = 0.0
    notice: str | None = None  # why a fallback engine was used


def check_points(points, size: tuple[int, int]) -> list[tuple[int, int, int]]:
    """[(x, y, label)] with label 1 (include) / 0 (exclude), inside the image."""
    h, w = size
    if points is not None and not isinstance(points, (list, tuple)):
        raise InputError(f"points must be a list of [x, y, label], got {points!r}")
    if len(points or ()) > LIMITS.max_points:
        raise InputError(f"{len(points)} points given; the limit is {LIMITS.max_points} per "
                         f"region")
    out = []
    for p in points or []:
        if not isinstance(p, (list, tuple)) or len(p) != 3:
            raise InputError(f"a point is [x, y, label], got {p!r}")
        x = check_number(p[0], "point x", 0, w - 1)
        y = check_number(p[1], "point y", 0, h - 1)
        label = check_number(p[2], "point label", 0, 1, integer=True)
        out.append((int(round(x)), int(round(y)), label))
    return out


def check_box(box, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) inside the image, non-empty, corners in any order."""
    if box is None or (isinstance(box, (list, tuple)) and len(box) == 0):
        return None
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise InputError(f"a box is [x0, y0, x1, y1], got {box!r}")
    h, w = size
    x0, x1 = sorted(check_number(v, "box x", 0, w) for v in (box[0], box[2]))
    y0, y1 = sorted(check_number(v, "box y", 0, h) for v in (box[1], box[3]))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise InputError(f"the box {list(box)} is empty")
    # outwards to whole pixels (rounding both corners could make a 1 px box empty)
    return (int(math.floor(x0)), int(math.floor(y0)), min(int(math.ceil(x1)), w),
            min(int(math.ceil(y1)), h))


@gpu_task(60)
def segment(image: np.ndarray, *, sam: str | None = None, points=(), box=None,
            multimask: bool = True, prev_logits=None, segmenter=None,
            device: str | None = None) -> SegmentOutcome:
    """Masks for clicks and/or a box, best first. Pass the ``segmenter`` of a previous call on
    the same image to skip the image embedding (SAM's ``set_image``)."""
    t0 = time.perf_counter()
    pts = check_points(points, image.shape[:2])
    bx = check_box(box, image.shape[:2])
    if not pts and bx is None:
        raise InputError("give at least one click or a box")
    if segmenter is None:
        segmenter = require("segment")(sam or None, device)
        segmenter.set_image(image)
    res = segmenter.predict(points=pts or None, box=bx, multimask=multimask,
                            prev_logits=prev_logits)
    masks = np.asarray(res.masks, dtype=bool)
    backend = res.segmenter + (" (fallback)" if res.fallback else "")
    keep = None if on_zero_gpu() else segmenter  # ZeroGPU: no GPU state across calls
    return SegmentOutcome(masks, [float(v) for v in res.scores], np.asarray(res.logits[0]),
                          backend, keep, time.perf_counter() - t0, res.notice)


@dataclass
class ProposeOutcome:
    regions: list[dict]  # [{"mask", "box", "score"}], best first
    notice: str | None = None  # what the objectness filter left out


@gpu_task(120)
def propose(image: np.ndarray, *, method: str | None = None, max_regions: int = 12,
            device: str | None = None, clip: str | None = None) -> ProposeOutcome:
    """Class-agnostic proposals, best first (at most ``max_regions``). ``method``: a SAM name,
    ``classical``, or None for the default. ``clip``: also leave out proposals that read as no
    object this CLIP knows (the bundled CLIP's objectness filter, labelling's threshold; other
    CLIPs: nothing), before keeping ``max_regions``; the outcome's ``notice`` says what was
    left out (returned, so that it also reaches the user on ZeroGPU)."""
    max_regions = check_number(max_regions, "max proposals", 1, LIMITS.max_proposals, integer=True)
    gen = require("proposals")
    props = gen(image, method or "auto", max_proposals=max(max_regions, 50) if clip else
                max_regions, device=device)
    notice = None
    if clip is not None and props:
        from ..tasks.ovseg import objects_among

        keep, why = objects_among(load_clip(clip, device), image,
                                  np.stack([np.asarray(p.mask, bool) for p in props]))
        if keep is not None:
            props, notice = [p for p, k in zip(props, keep) if k], why
    return ProposeOutcome([{"mask": np.asarray(p.mask, bool), "box": tuple(int(v) for v in p.box),
                            "score": float(p.score)} for p in props[:max_regions]], notice)


# -------------------------------------------------------------------------- embeddings


@dataclass
class InvertOutcome:
    embeddings: np.ndarray  # (P, D) float32, unnormalised
    maps: np.ndarray  # (P, H, W) in [0, 1]
    initial_maps: np.ndarray  # (P, H, W)
    history: list[np.ndarray]  # (P, s, s) maps of some iterations (see thin_history)
    history_iterations: list[int]  # optimiser steps taken before each history map
    losses: list[float]
    engine: str
    settings: dict
    timings: dict
    cache: Any = None  # the per-image activation cache (reused for the next call)


def check_settings(iterations, lr, alpha, resolution) -> dict:
    return {
        "iterations": check_number(iterations, "iterations", 0, LIMITS.max_iterations, True),
        "lr": check_number(lr, "lr", LIMITS.min_lr, LIMITS.max_lr),
        "alpha": check_number(alpha, "alpha", 0, LIMITS.max_alpha),
        "resolution": check_number(resolution, "resolution", LIMITS.min_resolution,
                                   LIMITS.max_resolution, True),
    }


@gpu_task(120)
def invert(image: np.ndarray, masks: np.ndarray, *, clip: str, device: str | None = None,
           iterations=None, lr=None, alpha=None, resolution=None, engine: str = "auto",
           cache=None, progress: ProgressFn = None) -> InvertOutcome:
    """MaskInversion for every mask; ``None`` settings take the model's tuned defaults."""
    fn = require("invert")
    t0 = time.perf_counter()
    _note(progress, 0.02, "loading CLIP")
    model = load_clip(clip, device)
    d = model.defaults
    s = check_settings(d["mi_iterations"] if iterations is None else iterations,
                       d["mi_lr"] if lr is None else lr, d["mi_alpha"] if alpha is None else alpha,
                       d["mi_resolution"] if resolution is None else resolution)
    t_load = time.perf_counter()

    def step(i: int, n: int) -> None:
        _note(progress, 0.05 + 0.9 * (i / max(n, 1)), f"MaskInversion iteration {i}/{n}")

    res = fn(model, image, masks, engine=engine, keep_history=True,
             cache=session_cache(cache), progress=step, **s)  # a copy: never filled in place
    emb = res.embeddings.detach().float().cpu().numpy()
    frames, frame_its = thin_history(res.history)
    timings = {"load_model_s": t_load - t0, **{k: float(v) for k, v in res.timings.items()},
               "total_s": time.perf_counter() - t0}
    return InvertOutcome(emb, np.asarray(res.maps), np.asarray(res.initial_maps),
                         frames, frame_its,
                         [float(v) for v in res.losses], res.engine, dict(res.settings), timings,
                         None if on_zero_gpu() else session_cache(res.cache))


def session_cache(cache):
    """What a session keeps of a MaskInversion image cache: the last block's input and the
    global embedding (2.4 MB for a ViT-B/16 at 448 px), not the factorized engine's factors
    (~57 MB there), which are rebuilt from it with one pass of the last block."""
    return replace(cache, factors=None) if cache is not None else None


def thin_history(history, max_frames: int = 26,
                 max_side: int = 128) -> tuple[list[np.ndarray], list[int]]:
    """At most ``max_frames`` maps of the optimisation (evenly spaced, first and last kept),
    each at most ``max_side`` px, as float16 (bounded memory per session), with the index of
    each in ``history`` (MaskInversion: the number of optimiser steps taken before that map)."""
    import cv2

    n = len(history)
    if not n:
        return [], []
    idx = sorted({round(i * (n - 1) / max(max_frames - 1, 1)) for i in range(max_frames)})
    out = []
    for i in idx:
        h = np.asarray(history[i], np.float32)
        if max(h.shape[1:]) > max_side:
            h = np.stack([cv2.resize(m, (max_side, max_side), interpolation=cv2.INTER_AREA)
                          for m in h])
        out.append(h.astype(np.float16))
    return out, list(idx)


def vocab_warnings(vocab, *, clip: str, device: str | None = None) -> list[str]:
    """What the model cannot know of a vocabulary's class names (empty when it knows them)."""
    from ..tasks.vocabularies import resolve_vocab, vocabulary_warnings

    return vocabulary_warnings(load_clip(clip, device), resolve_vocab(vocab))


def retrieve(embeddings: np.ndarray, vocab, *, clip: str, device: str | None = None,
             templates: str = "single", top_k: int = 5) -> list[list[dict]]:
    """Per region the top-k classes of ``vocab`` (a built-in name, a comma list or a list)."""
    fn = require("retrieve")
    top_k = check_number(top_k, "top k", 1, LIMITS.max_top_k, integer=True)
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim == 1:
        emb = emb[None]
    if emb.ndim != 2 or not np.isfinite(emb).all():
        raise InputError(f"embeddings must be a finite (P, D) array, got shape {emb.shape}")
    return fn(emb, vocab, clip=load_clip(clip, device), templates=templates, top_k=top_k)


@gpu_task(120)
def compare(image: np.ndarray, masks: np.ndarray, *, clip: str, device: str | None = None,
            methods: Sequence[str] = METHODS, vocab="shapes", templates: str = "single",
            inverted: np.ndarray | None = None, progress: ProgressFn = None) -> dict:
    """Top-1 class of every region under every region-embedding method.

    Returns ``{"methods": [...], "rows": [{"region": i, method: {"label", "score"}}, ...],
    "seconds": {method: s}}``. ``inverted`` reuses MaskInversion embeddings already computed.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise InputError(f"unknown method(s) {bad}; choose from {list(METHODS)}")
    fn = require("baselines")
    model = load_clip(clip, device)
    rows = [{"region": i} for i in range(len(masks))]
    seconds = {}
    for k, m in enumerate(methods):
        _note(progress, k / len(methods), f"method {m}")
        t0 = time.perf_counter()
        if m == "maskinversion" and inverted is not None:
            emb = np.asarray(inverted)
        else:
            emb = fn(model, image, masks, m)
            emb = emb.detach().float().cpu().numpy() if hasattr(emb, "detach") else np.asarray(emb)
        top = retrieve(emb, vocab, clip=clip, device=device, templates=templates, top_k=1)
        seconds[m] = time.perf_counter() - t0
        for row, t in zip(rows, top):
            row[m] = t[0] if t else dict(NO_CLASS)
    return {"methods": list(methods), "rows": rows, "seconds": seconds}


# ------------------------------------------------------------------------------- tasks


@gpu_task(120)
def ground(image: np.ndarray, expression: str, *, boxes=None, clip: str,
           device: str | None = None, combine: str = "tree", temperature=None, margin=None,
           contrast=None, masks=None, candidates=None, cache: dict | None = None):
    """ReCLIP grounding of ``expression`` among ``masks`` (P, H, W), ``boxes`` or
    ``candidates`` (a :class:`~regionlab.tasks.reclip.Proposals` kept from an earlier result
    on the same image; none of them: automatic proposals; masks also give the masked-crop
    membership its masks);
    ``combine``/``temperature``/``margin``/``contrast`` as in
    :class:`regionlab.tasks.reclip.GroundingOptions` (None: the combination's default).
    ``cache``: a per-image dict (the session's) where the automatic candidates' embeddings are
    kept per CLIP and device, so the next expression on the same image only encodes its text
    (embed once, query many; none of these options changes the embeddings). Not on ZeroGPU,
    where a decorated call may run in another process and could not fill the cache."""
    from ..tasks.reclip import GroundingOptions

    fn = require("ground")
    expression = check_text(expression, "expression")
    options = GroundingOptions(combine=combine or "tree",
                               temperature=None if temperature is None else float(temperature),
                               margin=None if margin is None else float(margin),
                               contrast=None if contrast is None else float(contrast)).checked()
    if cache is not None and masks is None and boxes is None and not on_zero_gpu():
        return _ground_automatic(image, expression, load_clip(clip, device), options,
                                 candidates, cache, (GROUND_FEATURES, clip, device or ""))
    if masks is not None:
        proposals = np.asarray(masks, dtype=bool)
    elif candidates is not None:
        proposals = candidates
    else:
        proposals = (None if boxes is None
                     else np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    return fn(image, expression, proposals=proposals, models=[load_clip(clip, device)],
              options=options)


#: key prefix of the automatic candidates' embeddings in a per-image cache
GROUND_FEATURES = "ground_features"


def _ground_automatic(image, expression, model, options, candidates, cache, key):
    """Grounding among automatic candidates with their embeddings kept in ``cache[key]`` (on
    the CPU, so a GPU's memory is not held between calls)."""
    from ..tasks.reclip import embed_proposals, ground_features, make_proposals

    t0 = time.perf_counter()
    features = cache.get(key)
    if features is None:
        props = candidates if candidates is not None else make_proposals(image, None)
        features = embed_proposals(image, props, "ips", [model], options).to_cpu()
        cache[key] = features
    result = ground_features(features, expression, options)
    result.timing["total_s"] = time.perf_counter() - t0
    return result


@gpu_task(120)
def label(image: np.ndarray, classes, *, masks=None, clip: str, device: str | None = None,
          proposals: str = "auto"):
    """OVSeg-style labelling of ``masks`` (None: automatic proposals) with ``classes``
    (a built-in vocabulary name, a list, or a comma-separated string; never a file)."""
    from ..inputs import check_classes
    from ..tasks.vocabularies import BUILTIN

    fn = require("label")
    key = classes.strip().lower() if isinstance(classes, str) else None
    names = list(BUILTIN[key]) if key in BUILTIN else check_classes(classes)
    return fn(image, names, masks=masks, proposals=proposals, clip=load_clip(clip, device))


@gpu_task(120)
def caption(image: np.ndarray, masks: np.ndarray, *, captioner: str | None = None,
            device: str | None = None, region_options: dict | None = None) -> list[str]:
    """One localized caption per mask (MaskInversion region embedding -> caption decoder; the
    captioner reads its own CLIP)."""
    fn = require("caption")
    from ..tasks.caption import load_captioner

    cap = load_captioner(captioner, device)
    return list(fn(image, masks, captioner=cap, region_options=region_options).captions)


@gpu_task(300)
def generate(image: np.ndarray, masks: np.ndarray, *, generator: str | None = None,
             device: str | None = None, n: int = 2, seed: int = 0, steps: int | None = None,
             vocab=None, templates: str = "single", progress: ProgressFn = None):
    """``n`` images per mask generated from its region embedding: a
    :class:`~regionlab.tasks.generate.GenerateResult` (``images[p][k]``) with ``seen[p][k]``,
    the class the generator's CLIP sees in each image among ``vocab`` (None:
    :func:`default_vocab` of that CLIP)."""
    fn = require("generate")
    from ..tasks.generate import GenerateOptions, load_generator

    options = GenerateOptions(n=n, seed=seed, steps=steps).checked()  # before any model loads
    gen = load_generator(generator, device)

    def step(i: int, total: int) -> None:
        _note(progress, i / max(total, 1), f"denoising step {i}/{total}")

    return fn(image, masks, generator=gen, options=options, progress=step,
              vocab=default_vocab(gen.clip) if vocab is None else vocab, templates=templates)


def default_vocab(clip: str | None) -> str:
    """The built-in vocabulary a CLIP is asked about by default: ShapesWorld's for the bundled
    CLIPs, COCO's for real ones."""
    return "shapes" if str(clip or "").startswith("shapes") else "coco"
