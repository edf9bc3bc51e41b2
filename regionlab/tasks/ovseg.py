"""OVSeg-style open-vocabulary labelling: mask proposals -> CLIP classes -> a labelled map.

Pipeline (METHODS.md section 4):

1. Proposals: the user's masks, or class-agnostic automatic proposals (SAM's automatic mask
   generator, or the offline fallback) from :mod:`regionlab.segment.proposals`.
2. Each mask becomes one CLIP input: soft masks are binarised (``> 0.35``), the TIGHT bounding
   box is cut out of the *normalised* image, outside-mask pixels are set to 0 (= the CLIP mean
   colour after normalisation) and the crop is stretched to the model input with bicubic
   interpolation. ``square=True`` widens the box to a square around its centre instead
   (the padding is mean colour too). ``crop="box"`` keeps the whole box (no mean fill): the
   plain-crop baseline.
3. All crops go through the image tower in ONE batched forward. A mask-adapted CLIP
   (:mod:`regionlab.models.ovseg_clip`) additionally gets the crop masks as mask prompts.
4. Text: the 14 ViLD templates averaged per class; classification is the softmax over the
   user's classes of ``100 * cos``. With a single class, the competitor ``"others"`` is added
   (``"other things"`` if the user's class is itself called "others").
5. Optional ensemble: ``p = p_crop^(1 - lambda) * p_mi^lambda`` (renormalised per mask), where
   ``p_mi`` are the class probabilities of the MaskInversion region embeddings.
6. Fusion into a label map (0 = unlabelled, k = the k-th user class, 1-based):

   - ``demo`` (OVSeg's demo): every user class picks its single best mask (highest
     probability of that class). ``sem[c, x] = p[q_c, c] * mask_{q_c}(x)`` for the chosen
     masks only; each pixel takes the argmax class. A mask picked by several classes goes to
     the class with the higher probability; overlapping chosen masks are decided per pixel the
     same way.
   - ``eval`` (evaluation): ``sem[c, x] = sum_q p[q, c] * mask_q(x)``, argmax over classes.

Background / unlabelled policy: a pixel is 0 (unlabelled) when no (chosen) mask covers it,
when the "others" competitor wins it, or when the winning mask-level probability is below
``min_score`` (masks below it are dropped before fusion; default 0 keeps OVSeg's behaviour).
RegionLab has no implicit background class: to label background, name it (e.g. "wall, sky").
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..config import LIMITS, Limits
from ..errors import InputError, ResourceError
from ..inputs import check_number, load_image, load_masks
from .retrieval import class_probabilities, class_text_embeddings, rank
from .vocabularies import blind_classes, resolve_vocab, scored_class_list, vocabulary_warnings

FUSIONS = ("demo", "eval")
CROPS = ("masked", "box")
PROPOSAL_SOURCES = ("auto", "sam", "fallback", "classical")
MASK_THRESHOLD = 0.35


@dataclass(frozen=True)
class LabelOptions:
    """Settings of :func:`label` (all explicit; nothing is stored on the model).

    fusion: ``demo`` (best mask per class) or ``eval`` (soft sum, argmax).
    crop: ``masked`` (OVSeg masked crop) or ``box`` (plain tight crop, a baseline).
    square: widen the tight box to a square (mean-colour padding) instead of stretching it.
    mask_threshold: soft masks are binarised with ``> mask_threshold``.
    templates: text prompt set (``vild`` = the 14 ViLD templates).
    top_k: classes listed per mask.
    others: with a single class, add the ``others`` competitor.
    min_score: masks whose best probability is below this stay unlabelled.
    ensemble: lambda of the MaskInversion ensemble (0 = off, 1 = MaskInversion only).
    mi_iterations / mi_lr / mi_resolution: MaskInversion settings (None = model defaults).
    mask_prompt: use mask prompts when the CLIP is mask-adapted (no effect otherwise).
    batch_size: crops per forward (None = all crops in one forward).
    max_proposals: at most this many automatic proposals (best scores first; limit 200).
    object_min_cos: automatic proposals whose masked crop reads as none of the model's known
    classes (best class cosine below it) are left out (:mod:`.objectness`; None = the model's
    default, the bundled CLIP only; -1 = off; ``crop="masked"`` only; user masks never).
    render: draw the coloured overlay with its legend.
    """

    fusion: str = "demo"
    crop: str = "masked"
    square: bool = False
    mask_threshold: float = MASK_THRESHOLD
    templates: str = "vild"
    top_k: int = 5
    others: bool = True
    min_score: float = 0.0
    ensemble: float = 0.0
    mi_iterations: int | None = None
    mi_lr: float | None = None
    mi_resolution: int | None = None
    mask_prompt: bool = True
    batch_size: int | None = None
    max_proposals: int = 50
    object_min_cos: float | None = None
    render: bool = True
    overlay_alpha: float = 0.25  # light: objects keep their colours (viz.label_map_overlay)


@dataclass
class RegionLabel:
    """One mask with its classification. ``label`` is the class it was painted with (None when
    it was left unlabelled); ``top`` the top-k ``{"label", "score"}`` (may include "others")."""

    mask: np.ndarray
    box: tuple[int, int, int, int]
    top: list[dict]
    label: str | None
    proposal_score: float | None = None


@dataclass
class LabelResult:
    """Output of :func:`label`.

    label_map: (H, W) int32, 0 = unlabelled, k = ``classes[k - 1]``.
    probabilities: (P, K') class probabilities per mask over ``scored_classes`` (the user's
    classes, plus the "others" competitor when it was added).
    overlay: RGB image with the class colours and a legend on the right (None if not rendered).
    colours: class -> hex colour, the same colours as the overlay.
    """

    label_map: np.ndarray
    classes: list[str]
    scored_classes: list[str]
    regions: list[RegionLabel]
    probabilities: np.ndarray
    overlay: np.ndarray | None
    colours: dict[str, str]
    fusion: str
    proposals: str
    notice: str | None = None
    timings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what the model cannot know

    @property
    def annotations(self) -> list[tuple[np.ndarray, str]]:
        """``(mask, label)`` pairs of the painted classes (float32 0/1 masks, one per class),
        for ``gr.AnnotatedImage((image, result.annotations))``."""
        out = []
        for k, c in enumerate(self.classes):
            m = self.label_map == k + 1
            if m.any():
                out.append((m.astype(np.float32), c))
        return out

    def to_dict(self) -> dict:
        """JSON-friendly summary (without the arrays)."""
        return {
            "classes": list(self.classes),
            "fusion": self.fusion,
            "proposals": self.proposals,
            "regions": [{"box": list(r.box), "label": r.label, "top": r.top,
                         "proposal_score": r.proposal_score} for r in self.regions],
            "colours": dict(self.colours),
            "notice": self.notice,
            "warnings": list(self.warnings),
            "timings": dict(self.timings),
        }


# --------------------------------------------------------------------------------- inputs


def check_options(options: LabelOptions) -> LabelOptions:
    """Validate every option (raises InputError)."""
    if options.fusion not in FUSIONS:
        raise InputError(f"unknown fusion {options.fusion!r}; choose from {FUSIONS}")
    if options.crop not in CROPS:
        raise InputError(f"unknown crop {options.crop!r}; choose from {CROPS}")
    check_number(options.mask_threshold, "mask_threshold", 0.0, 0.999)
    check_number(options.top_k, "top_k", 1, LIMITS.max_classes, integer=True)
    check_number(options.min_score, "min_score", 0.0, 1.0)
    check_number(options.ensemble, "ensemble", 0.0, 1.0)
    check_number(options.max_proposals, "max_proposals", 1, LIMITS.max_proposals, integer=True)
    check_number(options.overlay_alpha, "overlay_alpha", 0.0, 1.0)
    if options.object_min_cos is not None:
        check_number(options.object_min_cos, "object_min_cos", -1.0, 1.0)
    if options.batch_size is not None:
        check_number(options.batch_size, "batch_size", 1, 100_000, integer=True)
    return options


def binarise_masks(sources, size: tuple[int, int], threshold: float = MASK_THRESHOLD,
                   limits: Limits = LIMITS) -> np.ndarray:
    """Masks (bool, soft float in [0, 1], 0..255 / 0..65535 greys, PNG paths, PIL) -> bool
    (P, H, W). Soft values are binarised with ``> threshold`` (relative to the value range);
    masks of another size are resized (nearest). Empty masks are refused."""
    if sources is None:
        sources = []
    if isinstance(sources, np.ndarray) and sources.ndim == 2:
        sources = [sources]
    out = []
    for i, src in enumerate(list(sources)):
        if isinstance(src, (str, bytes)) or hasattr(src, "__fspath__") or isinstance(
                src, Image.Image):
            from ..inputs import _decode

            img = src if isinstance(src, Image.Image) else _decode(src)
            if img.mode in ("RGBA", "LA", "PA"):
                src = np.asarray(img.getchannel("A"))
            elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
                src = np.asarray(img, dtype=np.int64)
            else:
                src = np.asarray(img.convert("L"))
        a = np.asarray(src)
        if a.ndim == 3 and a.shape[2] in (1, 3, 4):
            a = a[..., 3] if a.shape[2] == 4 else a[..., 0]
        if a.dtype == bool or a.ndim != 2 or a.size == 0:
            out.append(a)
        elif np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                raise InputError(f"mask {i} contains NaN or infinite values")
            out.append(a > threshold)
        elif np.issubdtype(a.dtype, np.integer):
            top = a.max()
            scale = 1 if top <= 1 else 255 if top <= 255 else 65535
            out.append(a > threshold * scale)
        else:
            out.append(a)  # load_masks explains the unsupported dtype
    return load_masks(out, size, limits)


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive upper bounds, of the True pixels of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise InputError("mask is empty (no pixel inside)")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def square_box(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The smallest square containing ``box``, centred on it (may extend past the image)."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    nx0 = x0 - (side - (x1 - x0)) // 2
    ny0 = y0 - (side - (y1 - y0)) // 2
    return nx0, ny0, nx0 + side, ny0 + side


def normalise_image(image: np.ndarray, mean, std) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> CLIP-normalised float tensor (3, H, W)."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def _cut(t: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Slice (C, H, W) by a box that may extend past the image; outside = 0."""
    x0, y0, x1, y1 = box
    c, h, w = t.shape
    out = t.new_zeros((c, y1 - y0, x1 - x0))
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    out[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = t[:, sy0:sy1, sx0:sx1]
    return out


def region_crops(image: np.ndarray, masks: np.ndarray, size: int, mean, std,
                 crop: str = "masked", square: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, int, int]]]:
    """The CLIP inputs of all masks: (P, 3, S, S) normalised crops, (P, S, S) crop masks
    (nearest-resized, for mask prompts) and the boxes cut (tight, or squared).

    Masking happens in normalised space, so outside-mask pixels are exactly 0 (the mean
    colour) before and after the bicubic stretch wherever the bicubic support lies outside
    the mask.
    """
    norm = normalise_image(image, mean, std)
    crops, cmasks, boxes = [], [], []
    for m in masks:
        box = tight_box(m)
        if square:
            box = square_box(box)
        mt = _cut(torch.from_numpy(np.ascontiguousarray(m))[None].float(), box)
        c = _cut(norm, box)
        if crop == "masked":
            c = c * mt
        down = c.shape[-1] > size or c.shape[-2] > size
        crops.append(F.interpolate(c[None], size=(size, size), mode="bicubic",
                                   align_corners=False, antialias=down)[0])
        cmasks.append(F.interpolate(mt[None], size=(size, size), mode="nearest")[0, 0] > 0.5)
        boxes.append(box)
    return torch.stack(crops), torch.stack(cmasks), boxes


