"""Interactive segmentation: clicks and boxes -> masks, one image embedding per session.

>>> seg = make_segmenter("classical")          # or "sam-vit-b", or None for the default
>>> seg.set_image(image)                       # per-image work, once
>>> r = seg.predict(points=[(30, 40, 1)])      # every further click reuses it
>>> r = seg.predict(points=[(30, 40, 1), (5, 5, 0)], prev_logits=r.logits[0])
>>> r.mask, r.score, r.masks, r.scores         # best first

Conventions (both engines):
- Images: anything :func:`regionlab.inputs.load_image` accepts (grey, RGBA, 16-bit ... are
  converted to RGB); no downscaling at the boundary: SAM resizes the longest side to its input
  size (1024) itself and the classical engine works at most at ``WORK_SIDE`` px; masks always
  come back at the image's original size.
- Points: ``(x, y)`` or ``(x, y, label)`` in pixels of the original image, x to the right, y
  down, as pixel indices (0 <= x < W, 0 <= y < H; floats allowed); label 1 = foreground
  (default), 0 = background. Points outside the image are an error.
- Box: ``(x0, y0, x1, y1)`` in pixels with exclusive ends (``mask[y0:y1, x0:x1]``); clipped to
  the image; a box with x1 <= x0 or y1 <= y0, or none of it inside the image, is an error.
- At least one foreground point or a box is required.
- Results: masks sorted by score, best first; ``logits[i]`` is the low-resolution logit map of
  ``masks[i]``: pass it back as ``prev_logits`` to refine with further clicks.

Each :class:`Segmenter` holds the state of ONE image for ONE user (keep it in the session);
the model behind it is shared and read-only.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from ..config import LIMITS
from ..errors import InputError, ModelUnavailableError
from ..inputs import load_image

log = logging.getLogger("regionlab.segment")

CLASSICAL = "classical"
WORK_SIDE = 512  # the classical engine works at most at this longest side
MAX_POINTS = LIMITS.max_points  # clicks per prediction (regionlab.config)
SAM_PREFERENCE = ("sam", "sam-vit-b", "sam-vit-l", "sam-vit-h")
# images are not downscaled at the boundary (masks come back at the original size); the pixel
# limit against decompression bombs still applies
_NO_DOWNSCALE = replace(LIMITS, max_side=LIMITS.max_image_pixels)


@dataclass
class SegmentResult:
    """Candidate masks for one prompt, best first."""

    masks: np.ndarray  # bool (K, H, W) at the image's original size
    scores: np.ndarray  # float (K,): SAM's predicted IoU, or the classical heuristic score
    logits: np.ndarray  # float32 (K, h, w) low-res logits (> 0 inside), for prev_logits
    segmenter: str
    fallback: bool  # True when produced by the classical (non-SAM) engine
    notice: str | None = None  # why this engine was used instead of SAM, if it was a fallback

    @property
    def mask(self) -> np.ndarray:
        return self.masks[0]

    @property
    def score(self) -> float:
        return float(self.scores[0])

    @property
    def low_res_logits(self) -> np.ndarray:
        """The best candidate's low-res logits, ready to pass back as ``prev_logits``."""
        return self.logits[0]

    @property
    def backend(self) -> str:
        """What produced the masks, for display: the SAM name, or the fallback label."""
        if not self.fallback:
            return self.segmenter
        return "classical fallback" + (" (no SAM checkpoint)" if self.notice else "")

    def pick(self, index: int) -> SegmentResult:
        """Only candidate ``index`` (the user's choice among the multimask outputs)."""
        if not 0 <= index < len(self.masks):
            raise InputError(f"candidate {index} does not exist; there are {len(self.masks)}")
        sl = slice(index, index + 1)
        return SegmentResult(self.masks[sl], self.scores[sl], self.logits[sl], self.segmenter,
                             self.fallback, self.notice)


# ---------------------------------------------------------------- prompt validation


