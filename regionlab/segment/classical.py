"""Classical offline segmentation: colour region growing, GrabCut and boundary unmixing.

Pure functions on RGB uint8 arrays (H, W, 3) and boolean masks; OpenCV does the heavy work.
Points are integer pixel indices ``(x, y)``; boxes ``(x0, y0, x1, y1)`` with exclusive ends.

- :func:`grow_candidates`: flood fills from the positive seeds at increasing colour tolerances;
  every region that stays stable over a range of tolerances (before it leaks into its
  surroundings) is a candidate, scored by that stability.
- :func:`refine_boundary`: re-decides pixels near the region's edge by linear colour unmixing
  between the region's colour and the local colour just outside it (a pixel is inside when it
  is at least half region colour), which recovers anti-aliased edges to sub-pixel accuracy.
- :func:`grabcut`: OpenCV GrabCut seeded by a box, clicks and/or a previous mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

TOLERANCES = (2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90)
LEAK_RATIO = 1.25  # area growth between consecutive tolerances that counts as a leak


@dataclass
class Candidate:
    mask: np.ndarray  # bool (H, W): the region at the end of its stable tolerance range
    score: float  # stability in [0, 1]
    tolerance: float
    core: np.ndarray  # the region at the start of that range


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def smooth_for_growing(image: np.ndarray) -> np.ndarray:
    """A 3x3 median filter: removes pixel noise, keeps edges."""
    return cv2.medianBlur(np.ascontiguousarray(image), 3)


def flood(image: np.ndarray, seed: tuple[int, int], tol: float) -> np.ndarray:
    """4-connected pixels whose colour lies within ``tol`` (per channel) of the seed's."""
    h, w = image.shape[:2]
    buf = np.zeros((h + 2, w + 2), np.uint8)
    flags = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    t = (float(tol),) * 3
    cv2.floodFill(image, buf, (int(seed[0]), int(seed[1])), (0, 0, 0), t, t, flags)
    return buf[1:-1, 1:-1].astype(bool)


def grow_candidates(
    image: np.ndarray,
    positives: list[tuple[int, int]],
    negatives: list[tuple[int, int]] = (),
    smoothed: np.ndarray | None = None,
    tolerances: tuple[float, ...] = TOLERANCES,
) -> list[Candidate]:
    """Stable regions grown from the positive seeds that contain none of the negative seeds,
    best (most stable) first. Each candidate is the union of the fills of every seed."""
    img = smooth_for_growing(image) if smoothed is None else smoothed
    h, w = img.shape[:2]
    masks, areas = [], []
    for t in tolerances:
        m = np.zeros((h, w), bool)
        for s in positives:
            if not m[s[1], s[0]]:
                m |= flood(img, s, t)
        if any(m[y, x] for x, y in negatives):
            break  # from here on the region swallows a negative click
        masks.append(m)
        areas.append(int(m.sum()))
    if not masks:  # even the smallest tolerance reaches a negative click
        m = np.zeros((h, w), bool)
        for x, y in positives:
            m[y, x] = True
        return [Candidate(m, 0.0, 0.0, m)]
    # split the tolerance ladder into plateaus separated by leaks
    plateaus, start = [], 0
    for i in range(1, len(masks)):
        if areas[i] > LEAK_RATIO * areas[i - 1] + 2:
            plateaus.append((start, i - 1))
            start = i
    plateaus.append((start, len(masks) - 1))
    total = h * w
    span = np.log(tolerances[len(masks) - 1] / tolerances[0]) or 1.0
    out = []
    for a, b in plateaus:
        stability = np.log(tolerances[b] / tolerances[a]) / span
        if b == len(masks) - 1 and b + 1 < len(tolerances):
            stability *= 0.5  # cut short by a negative click: the plateau's length is unknown
        frac = areas[b] / total
        # a region covering (nearly) the whole image is background, not an object
        penalty = 1.0 if frac < 0.5 else max(0.05, 2 * (1 - frac))
        out.append(Candidate(masks[b], float(np.clip(stability * penalty, 0, 1)),
                             float(tolerances[b]), masks[a]))
    out.sort(key=lambda c: -c.score)
    return out