# --------------------------------------------------------------------------------- model


@torch.no_grad()
def encode_crops(clip, crops: torch.Tensor, crop_masks: torch.Tensor | None = None,
                 batch_size: int | None = None) -> torch.Tensor:
    """Image embeddings (P, D) of prepared crops; ONE forward unless ``batch_size`` splits it.

    With a mask-adapted CLIP (``clip.encode_masked``) and ``crop_masks``, the mask-prompted
    forward is used.
    """
    from ..explain.vit import embed_tokens, encode_image_tokens, run_blocks

    n = crops.shape[0]
    step = batch_size or n
    outs = []
    try:
        for i in range(0, n, step):
            x = crops[i : i + step].to(clip.device, clip.dtype)
            if crop_masks is not None and hasattr(clip, "encode_masked"):
                outs.append(clip.encode_masked(x, crop_masks[i : i + step].to(clip.device)))
                continue
            if hasattr(clip, "encode_tensor"):
                outs.append(clip.encode_tensor(x))
                continue
            visual = clip.visual
            tokens = run_blocks(visual, embed_tokens(visual, x), visual.transformer.resblocks)
            outs.append(encode_image_tokens(visual, tokens))
    except torch.OutOfMemoryError:
        if clip.device.type == "cuda":
            torch.cuda.empty_cache()
        raise ResourceError(f"out of memory encoding {n} crops in batches of {step}: "
                            f"set batch_size lower or give fewer masks") from None
    return torch.cat(outs).float()


