"""ReCLIP grounding: Isolated Proposal Scoring (IPS) plus the relation parser (METHODS.md 3).

>>> result = ground(image, "the red circle left of the blue square", proposals=boxes)
>>> result.index, result.box, result.probs

Proposals (``proposals=``): boxes ``(P, 4)`` as ``x0, y0, x1, y1`` in pixels (exclusive ends,
clipped to the image; a box with no area inside the image is an error); boolean masks
``(P, H, W)`` (their tight boxes are scored; the masks come back in the result); objects with
``.box``/``.mask`` (automatic proposals); a detections JSON file (see :func:`read_detections`);
or ``None`` for automatic proposals (``regionlab.segment.proposals``). Duplicate boxes are
allowed: they get equal probabilities and the lowest index wins the tie. One proposal is
returned with probability 1.

Scorers, all behind one interface (region embeddings -> ``logit_scale * cos`` with the text,
summed over views and CLIP models, softmax over proposals):

- ``ips`` (ReCLIP): a *crop* of the box and a *blur* view (the whole image Gaussian-blurred, the
  box's original pixels pasted back), both stretched to the model's square input; all 2P views
  of a model go through ONE batched forward. The blur sigma defaults to 100 px, the paper's
  value for RefCOCO's ~640 px images, scaled with the image for smaller images:
  ``sigma = 100 * min(1, longest_side / 640)`` (10 px for a 64 px ShapesWorld scene; at
  100 px such a scene would be one flat colour).
- ``masked-crop`` (OVSeg's region view) and ``maskinversion`` (the MaskInversion paper's REC
  setting): one embedding per proposal mask (a box becomes a filled box mask).

Texts are ``"a photo of " + text.lower()`` for the full expression and for every entity of the
parse tree (:mod:`regionlab.tasks.reclip_parser`). With no relation or superlative in the tree
the answer is ``argmax(IPS(full))``; otherwise :class:`GroundingOptions` ``combine`` decides:
the tree's own distribution (default) or ReCLIP's ``argmax(IPS(full) * p_tree)``. Words the
model cannot represent are named in the result's ``warnings``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from ..config import LIMITS
from ..errors import InputError, ModelUnavailableError
from ..inputs import check_number, check_text, load_image, load_masks
from .objectness import candidates_keep
from .reclip_contrast import BOX_SEGMENTATION
from .vocabularies import blind_classes

SCORERS = ("ips", "masked-crop", "maskinversion")
VIEWS = ("crop", "blur")
REFERENCE_SIDE = 640  # RefCOCO-scale images, where ReCLIP's 100 px blur was chosen


def default_blur_sigma(image_shape: tuple[int, int], sigma: float = 100.0) -> float:
    """``sigma`` px for images whose longest side is >= 640 px, proportionally less below."""
    return float(sigma) * min(1.0, max(image_shape[:2]) / REFERENCE_SIDE)


# ------------------------------------------------------------------------------ proposals


@dataclass
class Proposals:
    """Candidate regions: ``boxes`` (P, 4) float ``x0, y0, x1, y1`` (exclusive, inside the
    image), optional ``masks`` (P, H, W) bool and ``scores`` (P,), where they came from."""

    boxes: np.ndarray
    masks: np.ndarray | None = None
    scores: np.ndarray | None = None
    source: str = "boxes"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.boxes)

    def box_masks(self, image_shape: tuple[int, int]) -> np.ndarray:
        """The masks, or filled-box masks when there are none, (P, H, W) bool."""
        if self.masks is not None:
            return self.masks
        h, w = image_shape[:2]
        out = np.zeros((len(self), h, w), bool)
        for i, (x0, y0, x1, y1) in enumerate(_int_boxes(self.boxes)):
            out[i, y0:y1, x0:x1] = True
        return out


def _int_boxes(boxes: np.ndarray) -> np.ndarray:
    """Pixel-aligned boxes that cover the float boxes (floor the start, ceil the end)."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.stack([np.floor(b[:, 0]), np.floor(b[:, 1]), np.ceil(b[:, 2]), np.ceil(b[:, 3])],
                    axis=1).astype(int)


def _check_count(n: int, what: str) -> None:
    if n == 0:
        raise InputError(f"no {what} given: grounding needs at least one candidate region")
    if n > LIMITS.max_proposals:
        raise InputError(f"{n} {what} given; the limit is {LIMITS.max_proposals}")