def refine_boundary(image: np.ndarray, mask: np.ndarray, band: int = 2,
                    ring: int = 4) -> np.ndarray:
    """Re-decide the pixels within ``band`` px of the mask's edge by colour unmixing.

    Each band pixel p is modelled as a blend ``a * inside + (1 - a) * outside``: ``inside`` is
    the median colour of the mask's interior; ``outside`` is chosen among the pixels 2 to
    ``ring`` + 1 px outside the mask near p, as the sample that explains p best (smallest
    blend residual, nearer samples preferred). p joins the mask when a >= 0.5.
    """
    if not mask.any() or mask.all():
        return mask
    reach = band + ring + 1  # farthest useful outside sample from a band pixel
    ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    y0, y1 = max(0, ys[0] - reach - 1), min(mask.shape[0], ys[-1] + reach + 2)
    x0, x1 = max(0, xs[0] - reach - 1), min(mask.shape[1], xs[-1] + reach + 2)
    if (y1 - y0) * (x1 - x0) < mask.size:  # work inside the mask's box plus a margin
        out = mask.copy()
        out[y0:y1, x0:x1] = refine_boundary(image[y0:y1, x0:x1], mask[y0:y1, x0:x1], band, ring)
        return out
    img = image.astype(np.float32)
    m8 = mask.astype(np.uint8)
    core = cv2.erode(m8, _disk(1)).astype(bool)
    inside = np.median(img[core if core.sum() >= 4 else mask], axis=0)
    near = cv2.dilate(m8, _disk(1)).astype(bool)
    outer = cv2.dilate(m8, _disk(ring + 1)).astype(bool) & ~near
    edge = cv2.dilate(m8, _disk(band)).astype(bool) & ~cv2.erode(m8, _disk(band)).astype(bool)
    out = mask.copy()
    same = edge & (np.abs(img - inside).max(-1) <= 2.0)  # the inside colour itself: inside
    out[same] = True
    by, bx = np.nonzero(edge & ~same)
    if not outer.any() or not len(by):
        return out
    h, w = mask.shape
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    # a checkerboard of offsets: the outside ring is >= 3 px wide, so every direction keeps
    # samples at half the cost
    keep = (dy * dy + dx * dx <= reach * reach) & ((dy + dx) % 2 == 0)
    dy, dx = dy[keep], dx[keep]
    sy, sx = by[:, None] + dy[None], bx[:, None] + dx[None]  # (B, O) sample coordinates
    valid = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
    sy, sx = np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)
    valid &= outer[sy, sx]
    # only the valid (band pixel, outside sample) pairs, one colour channel at a time
    pb, po = np.nonzero(valid)
    samples = img[sy[pb, po], sx[pb, po]]  # (V, 3)
    pix = img[by[pb], bx[pb]]  # (V, 3)
    d = [inside[c] - samples[:, c] for c in range(3)]
    dd_v = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    dot = sum(((pix[:, c] - samples[:, c]) * d[c] for c in range(1, 3)),
              (pix[:, 0] - samples[:, 0]) * d[0])
    a_v = np.clip(dot / np.maximum(dd_v, 1e-6), 0.0, 1.0)
    res = [pix[:, c] - (samples[:, c] + a_v * d[c]) for c in range(3)]
    cost = np.full(valid.shape, np.inf)  # float64, like the distance term
    cost[pb, po] = (res[0] ** 2 + res[1] ** 2 + res[2] ** 2) + 4.0 * np.hypot(dy, dx)[po]
    a, dd = np.zeros(valid.shape, np.float32), np.zeros(valid.shape, np.float32)
    a[pb, po], dd[pb, po] = a_v, dd_v
    best = np.argmin(cost, axis=1)
    rows = np.arange(len(by))
    ok = valid[rows, best] & (dd[rows, best] > 9.0)  # too little contrast: keep as grown
    out[by[ok], bx[ok]] = a[rows, best][ok] >= 0.5
    return out


def keep_components(mask: np.ndarray, seeds: list[tuple[int, int]]) -> np.ndarray:
    """The connected components (8-connected) of ``mask`` that contain a seed; all of the mask
    if no seed lies inside it."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = {labels[y, x] for x, y in seeds if mask[y, x]}
    if not keep:
        return mask
    return np.isin(labels, list(keep))


def fill_small_holes(mask: np.ndarray, max_fraction: float = 0.02) -> np.ndarray:
    """Fill holes smaller than ``max_fraction`` of the mask's area (pixel noise)."""
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    h, w = mask.shape
    out = mask.copy()
    limit = max(1, max_fraction * mask.sum())
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        touches = x == 0 or y == 0 or x + bw == w or y + bh == h
        if not touches and area <= limit:
            out[labels == i] = True
    return out