def blend_probabilities(p_a: torch.Tensor, p_b: torch.Tensor, lam: float) -> torch.Tensor:
    """Geometric ensemble ``p_a^(1-lam) * p_b^lam``, renormalised over classes per row."""
    if lam <= 0:
        return p_a
    if lam >= 1:
        return p_b
    logp = (1 - lam) * torch.log(p_a.clamp_min(1e-30)) + lam * torch.log(p_b.clamp_min(1e-30))
    return torch.softmax(logp, dim=-1)


def maskinversion_embeddings(clip, image: np.ndarray, masks: np.ndarray,
                             options: LabelOptions) -> torch.Tensor:
    """MaskInversion region embeddings (P, D), unnormalised: one cached forward for the image,
    masks in chunks of ``LIMITS.max_masks``."""
    from ..region.maskinversion import invert

    embs, cache = [], None
    for i in range(0, len(masks), LIMITS.max_masks):
        res = invert(clip, image, list(masks[i : i + LIMITS.max_masks]),
                     iterations=options.mi_iterations, lr=options.mi_lr,
                     resolution=options.mi_resolution, cache=cache)
        cache = res.cache
        embs.append(torch.as_tensor(res.embeddings))
    return torch.cat(embs)


# --------------------------------------------------------------------------------- fusion