def proposals_from_boxes(boxes, image_shape: tuple[int, int], source: str = "boxes",
                         scores=None) -> Proposals:
    """Validate boxes ``[[x0, y0, x1, y1], ...]``: finite numbers, ``x1 > x0`` and ``y1 > y0``;
    boxes reaching outside the image are clipped to it (noted); a box with no area left inside
    the image is an :class:`InputError` naming it."""
    try:
        b = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("boxes must be a list of [x0, y0, x1, y1] numbers") from None
    if b.size == 0:
        _check_count(0, "boxes")
    if b.ndim == 1 and b.size == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"boxes must have shape (P, 4) as [x0, y0, x1, y1], got {b.shape}")
    _check_count(len(b), "boxes")
    if not np.isfinite(b).all():
        raise InputError("boxes contain NaN or infinite values")
    h, w = image_shape[:2]
    notes = []
    for i, (x0, y0, x1, y1) in enumerate(b):
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"box {i} {[x0, y0, x1, y1]} is degenerate: need x1 > x0 and "
                             f"y1 > y0 (boxes are x0, y0, x1, y1)")
    clipped = b.copy()
    clipped[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
    clipped[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
    for i in range(len(b)):
        cw, ch = clipped[i, 2] - clipped[i, 0], clipped[i, 3] - clipped[i, 1]
        if cw < 1 or ch < 1:
            raise InputError(f"box {i} {b[i].tolist()} has less than one pixel inside the "
                             f"{w}x{h} image")
        if not np.array_equal(clipped[i], b[i]):
            notes.append(f"box {i} clipped to the image: {clipped[i].round(2).tolist()}")
    _note_duplicates(clipped, notes)
    sc = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    return Proposals(clipped, None, sc, source, notes)


def _note_duplicates(boxes: np.ndarray, notes: list[str]) -> None:
    seen: dict[tuple, int] = {}
    for i, bx in enumerate(boxes):
        key = tuple(np.round(bx, 3))
        if key in seen:
            notes.append(f"box {i} duplicates box {seen[key]}: equal scores, the lower index "
                         f"wins ties")
        else:
            seen[key] = i


def proposals_from_masks(masks, image_shape: tuple[int, int], source: str = "masks",
                         scores=None) -> Proposals:
    """Boolean masks (P, H, W) (any form :func:`regionlab.inputs.load_masks` takes) -> their
    tight boxes; empty masks are refused."""
    limits = replace(LIMITS, max_masks=LIMITS.max_proposals)
    if masks is None or (hasattr(masks, "__len__") and len(masks) == 0):
        _check_count(0, "masks")
    mk = load_masks(masks, tuple(image_shape[:2]), limits=limits)
    boxes = []
    for m in mk:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    b = np.asarray(boxes, dtype=np.float64)
    notes: list[str] = []
    _note_duplicates(b, notes)
    sc = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    return Proposals(b, mk, sc, source, notes)


def read_detections(source, image_id=None, min_score: float | None = None,
                    box_format: str = "auto") -> tuple[np.ndarray, np.ndarray | None]:
    """Boxes (xyxy) and scores from a detections JSON (path, JSON text already parsed, or list).

    Accepted: a list of ``{"bbox": [x, y, w, h], "score": s, "image_id": id}`` (COCO results;
    filtered by ``image_id`` when given), a list of ``{"box": [x0, y0, x1, y1]}``, a dict
    ``{image_id: [...]}`` of such lists, a dict ``{"boxes": [...], "scores": [...]}``, or a bare
    list of boxes. ``box_format`` ("auto", "xyxy", "xywh") overrides the convention of bare
    lists and of "box"/"bbox" keys (auto: "bbox" is COCO xywh, everything else xyxy).
    """
    if box_format not in ("auto", "xyxy", "xywh"):
        raise InputError(f"box_format must be auto, xyxy or xywh, got {box_format!r}")
    data = source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"detections file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"detections file {path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "boxes" in data:
        rows = [{"box": b, "score": s} for b, s in
                zip(data["boxes"], data.get("scores") or [None] * len(data["boxes"]))]
    elif isinstance(data, dict):
        key = None if image_id is None else str(image_id)
        if key is None:
            if len(data) != 1:
                raise InputError("the detections file holds several images: give image_id")
            key = next(iter(data))
        if key not in {str(k) for k in data}:
            raise InputError(f"no detections for image_id {image_id!r}")
        rows = next(v for k, v in data.items() if str(k) == key)
    elif isinstance(data, list):
        rows = data
    else:
        raise InputError("detections must be a JSON list or object")
    boxes, scores = [], []
    for r in rows:
        if isinstance(r, dict):
            if image_id is not None and "image_id" in r and str(r["image_id"]) != str(image_id):
                continue
            if "bbox" in r:
                fmt, b = ("xywh" if box_format == "auto" else box_format), r["bbox"]
            elif "box" in r:
                fmt, b = ("xyxy" if box_format == "auto" else box_format), r["box"]
            else:
                raise InputError(f"detection {r!r} has no 'bbox' or 'box'")
            s = r.get("score")
        else:
            fmt, b, s = ("xyxy" if box_format == "auto" else box_format), r, None
        if s is not None and min_score is not None and float(s) < min_score:
            continue
        try:
            x0, y0, a, c = (float(v) for v in b)
        except (TypeError, ValueError):
            raise InputError(f"detection box {b!r} is not four numbers") from None
        boxes.append([x0, y0, x0 + a, y0 + c] if fmt == "xywh" else [x0, y0, a, c])
        scores.append(np.nan if s is None else float(s))
    sc = np.asarray(scores) if boxes and not np.isnan(scores).all() else None
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), sc


def automatic_proposals(image: np.ndarray, **options) -> Proposals:
    """Class-agnostic proposals from :func:`regionlab.segment.proposals.generate_proposals`
    (SAM when available, its offline fallback otherwise)."""
    try:
        from ..segment.proposals import generate_proposals
    except ImportError as exc:
        raise ModelUnavailableError(
            f"automatic proposals need regionlab.segment.proposals ({exc}); pass boxes or "
            f"masks instead") from None
    found = list(generate_proposals(image, **options))
    if not found:
        raise InputError("the automatic proposal generator found no region in this image; "
                         "pass boxes instead")
    found = found[: LIMITS.max_proposals]
    props = proposals_from_masks([np.asarray(p.mask, bool) for p in found], image.shape[:2],
                                 source="automatic",
                                 scores=[float(getattr(p, "score", np.nan)) for p in found])
    return props


def make_proposals(image: np.ndarray, proposals) -> Proposals:
    """Any supported proposal input (see the module docstring) -> :class:`Proposals`."""
    shape = image.shape[:2]
    if proposals is None or (isinstance(proposals, str) and proposals == "auto"):
        return automatic_proposals(image)
    if isinstance(proposals, Proposals):
        if proposals.masks is not None:
            return proposals_from_masks(proposals.masks, shape, proposals.source,
                                        proposals.scores)
        return proposals_from_boxes(proposals.boxes, shape, proposals.source, proposals.scores)
    if isinstance(proposals, (str, Path)):
        boxes, scores = read_detections(proposals)
        return proposals_from_boxes(boxes, shape, "detections", scores)
    if isinstance(proposals, dict):
        if proposals.get("masks") is not None:
            return proposals_from_masks(proposals["masks"], shape, "masks",
                                        proposals.get("scores"))
        if proposals.get("boxes") is not None:
            return proposals_from_boxes(proposals["boxes"], shape, proposals.get("source", "boxes"),
                                        proposals.get("scores"))
        raise InputError("a proposals dict needs 'boxes' or 'masks'")
    if isinstance(proposals, np.ndarray) and proposals.ndim == 3:
        return proposals_from_masks(proposals, shape)
    items = list(proposals)
    if items and all(hasattr(p, "mask") for p in items):
        return proposals_from_masks([np.asarray(p.mask, bool) for p in items], shape, "automatic",
                                    [float(getattr(p, "score", np.nan)) for p in items])
    if items and all(hasattr(p, "box") for p in items):
        return proposals_from_boxes([list(p.box) for p in items], shape, "boxes")
    if items and all((isinstance(p, np.ndarray) and p.ndim == 2)
                     or isinstance(p, (str, Path, Image.Image)) for p in items):
        return proposals_from_masks(items, shape)  # mask arrays, mask files or PIL masks
    return proposals_from_boxes(items, shape)


# ------------------------------------------------------------------------------ scoring


COMBINES = ("tree", "calibrated", "reference")
#: Softmax temperature, membership margin and contrast weight per combination. "tree":
#: chosen for the bundled CLIP (stage 16) on validation scenes, every expression kind: our
#: renderer at 64 px (the training scale, 400 scenes) and 448 px (the app's, 200) and the
#: OpenCV renderer at 64 px (400): ``python benchmarks/reclip_shapes.py --tune``; rule fixed
#: before the run: best spatial accuracy averaged over the three, ties to the smaller margin,
#: then temperature, contrast weight, tolerance. Chosen with the masked-crop membership
#: (below): T 1, margin 12, contrast 1, tolerance 4, no gap: 97.3% (98.6 / 99.6 / 93.6%).
#: Before it (IPS views only): T 1, margin 12, contrast 1, tolerance 3, gap 10: 96.0% (98.0 /
#: 98.6 / 91.4%); tolerance 3, no gap: 95.95% (97.7 / 98.6 / 91.6%); without contrast the
#: best was T 1, margin 6:
#: 94.0% (95.4 / 96.8 / 89.8%); superlatives of a shape named alone ("the biggest circle")
#: 95.0 / 97.5 / 76.2% vs 92.5 / 95.0 / 63.8%; reference 76.8 / 73.6 / 73.4%. Stage 15: T 1,
#: margin 8, contrast 0.5, tolerance 3 (95.5%). Earlier: stage 13 T 1, margin 8; stage 10 T 4,
#: margin 6 (our renderer at 64 px only, no contrast).
#: "calibrated": T 24, chosen earlier on the attribute/relation/superlative kinds. With real
#: CLIPs re-tune; the reference is ReCLIP's T 1 with no margin.
DEFAULT_TEMPERATURE = {"tree": 1.0, "calibrated": 24.0, "reference": 1.0}
#: Membership margin per combination (logit units, summed over views and models; 0 = none).
DEFAULT_MARGIN = {"tree": 12.0, "calibrated": 0.0, "reference": 0.0}
#: Contrastive-membership weight per combination (:mod:`.reclip_contrast`; 0 = off; only
#: models that declare word groups use it).
DEFAULT_CONTRAST = {"tree": 1.0, "calibrated": 0.0, "reference": 0.0}
#: Logits by which a proposal may prefer a one-word variant before the penalty starts.
DEFAULT_CONTRAST_TOLERANCE = 4.0
#: Logits by which a proposal may read a phrase worse than the best-reading proposal before
#: the penalty starts (inf = no relative test; rule: grounding_contrast/gap_rule.md, gaps
#: inf/4/6/8/10). With the IPS views alone it chose 10 (val 95.95 -> 96.0%); with the
#: IPS views + masked crop, none (the best with a gap, 10: 96.7%).
DEFAULT_CONTRAST_GAP = float("inf")
#: What the contrastive membership reads (:data:`.reclip_contrast.MEMBERSHIPS`): the IPS views
#: and each proposal's masked crop summed, chosen by the rule in
#: benchmarks/results/grounding_contrast/membership_rule.md (val 96.0 -> 97.3%; masked crop
#: alone 97.1%).
DEFAULT_MEMBERSHIP = "both"


@dataclass(frozen=True)
class GroundingOptions:
    """Hyper-parameters of one grounding call (never stored on a model).

    ``blur_sigma`` None = :func:`default_blur_sigma`; ``views`` a subset of crop/blur for the
    ``ips`` scorer; ``area_prior`` drops proposals smaller than ``min_area_fraction`` of the
    image (ReCLIP's optional 5% prior; ignored, with a note, if it would drop them all);
    ``use_parser`` False = IPS alone; ``mi_options`` go to MaskInversion's ``invert``.

    ``combine`` (how IPS and the parse tree make the final choice when a spatial word occurs):

    - ``"tree"`` (default, ours): the tree's own distribution decides, ``argmax(p_tree)``; the
      head entity's IPS is inside it, the full expression's IPS is shown but not multiplied in,
      so a confident CLIP that cannot read spatial words cannot override a confident tree;
    - ``"calibrated"``: ``argmax(IPS(full) * p_tree)`` with the model's own logit scale;
    - ``"reference"``: ReCLIP exactly, ``argmax(IPS(full) * p_tree)`` with ``100 * cos``.

    ``logit_scale`` None = the model's own learnt scale (``"reference"``: 100);
    ``temperature`` None = :data:`DEFAULT_TEMPERATURE` of the combination; it divides every
    logit before its softmax over proposals (IPS alone keeps its argmax).
    ``margin`` None = :data:`DEFAULT_MARGIN`: logits within ``margin`` of a text's best
    proposal are raised to ``best - margin`` (ours): CLIP says *which* proposals match a noun
    phrase (other classes fall tens of logits behind), the parse tree says *which of them* is
    meant (same-class proposals differ by a few logits that carry no spatial meaning).
    ``contrast`` None = :data:`DEFAULT_CONTRAST`: after the margin, a noun phrase's logit on
    a proposal that prefers a phrase one known word away ("the square" for "the circle") is
    lowered by ``contrast`` times that preference beyond ``contrast_tolerance`` logits, or
    beyond ``contrast_gap`` logits below the proposal that reads the phrase best
    (:mod:`.reclip_contrast`; ours; None = the defaults). ``membership`` None =
    :data:`DEFAULT_MEMBERSHIP` (or ``views`` for proposals embedded without masked crops):
    which embeddings that membership reads with the ``ips`` scorer (``views``,
    ``masked-crop`` or ``both``; the other scorers read their own).
    ``object_min_cos`` None = the model's default: automatic candidates whose masked crop
    reads as no class the model knows (best class cosine below it) are left out of the choice
    (:mod:`.objectness`; the bundled CLIP only; ``-1`` turns it off); ``fragment_min_inside``
    None = the model's default: kept candidates lying at least that share inside a larger kept
    one are left out as fragments (``0`` turns it off).
    """

    blur_sigma: float | None = None
    views: tuple[str, ...] = VIEWS
    area_prior: bool = False
    min_area_fraction: float = 0.05
    use_parser: bool = True
    prompt: str = "a photo of "
    combine: str = "tree"
    logit_scale: float | None = None
    temperature: float | None = None
    margin: float | None = None
    contrast: float | None = None
    contrast_tolerance: float | None = None
    contrast_gap: float | None = None
    membership: str | None = None
    object_min_cos: float | None = None
    fragment_min_inside: float | None = None
    max_batch: int = 512
    mi_options: dict = field(default_factory=dict)

    def checked(self) -> GroundingOptions:
        if self.blur_sigma is not None:
            check_number(self.blur_sigma, "blur_sigma", 0.0, 1000.0)
        check_number(self.min_area_fraction, "min_area_fraction", 0.0, 1.0)
        if self.logit_scale is not None:
            check_number(self.logit_scale, "logit_scale", 1e-3, 1000.0)
        if self.temperature is not None:
            check_number(self.temperature, "temperature", 1e-3, 1e4)
        if self.margin is not None:
            check_number(self.margin, "margin", 0.0, 1e4)
        if self.contrast is not None:
            check_number(self.contrast, "contrast", 0.0, 1e3)
        if self.contrast_tolerance is not None:
            check_number(self.contrast_tolerance, "contrast_tolerance", 0.0, 1e3)
        if self.contrast_gap is not None and self.contrast_gap != float("inf"):
            check_number(self.contrast_gap, "contrast_gap", 0.0, 1e3)
        if self.object_min_cos is not None:
            check_number(self.object_min_cos, "object_min_cos", -1.0, 1.0)
        if self.fragment_min_inside is not None:
            check_number(self.fragment_min_inside, "fragment_min_inside", 0.0, 1.0)
        check_number(self.max_batch, "max_batch", 1, 100_000, integer=True)
        from .reclip_contrast import MEMBERSHIPS

        if self.membership is not None and self.membership not in MEMBERSHIPS:
            raise InputError(f"membership must be one of {MEMBERSHIPS}, got "
                             f"{self.membership!r}")
        if self.combine not in COMBINES:
            raise InputError(f"combine must be one of {COMBINES}, got {self.combine!r}")
        views = tuple(self.views)
        if not views or any(v not in VIEWS for v in views) or len(set(views)) != len(views):
            raise InputError(f"views must be a non-empty subset of {VIEWS}, got {self.views!r}")
        return self

    @property
    def effective_temperature(self) -> float:
        return float(DEFAULT_TEMPERATURE[self.combine] if self.temperature is None
                     else self.temperature)

    @property
    def effective_margin(self) -> float:
        return float(DEFAULT_MARGIN[self.combine] if self.margin is None else self.margin)

    @property
    def effective_contrast(self) -> float:
        return float(DEFAULT_CONTRAST[self.combine] if self.contrast is None else self.contrast)

    @property
    def effective_contrast_tolerance(self) -> float:
        return float(DEFAULT_CONTRAST_TOLERANCE if self.contrast_tolerance is None
                     else self.contrast_tolerance)

    @property
    def effective_contrast_gap(self) -> float:
        return float(DEFAULT_CONTRAST_GAP if self.contrast_gap is None else self.contrast_gap)

    @property
    def effective_membership(self) -> str:
        return DEFAULT_MEMBERSHIP if self.membership is None else self.membership

    @property
    def effective_logit_scale(self) -> float | None:
        """A fixed scale, or None for each model's own."""
        if self.logit_scale is not None:
            return float(self.logit_scale)
        return 100.0 if self.combine == "reference" else None


def resolve_models(models) -> list:
    """None (the default CLIP), a name, a loaded CLIP, or a list of those -> loaded CLIPs."""
    from ..models import load_clip

    if models is None:
        return [load_clip(None)]
    if isinstance(models, str) or hasattr(models, "encode_images"):
        models = [models]
    out = [m if hasattr(m, "encode_images") else load_clip(str(m)) for m in models]
    if not out:
        raise InputError("no CLIP model given for the ensemble")
    return out


def ips_views(image: np.ndarray, boxes: np.ndarray, views: tuple[str, ...] = VIEWS,
              sigma: float | None = None) -> list[np.ndarray]:
    """The IPS images, view-major: all crops, then all blur views (one blur per image)."""
    ib = _int_boxes(boxes)
    out: list[np.ndarray] = []
    for view in views:
        if view == "crop":
            out += [image[y0:y1, x0:x1] for x0, y0, x1, y1 in ib]
        elif view == "blur":
            s = default_blur_sigma(image.shape) if sigma is None else float(sigma)
            blurred = (np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(s)))
                       if s > 0 else image)
            for x0, y0, x1, y1 in ib:
                v = blurred.copy()
                v[y0:y1, x0:x1] = image[y0:y1, x0:x1]
                out.append(v)
        else:
            raise InputError(f"unknown IPS view {view!r}; expected one of {VIEWS}")
    return out


