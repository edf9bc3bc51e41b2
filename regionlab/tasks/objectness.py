"""Objectness of automatic proposals: does a region look like any object the model knows?
(ours; ReCLIP grounds among detector boxes and OVSeg among MaskFormer masks, which are objects
by construction)

Automatic proposals from the classical engine also return background tiles, shading blobs,
merges of an object with its background and object fragments; on scenes from another renderer
those get chosen ("the star at the bottom" picked a background strip) or labelled. With a CLIP
that declares its vocabulary (``LoadedCLIP.word_groups``: the bundled CLIP's colours and
shapes, whose combinations are its classes) and a tuned ``object_min_cos`` in its defaults,
each region's masked crop is compared with a prompt for every class; a region whose best
cosine stays below the threshold reads as no object the model knows and is left out (of
grounding's choice; of labelling). Chosen on validation scenes, one threshold each
(benchmarks/results/grounding_objectness/rule.md, labelling_rule.md). For grounding, a kept
candidate lying almost entirely inside a larger kept one (a shaded half of a triangle, a stripe
of a hatched cross) is then left out as a fragment (:func:`fragments`; fragment_rule.md).
Real CLIPs have no closed vocabulary (and real scenes have parts: "the wheel"): nothing is
filtered. Only automatic proposals are filtered: the user's own regions and boxes are what the
user asked about.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

#: the prompt each known class is read with
CLASS_PROMPT = "a photo of a {}."
#: a threshold at or below this turns the filter off (cosines are never below -1)
OFF = -1.0


def known_classes(clip) -> list[str]:
    """The classes a model declares: every combination of its word groups ("red star")."""
    groups = getattr(clip, "word_groups", ()) or ()
    return [" ".join(words) for words in itertools.product(*groups)] if groups else []


#: the models' default keys: grounding's candidates and labelling's proposals (own crops,
#: own rules), and grounding's fragment test (fragment_rule.md)
GROUNDING, LABELLING = "object_min_cos", "label_object_min_cos"
FRAGMENTS = "fragment_min_inside"


def model_threshold(clip, key: str = GROUNDING) -> float | None:
    """The model's tuned threshold ``key`` (None: it has no known vocabulary or none)."""
    thr = (getattr(clip, "defaults", None) or {}).get(key)
    return None if thr is None or not known_classes(clip) else float(thr)


def best_class_cosine(clip, embeddings: torch.Tensor) -> np.ndarray | None:
    """Per region embedding (P, D), the highest cosine with the model's known classes; None
    when the model declares none."""
    classes = known_classes(clip)
    if not classes:
        return None
    txt = clip.encode_texts([CLASS_PROMPT.format(c) for c in classes])
    emb = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    return (emb @ txt.to(emb.device).float().T).amax(1).cpu().double().numpy()


def threshold_for(clip, threshold: float | None, key: str = GROUNDING) -> float | None:
    """The threshold to apply: ``threshold`` (``<= OFF``: none) or the model's default."""
    if threshold is not None:
        return None if threshold <= OFF else float(threshold)
    return model_threshold(clip, key)


def object_keep(clip, emb: torch.Tensor, threshold: float | None = None,
                key: str = GROUNDING, what: str = "automatic proposal", numbered: bool = False
                ) -> tuple[np.ndarray | None, str]:
    """Which regions (masked-crop embeddings ``emb``, (P, D)) read as an object the model
    knows, and a notice for the user (naming the left-out indices when ``numbered``);
    ``(None, ...)`` when nothing is left out: no threshold (``threshold`` None = the model's
    default ``key``; ``<= OFF`` = off), all pass, or none pass (then all are kept, and the
    notice says so)."""
    thr = threshold_for(clip, threshold, key)
    best = None if thr is None else best_class_cosine(clip, emb)
    if best is None:
        return None, ""
    keep = best >= thr
    if keep.all():
        return None, ""
    if not keep.any():
        return None, (f"no {what} reads as an object the model knows (best class cosine of "
                      f"every masked crop below {thr:.2f}): all kept")
    which = (" (" + ", ".join(str(int(i)) for i in np.flatnonzero(~keep)) + ")") if numbered \
        else ""
    return keep, (f"{int((~keep).sum())} {what}(s){which} left out: their masked crops "
                  f"read as no object the model knows (background or fragments; best class "
                  f"cosine below {thr:.2f})")


def fragments(masks: np.ndarray, keep: np.ndarray, min_inside: float) -> np.ndarray:
    """Which kept masks (P, H, W) lie at least ``min_inside`` inside a larger kept mask
    (counted as :func:`regionlab.segment.proposals.mask_overlaps` does)."""
    from ..segment.proposals import mask_overlaps

    inter, area = mask_overlaps(masks)
    inside = inter / area.clamp(min=1)[:, None]  # [i, j]: share of i inside j
    larger = area[None, :] > area[:, None]
    k = torch.as_tensor(np.asarray(keep, bool))
    hit = (inside >= min_inside) & larger & k[None, :] & k[:, None]
    return hit.any(1).numpy()


def candidates_keep(features, threshold: float | None = None, min_inside: float | None = None
                    ) -> tuple[np.ndarray | None, list[str]]:
    """Grounding: :func:`object_keep` for automatic candidates (their masked crops, read by
    the first model of the ensemble with a known vocabulary), then, with ``min_inside`` (None
    = the model's default; ``<= 0`` off), the kept candidates that lie that much inside a
    larger kept one (fragments) left out too; and the notes to show. Memoised in the
    features' cache: the next expression on the same image reads it."""
    if features.proposals.source != "automatic" or features.member_embeddings is None:
        return None, []
    key = ("candidates_keep", threshold, min_inside)  # once per image, not per expression
    if key not in features._text_cache:
        features._text_cache[key] = _candidates_keep(features, threshold, min_inside)
    keep, notes = features._text_cache[key]
    return (None if keep is None else keep.copy()), list(notes)


def _candidates_keep(features, threshold, min_inside):
    """:func:`candidates_keep` without its per-features memo."""
    found = next(((c, e) for c, e in zip(features.clips, features.member_embeddings)
                  if known_classes(c)), None)
    if found is None:
        return None, []
    keep, note = object_keep(found[0], found[1][0], threshold, GROUNDING,
                             "automatic candidate", numbered=True)
    notes = [note] if note else []
    inside = (min_inside if min_inside is not None
              else (getattr(found[0], "defaults", None) or {}).get(FRAGMENTS))
    masks = features.proposals.masks
    if inside is None or inside <= 0 or masks is None:
        return keep, notes
    base = np.ones(len(masks), bool) if keep is None else keep
    frag = fragments(np.asarray(masks, bool), base, float(inside))
    if frag.any() and (base & ~frag).any():
        which = ", ".join(str(int(i)) for i in np.flatnonzero(frag))
        notes.append(f"{int(frag.sum())} automatic candidate(s) ({which}) left out as fragments: "
                     f"each lies at least {inside:.0%} inside a larger candidate")
        keep = base & ~frag
    return keep, notes
