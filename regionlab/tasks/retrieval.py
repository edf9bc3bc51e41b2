"""Region (or image) embedding -> ranked class names, with prompt ensembles and a text cache."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

from .templates import get_templates
from .vocabularies import blind_classes, resolve_vocab, scored_class_list

_TEXT_CACHE: OrderedDict = OrderedDict()
_TEXT_LOCK = threading.Lock()
TEXT_CACHE_SIZE = 32  # (model, vocabulary, templates) entries kept


def class_text_embeddings(clip, classes: list[str], templates: str = "single") -> torch.Tensor:
    """Unit class embeddings (K, D): per class, the mean of the unit embeddings of every
    template filled with the class name, renormalised. Cached per (model, classes, templates)."""
    key = (clip.name, str(clip.device), tuple(classes), templates)
    with _TEXT_LOCK:
        if key in _TEXT_CACHE:
            _TEXT_CACHE.move_to_end(key)
            return _TEXT_CACHE[key]
    temps = get_templates(templates)
    texts = [t.format(c) for c in classes for t in temps]
    emb = clip.encode_texts(texts).reshape(len(classes), len(temps), -1)
    emb = F.normalize(emb.mean(1), dim=-1)
    with _TEXT_LOCK:
        _TEXT_CACHE[key] = emb
        while len(_TEXT_CACHE) > TEXT_CACHE_SIZE:
            _TEXT_CACHE.popitem(last=False)
    return emb


def class_probabilities(embeddings: torch.Tensor, text: torch.Tensor, scale: float = 100.0):
    """Softmax over classes of ``scale * cos`` (default 100, OpenAI CLIP's logit scale, as
    OVSeg's classification uses it), (P, K)."""
    e = F.normalize(embeddings.float(), dim=-1)
    return torch.softmax(scale * e @ text.float().T, dim=-1)


def rank(probs: torch.Tensor, classes: list[str], top_k: int = 5) -> list[list[dict]]:
    """Top-k ``[{"label", "score"}]`` per row, best first."""
    k = max(1, min(int(top_k), len(classes)))
    vals, idx = probs.topk(k, dim=-1)
    return [[{"label": classes[i], "score": round(float(v), 6)} for v, i in zip(vr, ir)]
            for vr, ir in zip(vals.tolist(), idx.tolist())]


def retrieve(embeddings, vocab, clip=None, model: str | None = None, templates: str = "single",
             top_k: int = 5, scale: float | None = None) -> list[list[dict]]:
    """Region embeddings (P, D) -> per region the top-k classes of ``vocab`` with scores: a
    softmax over the classes of ``scale * cos``, by default at the model's own learnt logit
    scale (100 for OpenAI and LAION CLIPs; 32.3 for the bundled one, whose scores at 100 showed
    half of its wrong answers at 0.9 or more: ``benchmarks/retrieval_calibration.py``).

    Classes made only of words the model cannot represent are not ranked: they share one text
    embedding, so they would tie with each other and the first of them would be shown as the
    answer (:func:`~regionlab.tasks.vocabularies.vocabulary_warnings` names them). With no
    class left, every region's list is empty; with one, "others" competes with it (as in
    labelling), since a softmax over one class is 1 whatever the region."""
    from ..models import load_clip

    clip = clip or load_clip(model)
    classes = resolve_vocab(vocab)
    emb = torch.as_tensor(np.asarray(embeddings) if not torch.is_tensor(embeddings) else embeddings)
    if emb.ndim == 1:
        emb = emb[None]
    if emb.shape[-1] != clip.embed_dim:
        from ..errors import InputError

        raise InputError(f"embedding dimension {emb.shape[-1]} does not match model "
                         f"{clip.name!r} ({clip.embed_dim})")
    blind = set(blind_classes(clip, classes))
    classes = scored_class_list([c for c in classes if c not in blind])
    if not classes:
        return [[] for _ in range(emb.shape[0])]
    text = class_text_embeddings(clip, classes, templates)
    if scale is None:
        scale = float(getattr(clip, "logit_scale", 100.0))
    return rank(class_probabilities(emb.to(text.device), text, scale), classes, top_k)


def classify_images(images, vocab, model: str | None = None, clip=None, templates: str = "single",
                    top_k: int = 5) -> list[list[dict]]:
    """Whole-image zero-shot classification of RGB arrays."""
    from ..models import load_clip

    clip = clip or load_clip(model)
    return retrieve(clip.encode_images(images), vocab, clip=clip, templates=templates, top_k=top_k)