@dataclass
class ProposalFeatures:
    """Unit region embeddings of one image's proposals, per model: ``(V, P, D)`` tensors.

    Computed once (:func:`embed_proposals`); :meth:`logits` scores any number of texts."""

    clips: list
    embeddings: list[torch.Tensor]
    proposals: Proposals
    image_shape: tuple[int, int]
    scorer: str
    timing: dict[str, float]
    member_embeddings: list[torch.Tensor] | None = None  # masked crops, (1, P, D) per model
    member_masks_source: str | None = None
    _text_cache: dict = field(default_factory=dict, repr=False)

    def logits(self, texts: list[str], scale: float | None = 100.0) -> np.ndarray:
        """``sum_models sum_views scale * cos(region, text)``, shape (P, T); ``scale`` None =
        each model's own logit scale."""
        total = None
        for clip, emb in zip(self.clips, self.embeddings):
            sc = float(getattr(clip, "logit_scale", 100.0)) if scale is None else float(scale)
            missing = [t for t in texts if (id(clip), t) not in self._text_cache]
            if missing:
                enc = clip.encode_texts(missing).to(emb.device, emb.dtype)
                for t, e in zip(missing, enc):
                    self._text_cache[(id(clip), t)] = e
            txt = torch.stack([self._text_cache[(id(clip), t)] for t in texts])
            lg = (sc * torch.einsum("vpd,td->pt", emb, txt)).double().cpu().numpy()
            total = lg if total is None else total + lg
        return total

    def to_cpu(self) -> ProposalFeatures:
        """These features with every tensor on the CPU (kept between calls; the text cache
        starts empty)."""
        cpu = [e.detach().cpu() for e in self.embeddings]
        members = (None if self.member_embeddings is None
                   else [e.detach().cpu() for e in self.member_embeddings])
        return ProposalFeatures(self.clips, cpu, self.proposals, self.image_shape, self.scorer,
                                dict(self.timing), members, self.member_masks_source)

    def for_membership(self, membership: str) -> ProposalFeatures:
        """The features the contrastive membership reads: these (``views``), the masked
        crops, or both (views and masked crop summed); texts are encoded once for all."""
        if membership == "views" or self.scorer != "ips":
            return self
        if self.member_embeddings is None:
            raise InputError(f"membership {membership!r} needs masked-crop embeddings: embed "
                             f"the proposals with the same GroundingOptions.membership")
        embs = (self.member_embeddings if membership == "masked-crop" else
                [torch.cat([v, m]) for v, m in zip(self.embeddings, self.member_embeddings)])
        return ProposalFeatures(self.clips, embs, self.proposals, self.image_shape,
                                self.scorer, self.timing, _text_cache=self._text_cache)