def demo_selection(probs: np.ndarray, n_user: int, min_score: float = 0.0) -> np.ndarray:
    """Demo fusion weights (P, n_user): for each user class, only its best mask keeps its
    probability; others are 0. Classes whose best probability is below ``min_score`` pick
    nothing. Competitor columns (index >= n_user) never pick a mask."""
    p = np.asarray(probs, np.float64)
    sel = np.zeros((p.shape[0], n_user))
    if p.shape[0] == 0:
        return sel
    for c in range(n_user):
        q = int(np.argmax(p[:, c]))
        if p[q, c] >= min_score and p[q, c] > 0:
            sel[q, c] = p[q, c]
    return sel


def fuse(probs: np.ndarray, masks: np.ndarray, n_user: int, mode: str = "eval",
         min_score: float = 0.0) -> np.ndarray:
    """Label map (H, W) int32 from mask probabilities (P, K') and masks (P, H, W).

    ``K' >= n_user``; columns beyond ``n_user`` are competitors ("others"): a pixel they win is
    unlabelled (0). Pixels covered by no (chosen) mask are 0. See the module docstring.
    """
    p = np.asarray(probs, np.float64)
    ms = np.asarray(masks, bool)
    h, w = ms.shape[1:] if ms.ndim == 3 else (0, 0)
    if mode not in FUSIONS:
        raise InputError(f"unknown fusion {mode!r}; choose from {FUSIONS}")
    if p.shape[0] == 0:
        return np.zeros((h, w), np.int32)
    keep = p.max(axis=1) >= min_score
    if mode == "demo":
        weights = demo_selection(np.where(keep[:, None], p, 0.0), n_user, min_score)
        chosen = weights.any(axis=1)
        # competitors compete only inside masks chosen by some user class
        weights = np.concatenate([weights, np.where(chosen[:, None], p[:, n_user:], 0.0)], 1)
    else:
        weights = np.where(keep[:, None], p, 0.0)
    patterns, inverse = coverage_patterns(ms)  # pixels with the same covering masks
    pat = patterns.astype(np.float64)
    sem = pat @ weights  # (U, K')
    covered = pat @ weights.sum(axis=1) > 0
    best = sem.argmax(axis=1)
    per_pattern = np.where(covered & (best < n_user), best + 1, 0)
    return per_pattern[inverse].reshape(h, w).astype(np.int32)