def grabcut(
    image: np.ndarray,
    box: tuple[int, int, int, int] | None = None,
    positives: list[tuple[int, int]] = (),
    negatives: list[tuple[int, int]] = (),
    prior: np.ndarray | None = None,
    iterations: int = 5,
) -> np.ndarray:
    """GrabCut: outside the box is background; clicks are hard labels (3 px discs); a prior
    mask (e.g. the previous result) initialises probable foreground/background."""
    h, w = image.shape[:2]
    gc = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    if prior is not None:
        gc[prior] = cv2.GC_PR_FGD
    if box is not None:
        x0, y0, x1, y1 = box
        gc[:] = cv2.GC_BGD
        inner = gc[y0:y1, x0:x1]
        inner[:] = cv2.GC_PR_FGD if prior is None else np.where(
            prior[y0:y1, x0:x1], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
    for pts, val in ((positives, cv2.GC_FGD), (negatives, cv2.GC_BGD)):
        for x, y in pts:
            cv2.circle(gc, (int(x), int(y)), max(1, min(h, w) // 100), int(val), -1)
    fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    bg = (gc == cv2.GC_BGD) | (gc == cv2.GC_PR_BGD)
    if not fg.any() or not bg.any():
        return fg
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(image), gc, None, bgd, fgd, iterations,
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # too few samples of one class for the colour models
        return fg
    return (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """Per-pixel colour gradient magnitude (max over channels of the Sobel norm)."""
    img = image.astype(np.float32)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy).max(axis=-1)


def snap_seed(image: np.ndarray, grad: np.ndarray, x: int, y: int,
              radius: int = 2) -> tuple[int, int]:
    """Move a click to a nearby flat pixel of similar colour.

    A click on an anti-aliased edge pixel moves into the flat region whose colour is closest
    to the clicked pixel's (the side the pixel mostly belongs to); a click on a flat pixel
    stays. Cost: gradient + colour difference + one grey level per pixel of distance.
    """
    h, w = grad.shape
    x0, x1 = max(0, x - radius), min(w, x + radius + 1)
    y0, y1 = max(0, y - radius), min(h, y + radius + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    colour = np.abs(image[y0:y1, x0:x1].astype(np.float32) - image[y, x].astype(np.float32))
    cost = grad[y0:y1, x0:x1] + 2.0 * colour.max(-1) + np.hypot(xx - x, yy - y)
    k = int(np.argmin(cost))
    return int(xx.flat[k]), int(yy.flat[k])


def colour_separation(image: np.ndarray, mask: np.ndarray, ring: int = 4) -> float:
    """How different a mask's colours are from those just around it: the Bhattacharyya
    distance of their colour histograms (8 bins per channel), in [0, 1]."""
    if not mask.any() or mask.all():
        return 0.0
    m8 = mask.astype(np.uint8)
    around = cv2.dilate(m8, _disk(ring)) & (1 - m8)
    if not around.any():
        return 0.0
    hists = [cv2.calcHist([np.ascontiguousarray(image)], [0, 1, 2], part, [8, 8, 8],
                          [0, 256] * 3) for part in (m8, around)]
    return float(np.clip(cv2.compareHist(hists[0], hists[1], cv2.HISTCMP_BHATTACHARYYA), 0, 1))


def _finish(image: np.ndarray, mask: np.ndarray, positives, negatives) -> np.ndarray:
    """Boundary unmixing, then the components holding the positive clicks; the refinement is
    dropped if it would swallow a negative click."""
    out = keep_components(fill_small_holes(refine_boundary(image, mask)), positives)
    if any(out[y, x] for x, y in negatives) or not out.any():
        out = mask
    return out


def segment_prompts(
    image: np.ndarray,
    positives: list[tuple[int, int]],
    negatives: list[tuple[int, int]] = (),
    box: tuple[int, int, int, int] | None = None,
    prior: np.ndarray | None = None,
    grad: np.ndarray | None = None,
    max_candidates: int = 3,
) -> list[tuple[np.ndarray, float]]:
    """Candidate masks (best first, with heuristic scores in [0, 1]) for clicks and/or a box.

    - clicks only: colour region growing from the (snapped) positive clicks, stopped before
      any negative click; each stable region is a candidate scored by its stability.
    - a box, or a previous mask (``prior``): GrabCut seeded by them and by the clicks, scored
      by the colour separation of the result; region-growing candidates (clipped to the box)
      are added when there are positive clicks.
    Every candidate is refined by boundary unmixing.
    """
    h, w = image.shape[:2]
    grad = gradient_magnitude(image) if grad is None else grad
    pos = [snap_seed(image, grad, x, y) for x, y in positives]
    cands: list[tuple[np.ndarray, float]] = []
    if box is not None or prior is not None:
        m = grabcut(image, box, pos, negatives, prior)
        if pos:
            m = keep_components(m, pos)
        elif m.any():
            n, lab, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
            m = lab == (1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))) if n > 1 else m
        m = _finish(image, m, pos, negatives)
        if box is not None:
            x0, y0, x1, y1 = box
            clip = np.zeros((h, w), bool)
            clip[y0:y1, x0:x1] = True
            m &= clip
        cands.append((m, colour_separation(image, m)))
    if pos:
        clip = None
        if box is not None:
            clip = np.zeros((h, w), bool)
            clip[box[1]:box[3], box[0]:box[2]] = True
        for c in grow_candidates(image, pos, list(negatives))[:max_candidates]:
            m = _finish(image, c.mask, pos, negatives)
            if clip is not None:
                m &= clip
            if m.any():
                cands.append((m, c.score))
    cands.sort(key=lambda t: -t[1])
    return cands[:max_candidates] if cands else [(np.zeros((h, w), bool), 0.0)]


def classical_proposals(
    image: np.ndarray,
    points_per_side: int = 16,
    min_area: int = 4,
    max_area_fraction: float = 0.9,
    max_per_seed: int = 2,
    min_score: float = 0.0,
) -> list[tuple[np.ndarray, float]]:
    """Class-agnostic region proposals: region growing from a grid of seeds (each seed not
    yet covered by a found region), boundary-refined; ``(mask, score)`` pairs, unsorted.

    Score: tolerance stability of the region, times a penalty for touching the image border
    (objects rarely fill the frame's edge; backgrounds do). Regions whose score cannot reach
    ``min_score`` are left out before their boundary refinement (the costly step), by an upper
    bound on the refined score (:func:`_score_bound`): the result equals refining every region
    and then dropping those scoring below ``min_score``.
    """
    h, w = image.shape[:2]
    grad = gradient_magnitude(image)
    covered = np.zeros((h, w), bool)
    seen: set[bytes] = set()
    out: list[tuple[np.ndarray, float]] = []
    n = max(1, int(points_per_side))
    xs = ((np.arange(n) + 0.5) * w / n).astype(int)
    ys = ((np.arange(n) + 0.5) * h / n).astype(int)
    border = np.zeros((h, w), bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    n_border = border.sum()
    for y in ys:
        for x in xs:
            sx, sy = snap_seed(image, grad, int(x), int(y))
            if covered[sy, sx]:
                continue
            cands = grow_candidates(image, [(sx, sy)])
            # the seed's tightest region marks the seeds it makes redundant
            covered |= min(cands, key=lambda c: c.tolerance).core
            for c in cands[:max_per_seed]:
                raw_area = int(c.mask.sum())
                if raw_area > 1.1 * max_area_fraction * h * w or raw_area < min_area / 2:
                    continue
                key = np.packbits(c.mask).tobytes()
                if key in seen:  # another seed already grew exactly this region
                    continue
                seen.add(key)
                if min_score > 0 and _score_bound(c, (sx, sy), border, n_border) < min_score:
                    continue
                m = _finish(image, c.mask, [(sx, sy)], [])
                area = int(m.sum())
                if area < min_area or area > max_area_fraction * h * w:
                    continue
                score = _border_score(c.score, (m & border).sum() / n_border)
                if score >= min_score:
                    out.append((m, score))
    return out


def _border_score(stability: float, touch: float) -> float:
    """A region's proposal score: its stability, penalised by the share of the image border it
    touches (a quarter of the border or more: 0)."""
    return float(stability * (1.0 - min(1.0, 4 * touch)) ** 2)


def _score_bound(c: Candidate, seed: tuple[int, int], border: np.ndarray,
                 n_border: int) -> float:
    """An upper bound on the score of ``c`` after :func:`_finish`, without refining it.

    The refinement re-decides only pixels within 2 px of the region's edge, so the refined
    region keeps the region eroded by that band; the part of it connected to the seed stays in
    the seed's component, and its border touch is a lower bound on the refined one's.
    """
    if c.score <= 0:
        return 0.0
    core = cv2.erode(c.mask.astype(np.uint8), _disk(2))
    x, y = seed
    if not core[y, x]:
        return c.score
    n, labels = cv2.connectedComponents(core, connectivity=8)
    touch = (border & (labels == labels[y, x])).sum() / n_border
    return _border_score(c.score, touch)
