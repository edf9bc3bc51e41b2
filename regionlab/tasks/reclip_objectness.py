"""Objectness of automatic grounding candidates: does a candidate look like any object the model
knows? (ours; ReCLIP grounds among detector boxes, which are objects by construction)

Automatic proposals from the classical engine also return background tiles, shading blobs,
merges of an object with its background and object fragments; on scenes from another renderer
those get chosen ("the star at the bottom" picked a background strip). With a CLIP that
declares its vocabulary (``LoadedCLIP.word_groups``: the bundled CLIP's colours and shapes,
whose combinations are its classes) and a tuned ``object_min_cos`` in its defaults, each
candidate's masked crop is compared with a prompt for every class; a candidate whose best
cosine stays below the threshold reads as no object the model knows and is left out of the
choice. Chosen on validation scenes (benchmarks/results/grounding_objectness/rule.md). Real
CLIPs have no known vocabulary: nothing is filtered. Only automatic candidates are filtered:
the user's own regions and boxes are what the user asked about.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

#: the prompt each known class is read with
CLASS_PROMPT = "a photo of a {}."
#: ``object_min_cos`` at or below this turns the filter off (cosines are never below -1)
OFF = -1.0


def known_classes(clip) -> list[str]:
    """The classes a model declares: every combination of its word groups ("red star")."""
    groups = getattr(clip, "word_groups", ()) or ()
    return [" ".join(words) for words in itertools.product(*groups)] if groups else []


def object_reading(features) -> tuple[np.ndarray, float | None] | None:
    """The best class cosine of every candidate's masked crop and the model's
    ``object_min_cos`` default (or None), from the first model of the ensemble with a known
    vocabulary; None when there is none, or no masked crops were embedded."""
    if features.member_embeddings is None:
        return None
    for clip, emb in zip(features.clips, features.member_embeddings):
        classes = known_classes(clip)
        if not classes:
            continue
        thr = (getattr(clip, "defaults", None) or {}).get("object_min_cos")
        txt = clip.encode_texts([CLASS_PROMPT.format(c) for c in classes])
        cos = torch.einsum("pd,td->pt", emb[0].float(), txt.to(emb.device).float())
        return cos.amax(1).cpu().double().numpy(), None if thr is None else float(thr)
    return None


def object_keep(features, threshold: float | None = None) -> tuple[np.ndarray | None, list[str]]:
    """Which automatic candidates look like an object (bool per candidate) and the notes to
    show; ``(None, [])`` when nothing is filtered. ``threshold`` None = the model's default
    (none: no filter); ``<= OFF`` turns the filter off."""
    if features.proposals.source != "automatic" or (threshold is not None and threshold <= OFF):
        return None, []
    reading = object_reading(features)
    thr = None if reading is None else (reading[1] if threshold is None else float(threshold))
    if thr is None:
        return None, []
    keep = reading[0] >= thr
    if not keep.any():
        return None, [f"no automatic candidate reads as an object the model knows (best class "
                      f"cosine of every masked crop below {thr:.2f}): all kept"]
    if keep.all():
        return None, []
    dropped = [int(i) for i in np.flatnonzero(~keep)]
    return keep, [f"{len(dropped)} automatic candidate(s) ({', '.join(map(str, dropped))}) left "
                  f"out: their masked crops read as no object the model knows (background or "
                  f"fragments; best class cosine below {thr:.2f})"]