def embed_proposals(image, proposals: Proposals, scorer: str = "ips", models=None,
                    options: GroundingOptions | None = None) -> ProposalFeatures:
    """Region embeddings for every proposal: IPS views in one batched forward per model, or
    the masked-crop / MaskInversion embeddings."""
    opts = (options or GroundingOptions()).checked()
    if scorer not in SCORERS:
        raise InputError(f"unknown scorer {scorer!r}; choose from {SCORERS}")
    img = load_image(image)
    clips = resolve_models(models)
    timing = {"views_s": 0.0, "image_encode_s": 0.0}
    embs = []
    if scorer == "ips":
        t0 = time.perf_counter()
        views = ips_views(img, proposals.boxes, opts.views, opts.blur_sigma)
        timing["views_s"] = time.perf_counter() - t0
        n_views, n = len(opts.views), len(proposals)
        for clip in clips:
            t0 = time.perf_counter()
            e = clip.encode_images(views, batch=min(len(views), opts.max_batch))
            timing["image_encode_s"] += time.perf_counter() - t0
            embs.append(F.normalize(e.float(), dim=-1).reshape(n_views, n, -1))
        member, source = _membership_embeddings(clips, img, proposals, opts, timing)
    else:
        masks = proposals.box_masks(img.shape)
        for clip in clips:
            t0 = time.perf_counter()
            e = _mask_scorer_embeddings(clip, img, masks, scorer, opts)
            timing["image_encode_s"] += time.perf_counter() - t0
            embs.append(F.normalize(e.float(), dim=-1).reshape(1, len(proposals), -1))
        member, source = None, None
    return ProposalFeatures(clips, embs, proposals, tuple(img.shape[:2]), scorer, timing,
                            member, source)


