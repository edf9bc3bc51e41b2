"""Localized captions: region embedding (MaskInversion or a baseline) -> text, per mask.

>>> from regionlab.tasks.caption import caption_regions
>>> caption_regions(image, [mask]).captions            # doctest: +SKIP
['a red star']
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..inputs import load_image, load_masks
from ..models.captioner import CaptionOptions

DEFAULT_CAPTIONER = "shapes-captioner"


@dataclass
class CaptionResult:
    """One caption per mask, in mask order, with what produced them."""

    captions: list[str]
    method: str
    captioner: str
    clip: str
    options: dict
    seconds: float

    def to_json(self) -> dict:
        return asdict(self)


def load_captioner(name: str | None = None, device=None):
    """A loaded captioner by name (default: ``REGIONLAB_CAPTIONER`` or the bundled one)."""
    from ..models import load

    return load(name or os.environ.get("REGIONLAB_CAPTIONER") or DEFAULT_CAPTIONER,
                "captioner", device)


def caption_embeddings(embeddings, captioner=None, options: CaptionOptions | None = None
                       ) -> list[str]:
    """Captions of embeddings (D,) or (B, D) of the captioner's CLIP; always a list."""
    cap = captioner if hasattr(captioner, "caption") else load_captioner(captioner)
    out = cap.caption(embeddings, options)
    return [out] if isinstance(out, str) else out


def caption_regions(image, masks, *, captioner=None, method: str = "maskinversion", clip=None,
                    options: CaptionOptions | None = None, region_options: dict | None = None
                    ) -> CaptionResult:
    """Caption each masked region of ``image``.

    ``image``: PIL image, HxWx3 uint8 array or path; ``masks``: boolean HxW masks (or paths);
    ``method``: how the region embedding is computed (``maskinversion``, ``global``, ``crop``,
    ``masked-crop``, ``blur``, ``red-circle``); ``clip``: None (the captioner's own CLIP) or a
    CLIP name / LoadedCLIP, refused if it is not the one the captioner reads;
    ``region_options``: MaskInversion hyper-parameters (iterations, lr, alpha, resolution).
    """
    from ..models.decoder_clip import resolve_decoder_clip
    from ..region.baselines import region_embeddings

    t0 = time.perf_counter()
    opts = (options or CaptionOptions()).checked()
    cap = captioner if hasattr(captioner, "caption") else load_captioner(captioner)
    model = resolve_decoder_clip("captioner", cap.name, cap.clip, clip)
    img = load_image(image)
    mk = load_masks(masks, img.shape[:2])
    emb = region_embeddings(model, img, mk, method, **(region_options or {}))
    texts = caption_embeddings(np.asarray(emb.detach().float().cpu()), cap, opts)
    return CaptionResult(texts, method, cap.name, model.name, asdict(opts),
                         round(time.perf_counter() - t0, 4))