def check_points(points, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Points -> (coords float (N, 2) as x, y; labels int (N,)). ``size`` is (H, W)."""
    if points is None:
        return np.zeros((0, 2)), np.zeros((0,), int)
    if isinstance(points, np.ndarray):
        points = points.tolist()
    points = list(points)
    if len(points) > MAX_POINTS:
        raise InputError(f"{len(points)} points given; the limit is {MAX_POINTS}")
    h, w = size
    coords, labels = [], []
    for i, p in enumerate(points):
        p = list(p) if isinstance(p, (list, tuple, np.ndarray)) else [p]
        if len(p) not in (2, 3):
            raise InputError(f"point {i} must be (x, y) or (x, y, label), got {p!r}")
        try:
            x, y = float(p[0]), float(p[1])
        except (TypeError, ValueError):
            raise InputError(f"point {i} has non-numeric coordinates {p!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InputError(f"point {i} has non-finite coordinates {p!r}")
        if not (0 <= x < w and 0 <= y < h):
            raise InputError(
                f"point {i} ({x:g}, {y:g}) lies outside the {w}x{h} image "
                f"(x must be in [0, {w}), y in [0, {h}))")
        label = 1 if len(p) == 2 else p[2]
        if isinstance(label, str):
            label = {"1": 1, "0": 0, "pos": 1, "neg": 0, "+": 1, "-": 0}.get(label.strip(), label)
        if label not in (0, 1):
            raise InputError(f"point {i} label must be 1 (foreground) or 0 (background), "
                             f"got {label!r}")
        coords.append((x, y))
        labels.append(int(label))
    return np.asarray(coords, float).reshape(-1, 2), np.asarray(labels, int)


def check_box(box, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """A box (x0, y0, x1, y1), exclusive ends -> the box clipped to the image, or None."""
    if box is None:
        return None
    try:
        vals = [float(v) for v in (box.tolist() if isinstance(box, np.ndarray) else box)]
    except (TypeError, ValueError):
        raise InputError(f"box must be 4 numbers x0, y0, x1, y1, got {box!r}") from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise InputError(f"box must be 4 finite numbers x0, y0, x1, y1, got {box!r}")
    x0, y0, x1, y1 = vals
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"degenerate box {tuple(vals)}: need x1 > x0 and y1 > y0")
    h, w = size
    cx0, cy0, cx1, cy1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
    if cx1 - cx0 < 1 or cy1 - cy0 < 1:
        raise InputError(f"box {tuple(vals)} lies outside the {w}x{h} image")
    return cx0, cy0, cx1, cy1


# ---------------------------------------------------------------- engines


class Segmenter:
    """Per-session interactive segmenter: ``set_image`` once, ``predict`` for every prompt."""

    name: str = ""
    fallback: bool = False
    notice: str | None = None  # set when this engine was chosen instead of the one asked for

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._size: tuple[int, int] | None = None
        self.embed_count = 0  # how many times per-image work ran (tests, benchmarks)

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(H, W) of the current image, or None."""
        return self._size

    @property
    def logits_shape(self) -> tuple[int, int]:
        raise NotImplementedError

    def set_image(self, image) -> None:
        """Run the per-image work (SAM: the image encoder) for ``image``."""
        rgb = load_image(image, _NO_DOWNSCALE)
        with self._lock:
            self._embed(rgb)
            self._size = rgb.shape[:2]
            self.embed_count += 1

    def predict(self, points=None, box=None, multimask: bool = True,
                prev_logits=None) -> SegmentResult:
        """Masks for clicks and/or a box on the current image (see the module docstring)."""
        if self._size is None:
            raise InputError("no image set: call set_image(image) before predict")
        coords, labels = check_points(points, self._size)
        clipped = check_box(box, self._size)
        if clipped is None and not (labels == 1).any():
            raise InputError("give at least one foreground point (label 1) or a box"
                             if len(labels) else "no prompt: give at least one point or a box")
        prior = None
        if prev_logits is not None:
            prior = np.asarray(prev_logits, dtype=np.float32)
            if prior.ndim == 3 and prior.shape[0] == 1:
                prior = prior[0]
            if prior.shape != self.logits_shape:
                raise InputError(f"prev_logits must have shape {self.logits_shape} (a "
                                 f"SegmentResult.logits[i] of this image), got {prior.shape}")
            if not np.isfinite(prior).all():
                raise InputError("prev_logits contains NaN or infinite values")
        with self._lock:
            masks, scores, logits = self._predict(coords, labels, clipped, bool(multimask), prior)
        order = np.argsort(-scores, kind="stable")
        return SegmentResult(masks[order], scores[order].astype(np.float32),
                             logits[order].astype(np.float32), self.name, self.fallback,
                             self.notice)

    def _embed(self, rgb: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, coords, labels, box, multimask, prior):
        raise NotImplementedError


class SamSegmenter(Segmenter):
    """SAM through ``segment_anything.SamPredictor``: one predictor (and so one image embedding)
    per segmenter; the model is shared and read-only."""

    fallback = False

    def __init__(self, loaded) -> None:
        super().__init__()
        from segment_anything import SamPredictor

        self.loaded = loaded
        self.name = loaded.name
        self._predictor = SamPredictor(loaded.model)
        self._scale = 1.0

    @property
    def logits_shape(self) -> tuple[int, int]:
        side = 4 * self.loaded.model.prompt_encoder.image_embedding_size[0]
        return side, side

    def _embed(self, rgb: np.ndarray) -> None:
        # SAM sees the image at 1024 px anyway; above LIMITS.max_side a smaller copy is
        # embedded so that its full-size float mask upsampling stays small, and the boolean
        # masks are enlarged to the original size afterwards
        h, w = rgb.shape[:2]
        self._scale = min(1.0, LIMITS.max_side / max(h, w))
        if self._scale < 1.0:
            size = (max(1, round(w * self._scale)), max(1, round(h * self._scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        with torch.inference_mode():
            self._predictor.set_image(rgb, image_format="RGB")

    def _predict(self, coords, labels, box, multimask, prior):
        h, w = self._size
        wh, ww = self._predictor.original_size
        sx, sy = ww / w, wh / h
        sam_box = None
        if box is not None:  # SAM's corners are inclusive pixel indices
            x0, y0, x1, y1 = box
            sam_box = np.array([x0 * sx, y0 * sy, max(x0, x1 - 1) * sx, max(y0, y1 - 1) * sy])
        with torch.inference_mode():
            masks, scores, logits = self._predictor.predict(
                point_coords=coords * [sx, sy] if len(coords) else None,
                point_labels=labels if len(coords) else None,
                box=sam_box, mask_input=None if prior is None else prior[None],
                multimask_output=multimask,
            )
        masks = masks.astype(bool)
        if (wh, ww) != (h, w):
            masks = np.stack([cv2.resize(m.astype(np.uint8) * 255, (w, h),
                                         interpolation=cv2.INTER_LINEAR) > 127 for m in masks])
        return masks, np.asarray(scores, np.float32), logits


class ClassicalSegmenter(Segmenter):
    """The offline fallback: colour region growing from clicks, GrabCut for boxes and
    refinements, both followed by boundary unmixing (``regionlab.segment.classical``)."""

    name = CLASSICAL
    fallback = True

    def __init__(self, work_side: int = WORK_SIDE) -> None:
        super().__init__()
        self.work_side = int(work_side)
        self._work: np.ndarray | None = None
        self._grad: np.ndarray | None = None

    @property
    def logits_shape(self) -> tuple[int, int]:
        if self._work is None:
            raise InputError("no image set: call set_image(image) before predict")
        return self._work.shape[:2]

    def _embed(self, rgb: np.ndarray) -> None:
        from .classical import gradient_magnitude

        h, w = rgb.shape[:2]
        scale = min(1.0, self.work_side / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        self._work = np.ascontiguousarray(rgb)
        self._grad = gradient_magnitude(self._work)

    def _predict(self, coords, labels, box, multimask, prior):
        from .classical import segment_prompts

        h, w = self._size
        wh, ww = self._work.shape[:2]
        sx, sy = ww / w, wh / h

        def to_work(x: float, y: float) -> tuple[int, int]:
            return min(ww - 1, int(x * sx)), min(wh - 1, int(y * sy))

        pos = [to_work(x, y) for (x, y), lab in zip(coords, labels) if lab == 1]
        neg = [to_work(x, y) for (x, y), lab in zip(coords, labels) if lab == 0]
        wbox = None
        if box is not None:
            x0, y0, x1, y1 = box
            wbox = (int(math.floor(x0 * sx)), int(math.floor(y0 * sy)),
                    max(int(math.floor(x0 * sx)) + 1, int(math.ceil(x1 * sx))),
                    max(int(math.floor(y0 * sy)) + 1, int(math.ceil(y1 * sy))))
        cands = segment_prompts(self._work, pos, neg, wbox, None if prior is None else prior > 0,
                                self._grad, max_candidates=3 if multimask else 1)
        logits = np.stack([np.where(m, 4.0, -4.0).astype(np.float32) for m, _ in cands])
        scores = np.array([s for _, s in cands], np.float32)
        if (wh, ww) == (h, w):
            masks = logits > 0
        else:  # smooth upsampling of the working-resolution masks
            masks = np.stack([cv2.resize(lg, (w, h), interpolation=cv2.INTER_LINEAR) > 0
                              for lg in logits])
        return masks, scores, logits


# ---------------------------------------------------------------- choosing an engine


def sam_names(include_testing: bool = False) -> list[str]:
    """Registered SAM model names (the tiny random test SAM only if asked)."""
    from ..models import get_spec, list_model_names

    return [n for n in list_model_names("sam")
            if include_testing or not get_spec(n).extra.get("testing")]


def list_segmenters() -> list[tuple[str, bool, str]]:
    """(name, available here, reason) for every user-facing engine, the fallback last."""
    from ..models import get_spec

    out = []
    for n in sam_names():
        ok, why = get_spec(n, "sam").available()
        out.append((n, ok, why))
    out.append((CLASSICAL, True, "classical offline fallback (region growing + GrabCut)"))
    return out


def default_segmenter_name() -> tuple[str, str | None]:
    """(name, notice): ``REGIONLAB_SAM`` if set, else the first SAM with weights here, else the
    classical fallback with a notice saying why."""
    requested = os.environ.get("REGIONLAB_SAM")
    if requested:
        return requested, None
    from ..models import get_spec

    reasons = {}
    for n in SAM_PREFERENCE:
        ok, why = get_spec(n, "sam").available()
        if ok:
            return n, None
        reasons[n] = why
    first = "sam-vit-b" if "sam-vit-b" in reasons else next(iter(reasons), "")
    notice = (f"no SAM checkpoint found ({first}: {reasons.get(first, 'not registered')}; "
              f"likewise for {', '.join(n for n in reasons if n != first)}): using the "
              "classical fallback segmenter. To use SAM, set REGIONLAB_SAM_VIT_B="
              "/path/to/sam_vit_b_01ec64.pth.")
    return CLASSICAL, notice


def make_segmenter(name: str | None = None, device=None) -> Segmenter:
    """A new per-session segmenter. ``name``: a SAM model name (``sam-vit-b``, ``sam-vit-l``,
    ``sam-vit-h``, ``ARCH@checkpoint``), ``"classical"``, or None/``"auto"`` for the default
    (SAM when weights are present, else the classical fallback with ``.notice`` set).

    An explicitly named SAM that cannot be loaded raises ModelUnavailableError (no silent
    substitution)."""
    notice = None
    if name is None or name == "auto":
        name, notice = default_segmenter_name()
        if notice:
            log.warning(notice)
    if name == CLASSICAL:
        seg: Segmenter = ClassicalSegmenter()
    else:
        from ..models import load

        try:
            seg = SamSegmenter(load(name, "sam", device))
        except ModelUnavailableError:
            raise
        except ValueError as exc:  # e.g. a CLIP name given where a SAM is expected
            raise ModelUnavailableError(str(exc)) from None
    seg.notice = notice
    return seg


def exclude_only(previous: np.ndarray, mask: np.ndarray,
                 logits: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The result of an Exclude (negative) click on a region, clipped so that it never grows:
    ``mask & previous``, and the low-res ``logits`` (to pass as ``prev_logits`` next) made
    negative wherever the clipped mask is off, so the next click does not bring the cut-off
    pixels back.

    Segmenters re-predict the whole region for every click; with one more negative point the
    classical engine's GrabCut refinement (seeded by the previous mask) sometimes grows it
    (ShapesWorld scene 24's purple triangle 10731 -> 10900 px, the coffee photo's saucer
    16045 -> 73642 px) and SAM may too. ``logits`` cover the image from its top-left corner
    at a uniform scale (SAM: the padded square, classical: the working copy)."""
    previous = np.asarray(previous, bool)
    mask = np.asarray(mask, bool)
    if previous.shape != mask.shape:
        raise InputError(f"mask shapes differ: {mask.shape} vs the previous {previous.shape}")
    out = mask & previous
    if logits is None:
        return out, None
    lg = np.asarray(logits, np.float32)
    h, w = out.shape
    lh, lw = lg.shape[-2:]
    s = max(lh, lw) / max(h, w)
    ch, cw = min(lh, max(1, round(h * s))), min(lw, max(1, round(w * s)))
    keep = np.zeros((lh, lw), bool)
    keep[:ch, :cw] = cv2.resize(out.astype(np.float32), (cw, ch),
                                interpolation=cv2.INTER_AREA) >= 0.5
    cut = np.where(keep, lg, np.minimum(lg, -4.0))  # -4: the classical engine's 'outside'
    return out, cut.astype(np.float32)


def segment(image, points=None, box=None, *, segmenter: str | None = None,
            multimask: bool = False, device=None) -> SegmentResult:
    """One-shot segmentation (CLI, scripts): a fresh segmenter, one image, one prompt."""
    seg = make_segmenter(segmenter, device)
    seg.set_image(image)
    return seg.predict(points, box, multimask)
