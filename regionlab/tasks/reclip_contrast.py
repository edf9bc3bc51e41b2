"""Contrastive membership for grounding: does a proposal prefer its noun phrase to the
phrases one known word away? (ours; a deviation from ReCLIP, see README "Grounding")

ReCLIP scores a noun phrase text->proposals: a softmax of ``cos(region, text)`` over the
proposals. With a small CLIP the right objects of "the circle" come first but sometimes by
only a couple of logits, so the membership margin that keeps same-class objects together
also lets the nearest square in. Read the other way, image->text, as zero-shot
classification, the same CLIP separates them well: a square's crop prefers "the square"
to "the circle" by several logits. So each noun phrase is compared, on every proposal, with
its *variants*: the same phrase with one word swapped for another word of the same group
(a colour for a colour, a shape for a shape). The groups come from the model
(``LoadedCLIP.word_groups``: the bundled CLIP's colours and shapes; none for open_clip
models, where this step is off); the ``deficit`` ``d_i = l_i(phrase) - max_v l_i(variant)``
(logits in the grounding's own units) lowers the phrase's logit of proposal ``i`` by
``weight * max(0, -d_i - tolerance, (max_j d_j - d_i) - gap)``: a proposal may prefer a
variant by up to ``tolerance`` logits for free (on 64 px OpenCV-renderer validation scenes
the bundled CLIP reads 35% of true members better as a variant through the IPS views, 19%
through views + masked crop, while other objects prefer theirs by a median 3.7 / 7.2;
``benchmarks/contrast_deficits.py``), unless it reads the phrase more than ``gap`` logits
worse than the proposal that reads it best (a clear member elsewhere in the image makes a
doubtful one a non-member).

Which embeddings are read (``GroundingOptions.membership``, :data:`MEMBERSHIPS`): the scoring
views themselves (``views``: IPS crop + blur), each proposal's *masked crop* (the object alone
on a neutral background, the view the bundled CLIP classifies best; masks from the proposals
when they carry them, otherwise from the classical box segmenter, :func:`membership_masks`)
or both summed; chosen on validation scenes (README "Grounding").
"""

from __future__ import annotations

import re

import numpy as np

_WORD = re.compile(r"[a-z]+")

#: What the contrastive membership reads: the scoring views, the masked crop, or both.
MEMBERSHIPS = ("views", "masked-crop", "both")
#: where :func:`membership_masks` took the masks of box-only proposals from
BOX_SEGMENTATION = "classical box segmentation"


def word_groups(clips) -> tuple[tuple[str, ...], ...]:
    """Interchangeable word groups the models declare (union over the ensemble, in order)."""
    out: list[tuple[str, ...]] = []
    for clip in clips:
        for group in getattr(clip, "word_groups", ()) or ():
            g = tuple(w.lower() for w in group)
            if g not in out:
                out.append(g)
    return tuple(out)


def variants(text: str, groups) -> list[str]:
    """``text`` with one word replaced by each other word of its group (each occurrence of a
    grouped word in turn; other words are kept). Empty when no word of ``text`` is in a
    group."""
    lower = text.lower()
    spans = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(lower)]
    out: list[str] = []
    for start, end, word in spans:
        for group in groups:
            if word not in group:
                continue
            for other in group:
                if other != word:
                    v = lower[:start] + other + lower[end:]
                    if v not in out and v != lower:
                        out.append(v)
    return out


def deficits(logits_phrase: np.ndarray, logits_variants: np.ndarray) -> np.ndarray:
    """``l(phrase) - max_v l(variant)`` per proposal ((P,) and (P, V) -> (P,)); +inf with no
    variant."""
    lp = np.asarray(logits_phrase, dtype=np.float64)
    lv = np.asarray(logits_variants, dtype=np.float64)
    if lv.size == 0:
        return np.full(lp.shape, np.inf)
    return lp - lv.reshape(len(lp), -1).max(axis=1)


def phrase_deficits(features, phrase: str, groups, prompt: str = "a photo of ",
                    scale: float | None = None) -> tuple[np.ndarray, list[str]] | None:
    """Deficit of ``phrase`` on every proposal of ``features`` (a
    :class:`~regionlab.tasks.reclip.ProposalFeatures`) and the variant each proposal prefers,
    both prompted with ``prompt`` and scored at ``scale`` (None: each model's own); None when
    no word of the phrase is in a group."""
    alts = variants(phrase, groups)
    if not alts:
        return None
    lp = features.logits([prompt + phrase], scale)[:, 0]
    lv = features.logits([prompt + v for v in alts], scale)
    return deficits(lp, lv), [alts[j] for j in lv.argmax(axis=1)]


def penalised(logits_phrase: np.ndarray, deficit: np.ndarray, weight: float,
              tolerance: float = 0.0, gap: float = np.inf,
              keep: np.ndarray | None = None) -> np.ndarray:
    """The phrase's logits lowered by ``weight * max(0, -d_i - tolerance, (d_best - d_i) -
    gap)``: a proposal pays for preferring a variant by more than ``tolerance`` logits, or for
    reading the phrase more than ``gap`` logits worse than the best-reading (kept) proposal
    (``gap`` inf: only the first)."""
    d = np.asarray(deficit, dtype=np.float64)
    excess = np.maximum(0.0, -d - float(tolerance))
    if np.isfinite(gap):
        ref = d if keep is None else d[np.asarray(keep, dtype=bool)]
        best = ref.max() if ref.size else -np.inf
        if np.isfinite(best):
            excess = np.maximum(excess, best - d - float(gap))
    return np.asarray(logits_phrase, dtype=np.float64) - weight * excess


def membership_masks(image: np.ndarray, proposals) -> tuple[np.ndarray, str]:
    """One mask per proposal for the masked-crop membership view, and where they came from:
    the proposals' own masks, or (box-only proposals) the classical GrabCut box segmenter's
    mask inside each box -- the filled box where it finds nothing. The classical engine, not
    SAM: only models that declare word groups (the bundled ShapesWorld CLIP) use this, and it
    is deterministic, needs no weights and costs ~0.2 s per box at 448 px."""
    if proposals.masks is not None:
        return np.asarray(proposals.masks, bool), "proposal masks"
    from ..segment.interactive import ClassicalSegmenter

    boxes = proposals.box_masks(image.shape)
    seg = ClassicalSegmenter()
    seg.set_image(image)
    out = np.zeros_like(boxes)
    for i, b in enumerate(proposals.boxes):
        m = seg.predict(None, tuple(float(v) for v in b), multimask=False).masks[0] & boxes[i]
        out[i] = m if m.any() else boxes[i]
    return out, BOX_SEGMENTATION
