"""Which CLIP a decoder (captioner, generator) reads, and refusing embeddings from another one.

A CLIPCap or unCLIP decoder was trained on the image embeddings of ONE specific CLIP; region
embeddings computed with any other CLIP are meaningless to it. Decoders name their CLIP as a
registry name (``shapes-clip``, ``ViT-B-32@openai``, ``ViT-H-14@laion2b_s32b_b79k``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import LIMITS
from ..errors import InputError


def split_clip_name(name: str) -> tuple[str, str | None]:
    """``"ViT-B-32@openai"`` -> ``("ViT-B-32", "openai")``; ``"shapes-clip"`` -> (name, None)."""
    if "@" in name:
        arch, source = name.split("@", 1)
        return arch.strip(), source.strip()
    return name, None


def _is_local_or_hub(source: str) -> bool:
    return source.startswith(("hf-hub:", "/", "./", "~", ".")) or Path(source).suffix in (
        ".pt", ".bin", ".safetensors")


def clip_mismatch(expected: str, actual: str) -> str | None:
    """Why a CLIP named ``actual`` cannot feed a decoder made for ``expected`` (None if it can).

    Same name: fine. Same open_clip architecture with weights from a local file or hf-hub
    (a copy of the expected weights, say): accepted, since the weights cannot be compared by
    name. Anything else is refused.
    """
    if actual == expected:
        return None
    e_arch, e_src = split_clip_name(expected)
    a_arch, a_src = split_clip_name(actual)
    if e_src is None or a_src is None or a_arch != e_arch:
        return f"architecture {a_arch!r} differs from {e_arch!r}"
    if _is_local_or_hub(a_src):
        return None
    return f"weights {a_src!r} differ from {e_src!r}"


def check_clip_for(decoder_kind: str, decoder: str, expected: str, clip_name: str) -> None:
    """Raise :class:`InputError` when the CLIP ``clip_name`` is not the one the decoder reads."""
    why = clip_mismatch(expected, clip_name)
    if why:
        raise InputError(
            f"{decoder_kind} {decoder!r} reads image embeddings of CLIP {expected!r}; the selected "
            f"CLIP is {clip_name!r} ({why}). Leave the CLIP unset to use {expected!r}, or choose "
            f"a {decoder_kind} made for {clip_name!r}."
        )


def resolve_decoder_clip(decoder_kind: str, decoder: str, expected: str, clip=None, device=None):
    """The LoadedCLIP to compute region embeddings for a decoder: ``clip`` if given (a name or a
    LoadedCLIP) and matching, otherwise the decoder's own CLIP."""
    from . import load_clip

    if clip is None:
        return load_clip(expected, device)
    if isinstance(clip, str):
        check_clip_for(decoder_kind, decoder, expected, clip)
        return load_clip(clip, device)
    check_clip_for(decoder_kind, decoder, expected, clip.name)
    return clip


def as_embeddings(embeddings, embed_dim: int, who: str, expected_clip: str,
                  max_rows: int = LIMITS.max_masks) -> tuple[torch.Tensor, bool]:
    """Validate embeddings for a decoder -> (float32 (B, D) tensor, was it a single vector?).

    Accepts a torch tensor, numpy array or nested list of shape (D,) or (B, D).
    """
    if isinstance(embeddings, torch.Tensor):
        t = embeddings.detach().float().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{who}: embeddings must be numbers, got {exc}") from None
    single = t.ndim == 1
    if single:
        t = t[None]
    if t.ndim != 2 or t.shape[0] == 0:
        raise InputError(f"{who}: expected an embedding of shape (D,) or (B, D), got "
                         f"{tuple(t.shape)}")
    if t.shape[1] != embed_dim:
        raise InputError(
            f"{who} expects embeddings of dimension {embed_dim} from CLIP {expected_clip!r}; got "
            f"dimension {t.shape[1]}. Compute the region embedding with {expected_clip!r}.")
    if t.shape[0] > max_rows:
        raise InputError(f"{who}: {t.shape[0]} embeddings given; the limit is {max_rows} per call")
    if not torch.isfinite(t).all():
        raise InputError(f"{who}: embedding contains NaN or infinite values")
    if (t.norm(dim=-1) == 0).any():
        raise InputError(f"{who}: embedding is all zeros")
    return t, single