def _membership_embeddings(clips, img: np.ndarray, proposals: Proposals,
                           opts: GroundingOptions, timing: dict) -> tuple[list | None, str | None]:
    """Masked-crop embeddings for the contrastive membership, when the options ask for them
    and some model declares word groups (otherwise the membership is never computed)."""
    from .reclip_contrast import membership_masks, word_groups

    if opts.effective_membership == "views" or not word_groups(clips):
        return None, None
    t0 = time.perf_counter()
    masks, source = membership_masks(img, proposals)
    timing["membership_masks_s"] = time.perf_counter() - t0
    out = []
    for clip in clips:
        t0 = time.perf_counter()
        e = _mask_scorer_embeddings(clip, img, masks, "masked-crop", opts)
        timing["image_encode_s"] += time.perf_counter() - t0
        out.append(F.normalize(e.float(), dim=-1).reshape(1, len(proposals), -1))
    return out, source


def _mask_scorer_embeddings(clip, image: np.ndarray, masks: np.ndarray, scorer: str,
                            opts: GroundingOptions) -> torch.Tensor:
    if scorer == "masked-crop":
        try:
            from ..region.baselines import region_embeddings
        except ImportError as exc:
            raise ModelUnavailableError(
                f"the masked-crop scorer needs regionlab.region.baselines ({exc})") from None
        emb = region_embeddings(clip, image, masks, "masked-crop")
    else:
        try:
            from ..region.maskinversion import invert
        except ImportError as exc:
            raise ModelUnavailableError(
                f"the maskinversion scorer needs regionlab.region.maskinversion ({exc})") from None
        emb = invert(clip, image, masks, **opts.mi_options).embeddings
    emb = getattr(emb, "embeddings", emb)
    return torch.as_tensor(np.asarray(emb) if not torch.is_tensor(emb) else emb).detach()


def within_margin(logits: np.ndarray, margin: float,
                  keep: np.ndarray | None = None) -> np.ndarray:
    """Logits (P, T) with every value above ``best - margin`` (per text, over the kept
    proposals) set to ``best - margin``: the proposals near the best are equally likely."""
    lg = np.array(logits, dtype=np.float64)
    if margin <= 0:
        return lg
    ref = lg if keep is None else np.where(np.asarray(keep)[:, None] if lg.ndim == 2 else keep,
                                          lg, -np.inf)
    return np.minimum(lg, ref.max(axis=0, keepdims=True) - margin)


