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

from ..inputs import check_number, load_image, load_masks
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
    reranked: bool = True

    def to_json(self) -> dict:
        return asdict(self)


def load_captioner(name: str | None = None, device=None):
    """A loaded captioner by name (default: ``REGIONLAB_CAPTIONER`` or the bundled one)."""
    from ..models import load

    return load(name or os.environ.get("REGIONLAB_CAPTIONER") or DEFAULT_CAPTIONER,
                "captioner", device)


#: :func:`rerank_captions`' weight of CLIP's opinion against the captioner's, and the band (in
#: log-probability) a beam must be within of the best one to be considered; chosen on
#: validation scenes (benchmarks/caption_agreement.py --tune; see its rule). Weight 0 = the
#: captioner's top beam, the rule's choice for the bundled captioner trained on MaskInversion
#: embeddings (captioner9: its top beam agrees with retrieval 94.7% and names the right class
#: 93.5%, mean over MaskInversion and masked crop at 64 and 448 px; every reranking raised the
#: agreement, to 97.2% at most, and lowered the accuracy, which the rule forbids). The band
#: applies when a weight is given: 0.5, the one chosen with the captioner before it
#: (captioner8: weight 2, agreement 88.6 -> 92.7%, accuracy 86.3 -> 88.5%); CLIP stage 13:
#: weight 4, band 0.5; stage 10: weight 4, band 1.
RERANK_WEIGHT = 0.0
RERANK_BAND = 0.5


def caption_embeddings(embeddings, captioner=None, options: CaptionOptions | None = None,
                       rerank=True, weight: float = RERANK_WEIGHT,
                       band: float = RERANK_BAND) -> list[str]:
    """Captions of embeddings (D,) or (B, D) of the captioner's CLIP; always a list.

    ``rerank`` (default): of the ``beams`` beam-search captions, keep the one that best
    balances the captioner's own score with CLIP's: the caption's text embedding is compared
    with the region embedding as class retrieval compares class names, so the caption names
    what retrieval finds (the top beam alone contradicted it: "a red cross" beside "red star
    0.99"). ``rerank`` may also be a loaded CLIP to compare with (default: the captioner's
    own); False, or ``weight`` 0 (the default, :data:`RERANK_WEIGHT`), keeps the top beam.
    Sampling is never reranked."""
    cap = captioner if hasattr(captioner, "caption") else load_captioner(captioner)
    opts = (options or CaptionOptions()).checked()
    if (not reranks(rerank, weight, opts)) or not hasattr(cap, "candidates"):
        out = cap.caption(embeddings, opts)
        return [out] if isinstance(out, str) else out
    cands = cap.candidates(embeddings, opts)
    clip = rerank if hasattr(rerank, "encode_texts") else _reranking_clip(cap)
    return rerank_captions(embeddings, cands, clip, weight, band)


def reranks(rerank, weight: float, options: CaptionOptions) -> bool:
    """Whether :func:`caption_embeddings` reranks: asked to, with a positive weight, beams."""
    return bool(rerank is not False and rerank is not None and weight > 0
                and not options.sample and options.beams > 1)


def _reranking_clip(cap):
    from ..models import load_clip

    return load_clip(cap.clip, getattr(cap, "device", None))


def rerank_captions(embeddings, candidates: list[list[tuple[str, float]]], clip,
                    weight: float = RERANK_WEIGHT, band: float = RERANK_BAND) -> list[str]:
    """Per row, among the candidates ``(caption, log-probability)`` within ``band`` of the
    most probable one, the one maximising ``log-probability + weight * logit_scale *
    cos(CLIP text embedding, row embedding)`` (ties: the earlier beam). The captioner's score
    keeps degenerate captions out ("a red orange triangle" can sit closer to an orange-red
    region in CLIP's space, and is improbable); ``weight`` 0 keeps the top beam."""
    import torch

    emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32)).reshape(len(candidates), -1)
    emb = torch.nn.functional.normalize(emb, dim=-1)
    scale = float(getattr(clip, "logit_scale", 100.0))
    kept = []
    for cands in candidates:
        best = max(s for _, s in cands)
        kept.append([(c, s) for c, s in cands if s >= best - band] or cands[:1])
    if weight <= 0:
        return [cands[0][0] for cands in kept]
    vocab = list(dict.fromkeys(c for cands in kept for c, _ in cands))  # one text forward
    index = {c: i for i, c in enumerate(vocab)}
    text = clip.encode_texts(vocab).float().cpu()
    out = []
    for e, cands in zip(emb, kept):
        rows = text[[index[c] for c, _ in cands]]
        score = torch.tensor([s for _, s in cands]) + weight * scale * (rows @ e)
        out.append(cands[int(torch.argmax(score))][0])
    return out


def caption_regions(image, masks, *, captioner=None, method: str = "maskinversion", clip=None,
                    options: CaptionOptions | None = None, region_options: dict | None = None,
                    rerank: bool = True, rerank_weight: float | None = None) -> CaptionResult:
    """Caption each masked region of ``image``.

    ``image``: PIL image, HxWx3 uint8 array or path; ``masks``: boolean HxW masks (or paths);
    ``method``: how the region embedding is computed (``maskinversion``, ``global``, ``crop``,
    ``masked-crop``, ``blur``, ``red-circle``); ``clip``: None (the captioner's own CLIP) or a
    CLIP name / LoadedCLIP, refused if it is not the one the captioner reads;
    ``region_options``: MaskInversion hyper-parameters (iterations, lr, alpha, resolution);
    ``rerank``: choose among the beams with CLIP (:func:`caption_embeddings`) at
    ``rerank_weight`` (None: :data:`RERANK_WEIGHT`, 0 = the top beam).
    """
    from ..models.decoder_clip import resolve_decoder_clip
    from ..region.baselines import region_embeddings

    t0 = time.perf_counter()
    opts = (options or CaptionOptions()).checked()
    weight = (RERANK_WEIGHT if rerank_weight is None
              else check_number(rerank_weight, "rerank_weight", 0.0, 1e3))
    cap = captioner if hasattr(captioner, "caption") else load_captioner(captioner)
    model = resolve_decoder_clip("captioner", cap.name, cap.clip, clip)
    img = load_image(image)
    mk = load_masks(masks, img.shape[:2])
    emb = region_embeddings(model, img, mk, method, **(region_options or {}))
    texts = caption_embeddings(np.asarray(emb.detach().float().cpu()), cap, opts,
                               rerank=model if rerank else False, weight=weight)
    return CaptionResult(texts, method, cap.name, model.name, asdict(opts),
                         round(time.perf_counter() - t0, 4),
                         reranked=reranks(rerank, weight, opts) and hasattr(cap, "candidates"))