def coverage_patterns(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct mask-coverage patterns of the pixels: (U, P) bool and, per pixel (H*W,), the
    index of its pattern. Fusion is then computed once per pattern instead of per pixel."""
    p = masks.shape[0]
    packed = np.ascontiguousarray(np.packbits(masks.reshape(p, -1), axis=0).T)  # (HW, B)
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    uniq, inverse = np.unique(keys, return_inverse=True)
    pats = np.unpackbits(np.frombuffer(uniq.tobytes(), np.uint8).reshape(len(uniq), -1),
                         axis=1, count=p).astype(bool)
    return pats, inverse.ravel()


def mask_labels(probs: np.ndarray, n_user: int, mode: str, min_score: float = 0.0
                ) -> list[int | None]:
    """The class index painted for each mask at mask level (None = unlabelled)."""
    p = np.asarray(probs, np.float64)
    out: list[int | None] = []
    if mode == "demo":
        sel = demo_selection(np.where(p.max(1, keepdims=True) >= min_score, p, 0.0), n_user,
                             min_score)
        for q in range(p.shape[0]):
            if not sel[q].any():
                out.append(None)
                continue
            row = p[q]
            c = int(np.argmax(np.where(sel[q] > 0, row[:n_user], -1.0)))
            others = row[n_user:].max() if p.shape[1] > n_user else -1.0
            out.append(None if others > row[c] else c)
    else:
        for row in p:
            c = int(np.argmax(row))
            out.append(c if c < n_user and row[c] >= min_score else None)
    return out


def class_colours(n: int, painted: list[int]) -> np.ndarray:
    """Colours (n, 3) of ``n`` classes: the painted ones take a palette of their own number
    (up to 10: tab10), so the few classes on the map are easy to tell apart; the others keep
    their places in an ``n``-colour palette."""
    from .. import viz

    cols = viz.palette(n)
    if painted:
        cols[painted] = viz.palette(len(painted))
    return cols


# --------------------------------------------------------------------------------- proposals


def proposal_engine(method: str) -> tuple[str, str | None]:
    """(engine name for ``generate_proposals``, notice). ``auto``: SAM when a checkpoint is
    here, else the classical fallback (with a notice); ``sam``: the default SAM, or a clear
    error when none is available; ``fallback``/``classical``; or a SAM model name."""
    from ..segment.interactive import CLASSICAL, default_segmenter_name

    if method in ("fallback", CLASSICAL):
        return CLASSICAL, "proposals from the classical fallback segmenter (not SAM)."
    if method == "auto":
        name, notice = default_segmenter_name()
        return name, notice
    if method == "sam":
        name, _ = default_segmenter_name()
        if name == CLASSICAL:
            from ..errors import ModelUnavailableError

            raise ModelUnavailableError(
                "SAM proposals were requested but no SAM checkpoint is available here. Set "
                "REGIONLAB_SAM_VIT_B=/path/to/sam_vit_b_01ec64.pth (or REGIONLAB_SAM=NAME), or "
                "use the classical fallback explicitly (proposals='fallback').")
        return name, None
    return method, None  # a SAM model name; generate_proposals validates it


def _auto_proposals(image: np.ndarray, method: str, options: LabelOptions):
    """Automatic proposals -> (bool masks (P, H, W), scores, notice)."""
    from ..segment.proposals import generate_proposals

    engine, notice = proposal_engine(method)
    items = generate_proposals(image, engine, max_proposals=options.max_proposals)
    h, w = image.shape[:2]
    masks = [np.asarray(p.mask, bool) for p in items]
    keep = [i for i, m in enumerate(masks) if m.shape == (h, w) and m.any()]
    arr = np.stack([masks[i] for i in keep]) if keep else np.zeros((0, h, w), bool)
    return arr, [float(items[i].score) for i in keep], notice


# --------------------------------------------------------------------------------- entry point


def _is_sam_name(name) -> bool:
    from ..models import list_model_names

    return isinstance(name, str) and (name in list_model_names("sam") or "@" in name)


def _fingerprint(masks: np.ndarray) -> str:
    import hashlib

    return f"{masks.shape}:" + hashlib.blake2b(np.packbits(masks).tobytes(),
                                               digest_size=12).hexdigest()


def _cached(cache: dict | None, key: tuple, compute):
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def objects_among(clip, image: np.ndarray, masks: np.ndarray, threshold: float | None = None
                  ) -> tuple[np.ndarray | None, str]:
    """Which automatic proposals of ``image`` read as an object the model knows (their masked
    crops, as labelling cuts them; labelling's threshold): :func:`.objectness.object_keep`."""
    from .objectness import LABELLING, object_keep

    crops, _, _ = region_crops(image, masks, clip.image_size, clip.mean, clip.std, "masked",
                               False)
    return object_keep(clip, encode_crops(clip, crops), threshold, LABELLING)


def _objects_only(clip, masks, emb, scores, threshold):
    """The automatic proposals that read as objects: masks, embeddings, scores, notice."""
    from .objectness import LABELLING, object_keep

    keep, notice = object_keep(clip, emb, threshold, LABELLING)
    if keep is None:
        return masks, emb, scores, notice
    idx = np.flatnonzero(keep)
    return masks[idx], emb[torch.as_tensor(idx)], [scores[i] for i in idx], notice


def label(image, classes, masks=None, proposals: str = "auto",
          options: LabelOptions = LabelOptions(), clip=None, model: str | None = None,
          cache: dict | None = None) -> LabelResult:
    """Label an image with open-vocabulary classes.

    image: RGB array / PIL / path. classes: a list of names, a comma-separated string, a
    vocabulary file or a built-in name (voc, coco, shapes); blank names are dropped, duplicates
    (case-insensitive), an empty list and more than 2 000 classes are refused. masks: user masks
    used as the proposals (bool / soft / PNG paths); if None, automatic ``proposals``
    (``auto`` = SAM when a checkpoint is available, else the offline fallback; ``sam``;
    ``fallback``). No proposal at all gives an all-unlabelled map and a notice.

    cache: an optional dict owned by the caller for ONE image: automatic proposals, crop
    embeddings and MaskInversion embeddings are kept in it, so calling again with other
    classes, fusion or ensemble weight recomputes only what changed.
    """
    t0 = time.perf_counter()
    options = check_options(options)
    img = load_image(image)
    names = resolve_vocab(classes)
    n_user = len(names)
    h, w = img.shape[:2]
    notice = None
    proposal_scores: list[float | None]
    if masks is not None:
        lim = dataclasses.replace(LIMITS, max_masks=LIMITS.max_proposals)
        mk = binarise_masks(masks, (h, w), options.mask_threshold, lim)
        proposal_scores = [None] * len(mk)
        source = "user"
    else:
        if proposals not in PROPOSAL_SOURCES and not _is_sam_name(proposals):
            raise InputError(f"unknown proposal source {proposals!r}; choose from "
                             f"{PROPOSAL_SOURCES}, a SAM model name, or give masks")
        mk, proposal_scores, notice = _cached(
            cache, ("proposals", proposals, options.max_proposals),
            lambda: _auto_proposals(img, proposals, options))
        source = proposals
    t_prop = time.perf_counter()

    if clip is None:
        from ..models import load_clip

        clip = load_clip(model)
    # classes made only of words the model cannot represent are never assigned (they share one
    # text embedding); the softmax runs over the others (plus "others" if one is left)
    blind = set(blind_classes(clip, names))
    assignable = [c for c in names if c not in blind]
    n_lab = len(assignable)
    scored = scored_class_list(assignable, options.others)  # [] when nothing is assignable
    if blind:
        notice = (notice + " " if notice else "") + (
            f"{len(blind)} of {n_user} classes are made only of words {clip.name} does not "
            f"know ({', '.join(repr(c) for c in sorted(blind)[:5])}"
            f"{', ...' if len(blind) > 5 else ''}): they were not assigned to any mask.")
    text = class_text_embeddings(clip, scored, options.templates) if scored else None
    t_text = time.perf_counter()

    if len(mk) == 0:
        probs = torch.zeros((0, len(scored)))
        notice = (notice + " " if notice else "") + "no mask proposals: nothing was labelled."
        t_fwd = t_crop = time.perf_counter()
    else:
        fp = _fingerprint(mk) if cache is not None else ""
        prompted = options.mask_prompt and hasattr(clip, "encode_masked")

        def crop_embeddings():
            nonlocal t_crop
            crops, cmasks, _ = region_crops(img, mk, clip.image_size, clip.mean, clip.std,
                                            options.crop, options.square)
            t_crop = time.perf_counter()
            return encode_crops(clip, crops, cmasks if prompted else None, options.batch_size)

        t_crop = time.perf_counter()
        emb = _cached(cache, ("crops", clip.name, options.crop, options.square, prompted, fp),
                      crop_embeddings)
        if source != "user" and options.crop == "masked":
            mk, emb, proposal_scores, left_out = _objects_only(clip, mk, emb, proposal_scores,
                                                               options.object_min_cos)
            if left_out:
                notice = (notice + " " if notice else "") + left_out
                fp = _fingerprint(mk) if cache is not None else ""
        t_fwd = time.perf_counter()
        probs = (class_probabilities(emb.to(text.device), text) if scored
                 else torch.zeros((len(mk), 0)))
        if options.ensemble > 0 and scored:
            mi = _cached(cache, ("mi", clip.name, options.mi_iterations, options.mi_lr,
                                 options.mi_resolution, fp),
                         lambda: maskinversion_embeddings(clip, img, mk, options))
            p_mi = class_probabilities(mi.to(text.device), text)
            probs = blend_probabilities(probs, p_mi.to(probs.device), options.ensemble)
    t_cls = time.perf_counter()

    p_np = probs.detach().cpu().numpy()
    if scored:
        # indices among the assignable classes -> indices among the user's classes
        to_names = np.array([0] + [names.index(c) + 1 for c in assignable], np.int32)
        label_map = to_names[fuse(p_np, mk, n_lab, options.fusion, options.min_score)]
        per_mask = [None if c is None else int(to_names[c + 1]) - 1
                    for c in mask_labels(p_np, n_lab, options.fusion, options.min_score)]
        tops = rank(probs.cpu(), scored, options.top_k) if len(mk) else []
    else:
        label_map = np.zeros((h, w), np.int32)
        per_mask, tops = [None] * len(mk), [[] for _ in range(len(mk))]
    regions = [RegionLabel(mask=m, box=tight_box(m), top=t,
                           label=None if c is None else names[c], proposal_score=s)
               for m, t, c, s in zip(mk, tops, per_mask, proposal_scores)]

    from .. import viz

    painted = [k for k in range(n_user) if (label_map == k + 1).any()]
    cols = class_colours(n_user, painted)
    overlay = None
    if options.render:
        over = viz.label_map_overlay(img, label_map, cols, options.overlay_alpha)
        overlay = viz.with_legend(over, [names[k] for k in painted] or ["(nothing labelled)"],
                                  cols[painted] if painted else np.full((1, 3), 255, np.uint8))
    t_end = time.perf_counter()
    timings = {"proposals_s": t_prop - t0, "text_s": t_text - t_prop, "crops_s": t_crop - t_text,
               "forward_s": t_fwd - t_crop, "classify_s": t_cls - t_fwd,
               "fuse_render_s": t_end - t_cls, "total_s": t_end - t0}
    return LabelResult(
        label_map=label_map, classes=names, scored_classes=scored, regions=regions,
        probabilities=p_np, overlay=overlay,
        colours={n: viz.hex_colour(c) for n, c in zip(names, cols)},
        fusion=options.fusion, proposals=source, notice=notice,
        timings={k: round(v, 5) for k, v in timings.items()},
        warnings=vocabulary_warnings(clip, list(names)),
    )