def softmax_over_proposals(logits: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Softmax (temperature 1) over proposals of (P,) or (P, T) logits; dropped ones get 0."""
    lg = np.array(logits, dtype=np.float64)
    if keep is not None:
        lg[~keep] = -np.inf
    lg = lg - lg.max(axis=0, keepdims=True)
    e = np.exp(lg)
    return e / e.sum(axis=0, keepdims=True)


# ------------------------------------------------------------------------------ grounding


@dataclass
class GroundingResult:
    """The chosen proposal and everything needed to explain the choice.

    ``warnings``: what the model cannot know (words outside its vocabulary) or cannot find
    (no candidate fits a noun phrase of the parse: the head or an anchor), or doubts (the
    answer reads the head phrase as a one-word variant), for the user;
    ``indices``: the chosen proposals, best first (one, or N for "the two people on the left");
    ``probs``: final distribution over proposals; ``ips_probs``: IPS of the full expression;
    ``node_probs[e]``: ``{"text", "ips", "p"}`` per parse-tree entity (``p`` after its
    relations and superlatives); ``answer_reading``: how the chosen proposal reads the head
    noun phrase against its one-word variants, ``{"phrase", "deficit", "reads_as"}`` (None
    when the models declare no word groups or the head has no grouped word);
    ``candidate_readings``: the same for every proposal, ``[{"deficit", "reads_as"}]`` (or
    None); ``objects``: which automatic candidates the objectness filter kept (None: none
    left out); ``informed``: False when no word of the expression besides articles is one the
    models know ("the cup" for the bundled CLIP), so the highest score is arbitrary: a warning
    says so and the app chooses nothing; ``timing`` in seconds."""

    index: int
    box: list[float]
    mask: np.ndarray | None
    indices: list[int]
    probs: list[float]
    ips_probs: list[float]
    node_probs: dict[int, dict]
    tree: object | None
    used_tree: bool
    expression: str
    scorer: str
    models: list[str]
    proposals: Proposals
    timing: dict[str, float]
    notes: list[str] = field(default_factory=list)
    combine: str = "tree"
    temperature: float = 1.0
    margin: float = 0.0
    unknown_words: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    answer_reading: dict | None = None
    candidate_readings: list[dict] | None = None
    objects: list[bool] | None = None
    informed: bool = True

    def to_dict(self) -> dict:
        """JSON-serialisable (masks left out; boxes and probabilities included)."""
        return {
            "index": self.index,
            "box": self.box,
            "indices": self.indices,
            "boxes_chosen": [[round(float(v), 3) for v in self.proposals.boxes[i]]
                             for i in self.indices],
            "probs": self.probs,
            "tree": self.tree.to_dict() if self.tree is not None else None,
            "ips_probs": self.ips_probs,
            "node_probs": {str(k): v for k, v in self.node_probs.items()},
            "used_tree": self.used_tree,
            "combine": self.combine,
            "unknown_words": self.unknown_words,
            "informed": self.informed,
            "warnings": self.warnings,
            "answer_reading": self.answer_reading,
            "candidate_readings": self.candidate_readings,
            "objects": self.objects,
            "temperature": self.temperature,
            "margin": self.margin,
            "expression": self.expression,
            "scorer": self.scorer,
            "models": self.models,
            "boxes": [[round(float(v), 3) for v in b] for b in self.proposals.boxes],
            "proposal_source": self.proposals.source,
            "timing": {k: round(v, 6) for k, v in self.timing.items()},
            "notes": self.notes + list(self.proposals.notes),
        }


def unknown_words(clips, texts: list[str]) -> list[str]:
    """Words of ``texts`` that some CLIP of the ensemble cannot represent (each once)."""
    out: list[str] = []
    for clip in clips:
        fn = getattr(clip, "unknown_words", None)
        out += [w for w in (fn(texts) if fn else []) if w not in out]
    return out


ARTICLES = frozenset({"the", "a", "an"})


def uninformed(clips, text: str) -> bool:
    """No model of the ensemble knows any word of ``text`` besides articles: nothing in the
    expression can tell the candidates apart (:func:`~.vocabularies.blind_classes`)."""
    return bool(clips) and all(blind_classes(c, [text], ARTICLES) for c in clips)


def unknown_note(clips, words: list[str]) -> str:
    """The notice for words a model does not know (shown by the app, the CLI and the API)."""
    names = ", ".join(c.name for c in clips if getattr(c, "unknown_words", None)
                      and c.unknown_words(words))
    quoted = ", ".join(repr(w) for w in words)
    return (f"{names} does not know the word(s) {quoted}: each becomes the same unknown token, "
            f"so they cannot steer the answer (the bundled CLIP knows ShapesWorld's colours, "
            f"shapes and spatial words; load real CLIP weights for other words, see README "
            f"'Real weights')")


def _membership(features: ProposalFeatures, opts: GroundingOptions) -> str:
    """The membership view to read: the options', else the default when the proposals were
    embedded with masked crops, else the views."""
    if opts.membership is not None:
        return opts.membership
    return DEFAULT_MEMBERSHIP if features.member_embeddings is not None else "views"


def _contrast(features: ProposalFeatures, texts: list[str], scaled: np.ndarray,
              opts: GroundingOptions, keep: np.ndarray | None = None) -> dict[str, tuple]:
    """Lower each noun phrase's (columns 1..) logits in ``scaled`` by the contrastive
    membership penalty (:mod:`.reclip_contrast`); returns {text: (deficit per proposal, the
    variant each proposal prefers)}. Deficits are computed whenever the models declare word
    groups (they also say when nothing fits); the penalty only with a positive weight."""
    from .reclip_contrast import penalised, phrase_deficits, word_groups

    weight = opts.effective_contrast
    groups = word_groups(features.clips)
    out: dict[str, tuple] = {}
    if not groups:
        return out
    features = features.for_membership(_membership(features, opts))
    prompt = opts.prompt
    for k, text in enumerate(texts[1:], start=1):
        phrase = text[len(prompt):] if text.startswith(prompt) else text
        found = phrase_deficits(features, phrase, groups, prompt, opts.effective_logit_scale)
        if found is None:
            continue
        if weight > 0:
            scaled[:, k] = penalised(scaled[:, k], found[0], weight,
                                     opts.effective_contrast_tolerance,
                                     opts.effective_contrast_gap, keep)
        out[text] = found
    return out


#: A noun phrase "fits" a proposal unless the proposal prefers a phrase one known word away
#: by more than this many logits (chosen on validation scenes: ``python
#: benchmarks/grounding_no_match.py``; 3 when the membership read the IPS views alone, 1 with
#: the masked crop beside them: absent phrases caught 91 -> 99% at 64 px, 94 -> 99.6% at 448).
NO_MATCH_DEFICIT = 1.0


def no_match_warning(contrast: dict, text: str, phrase: str, keep=None) -> str | None:
    """A warning when no (kept) proposal fits the noun phrase ``phrase`` (prompted: ``text``,
    a key of ``contrast``): every one prefers a phrase one known word away by more than
    :data:`NO_MATCH_DEFICIT` logits."""
    if text not in contrast:
        return None
    d, preferred = contrast[text]
    d = np.where(keep, d, -np.inf) if keep is not None else d
    best = int(np.argmax(d))
    if d[best] >= -NO_MATCH_DEFICIT:
        return None
    return (f"no candidate looks like {phrase!r} to the model: it reads every candidate as "
            f"something else (the closest, candidate {best}, as {preferred[best]!r}), so the "
            f"answer is only the best of what there is")


#: The answer "reads as something else" when the chosen proposal prefers a phrase one known
#: word away to the head noun phrase by more than this many logits (chosen on validation
#: scenes: ``python benchmarks/grounding_doubt.py``; rule fixed before the run: the smallest
#: threshold with at most 2% warnings on right answers at 64 and 448 px). With the masked
#: crop in the membership, 0: right answers warned 1.3 / 0%, wrong ones 5 of 8 / 0 of 1;
#: OpenCV val 21% / 70% (with the IPS views alone it was 2: 1.5 / 0.7%, 5 of 12 / 3 of 4;
#: OpenCV 9.9% / 34%).
ANSWER_DOUBT_DEFICIT = 0.0


def candidate_readings(contrast: dict, text: str, phrase: str) -> list[dict] | None:
    """How every proposal reads the noun phrase ``phrase`` (prompted: ``text``): its deficit
    against the one-word variants and the phrase it prefers."""
    if text not in contrast:
        return None
    d, preferred = contrast[text]
    return [{"deficit": round(float(v), 4), "reads_as": phrase if v >= 0 else alt}
            for v, alt in zip(d, preferred)]


def answer_doubt_warning(reading: dict | None, index: int, readings: list[dict] | None = None,
                         keep=None) -> str | None:
    """A warning when the chosen proposal reads the head phrase as a variant by more than
    :data:`ANSWER_DOUBT_DEFICIT` logits; it names the (kept) candidate that reads the phrase
    best when that one does read as the phrase."""
    if reading is None or reading["deficit"] >= -ANSWER_DOUBT_DEFICIT:
        return None
    msg = (f"the answer, candidate {index}, looks more like {reading['reads_as']!r} than "
           f"{reading['phrase']!r} to the model (by {-reading['deficit']:.1f} logits): it "
           f"may not be what you asked for")
    if readings:
        d = np.array([r["deficit"] for r in readings], dtype=float)
        if keep is not None:
            d = np.where(keep, d, -np.inf)
        best = int(np.argmax(d))
        if best != index and d[best] >= 0:
            msg += (f"; candidate {best} reads as {reading['phrase']!r} "
                    f"(by {d[best]:.1f} logits)")
    return msg


def _rounded(p: np.ndarray) -> list[float]:
    return [float(round(float(v), 8)) for v in p]


def ground_features(features: ProposalFeatures, expression: str,
                    options: GroundingOptions | None = None, tree=None) -> GroundingResult:
    """Ground ``expression`` on already embedded proposals (embed once, query many)."""
    from .reclip_parser import parse_expression
    from .reclip_scoring import execute_tree

    opts = (options or GroundingOptions()).checked()
    t_start = time.perf_counter()
    text = check_text(expression, "expression")
    timing = dict(features.timing)
    notes: list[str] = []
    t0 = time.perf_counter()
    if opts.use_parser and tree is None:
        tree = parse_expression(text)
    timing["parse_s"] = time.perf_counter() - t0
    props = features.proposals
    n = len(props)
    h, w = features.image_shape
    keep = None
    if opts.area_prior:
        area = (props.boxes[:, 2] - props.boxes[:, 0]) * (props.boxes[:, 3] - props.boxes[:, 1])
        keep = area >= opts.min_area_fraction * h * w
        if not keep.any():
            notes.append(f"area prior ignored: every proposal is smaller than "
                         f"{opts.min_area_fraction:.0%} of the image")
            keep = None
        elif not keep.all():
            notes.append(f"area prior dropped {int((~keep).sum())} proposal(s) smaller than "
                         f"{opts.min_area_fraction:.0%} of the image")
    objects, object_notes = candidates_keep(features, opts.object_min_cos,
                                            opts.fragment_min_inside)
    if objects is not None:
        if keep is not None and not (keep & objects).any():
            object_notes = ["the objectness filter was ignored: it would leave out every "
                            "proposal the area prior kept"]
            objects = None
        else:
            keep = objects if keep is None else keep & objects
    notes += object_notes
    entities = [] if tree is None else [e for e in tree.entities if e.text and not e.generic]
    # column 0: the full expression (CLIP's own answer); then each distinct entity text
    texts = [opts.prompt + text.lower(),
             *dict.fromkeys(opts.prompt + e.text.lower() for e in entities)]
    unknown = unknown_words(features.clips, [text])
    warnings = [unknown_note(features.clips, unknown)] if unknown else []
    informed = not uninformed(features.clips, text)
    if not informed:
        warnings.append(f"no word of {text!r} is one the model knows: nothing in it can tell "
                        f"the candidates apart, so the top-scoring candidate is arbitrary "
                        f"(the app shows no answer; `informed` is false)")
    t0 = time.perf_counter()
    logits = features.logits(texts, opts.effective_logit_scale)
    timing["text_s"] = time.perf_counter() - t0
    scaled = within_margin(logits, opts.effective_margin, keep)
    scaled[:, 0] = logits[:, 0]  # the full expression's IPS is CLIP's own answer: no margin
    contrast = _contrast(features, texts, scaled, opts, keep)
    if (contrast and features.member_masks_source == BOX_SEGMENTATION
            and _membership(features, opts) != "views"):
        notes.append("the membership read each box's masked crop, with masks from the classical "
                     "box segmenter: pass masks as proposals to use your own")
    probs_by_text = softmax_over_proposals(scaled / opts.effective_temperature, keep)
    ips = probs_by_text[:, 0]
    used = bool(opts.use_parser and tree is not None and tree.uses_spatial)
    node_probs: dict[int, dict] = {}
    final = ips
    t0 = time.perf_counter()
    if tree is not None:
        node_ips = {e.id: probs_by_text[:, texts.index(opts.prompt + e.text.lower(), 1)]
                    for e in entities}
        if keep is not None:  # uniform (generic) entities still respect the prior
            for e in tree.entities:
                if e.id not in node_ips:
                    node_ips[e.id] = keep / keep.sum()
        dists, tree_notes = execute_tree(tree, node_ips, props.boxes, (h, w),
                                         include_self=opts.combine != "reference")
        notes += tree_notes
        for e in tree.entities:
            base = node_ips.get(e.id, np.full(n, 1.0 / n))
            node_probs[e.id] = {"text": e.text, "ips": _rounded(base),
                                "p": _rounded(dists[e.id])}
        if used and opts.combine == "tree":
            final = dists[0]
        elif used:
            prod = ips * dists[0]
            if prod.sum() > 0 and np.isfinite(prod.sum()):
                final = prod / prod.sum()
            else:
                final = dists[0]
                notes.append("IPS(full) * p_tree vanished: using p_tree alone")
    timing["tree_s"] = time.perf_counter() - t0
    missing = set()
    for phrase in dict.fromkeys(e.text for e in entities):  # the head first, then anchors
        miss = no_match_warning(contrast, opts.prompt + phrase.lower(), phrase, keep)
        if miss:
            warnings.append(miss)
            missing.add(phrase)
    index = int(np.argmax(final))  # the lowest index wins ties (duplicate boxes)
    head = tree.head if tree is not None and tree.head.text and not tree.head.generic else None
    readings = (None if head is None else
                candidate_readings(contrast, opts.prompt + head.text.lower(), head.text))
    reading = None if readings is None else {"phrase": head.text, **readings[index]}
    # no candidate fits the head at all: that warning already says more
    doubt = (None if head is None or head.text in missing
             else answer_doubt_warning(reading, index, readings, keep))
    if doubt:
        warnings.append(doubt)
    count = min(n, tree.head.count) if tree is not None and used else 1
    indices = [int(i) for i in np.argsort(-final, kind="stable")[:count]]
    if count > 1:
        notes.append(f"the expression asks for {count} objects: the {count} most likely")
    timing["total_s"] = (time.perf_counter() - t_start + timing.get("views_s", 0.0)
                         + timing.get("image_encode_s", 0.0))
    return GroundingResult(
        index=index,
        box=[float(v) for v in props.boxes[index]],
        mask=None if props.masks is None else props.masks[index],
        indices=indices,
        probs=_rounded(final),
        ips_probs=_rounded(ips),
        node_probs=node_probs,
        tree=tree,
        used_tree=used,
        expression=text,
        scorer=features.scorer,
        models=[c.name for c in features.clips],
        proposals=props,
        timing=timing,
        notes=notes,
        unknown_words=unknown,
        warnings=warnings,
        answer_reading=reading,
        candidate_readings=readings,
        objects=None if objects is None else [bool(v) for v in objects],
        informed=informed,
        combine=opts.combine,
        temperature=opts.effective_temperature,
        margin=opts.effective_margin,
    )


def ground(image, expression: str, proposals=None, scorer: str = "ips", models=None,
           options: GroundingOptions | None = None) -> GroundingResult:
    """Find the proposal that ``expression`` refers to (ReCLIP, METHODS.md 3).

    ``image``: PIL image, HxWx3 uint8 array or path; ``proposals``: see the module docstring
    (None: automatic proposals); ``scorer``: ips, masked-crop or maskinversion; ``models``:
    CLIP names or loaded CLIPs (an ensemble sums their logits; default: the default CLIP).
    """
    t0 = time.perf_counter()
    text = check_text(expression, "expression")
    opts = (options or GroundingOptions()).checked()
    if scorer not in SCORERS:
        raise InputError(f"unknown scorer {scorer!r}; choose from {SCORERS}")
    img = load_image(image)
    props = make_proposals(img, proposals)
    tree = None
    tp = time.perf_counter()
    if opts.use_parser:
        from .reclip_parser import parse_expression

        tree = parse_expression(text)
    parse_s = time.perf_counter() - tp
    features = embed_proposals(img, props, scorer, models, opts)
    result = ground_features(features, text, opts, tree=tree)
    result.timing["parse_s"] = parse_s
    result.timing["total_s"] = time.perf_counter() - t0
    return result


def box_iou(a, b) -> np.ndarray:
    """IoU matrix of xyxy boxes (torchvision.ops.box_iou), (len(a), len(b))."""
    from torchvision.ops import box_iou as tv_iou

    ta = torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(-1, 4))
    tb = torch.as_tensor(np.asarray(b, dtype=np.float64).reshape(-1, 4))
    return tv_iou(ta, tb).numpy()


def random_choice_accuracy(n_proposals: int) -> float:
    """Expected accuracy of a uniform random choice among ``n`` proposals (one correct)."""
    return 1.0 / n_proposals if n_proposals > 0 else math.nan
