"""LeGrad explainability maps for open_clip vision transformers (METHODS.md section 1).

For a unit query embedding ``e`` and a chosen block ``l``:
``f_l = normalize(ln_post(mean over ALL tokens of Z_l) @ proj)``, ``s_l = e . f_l``,
``G_l = ds_l / dA_l`` (post-softmax attention, per head), and the map is
``R_l[j] = 1/(H*N) sum_h sum_i max(0, G_l[h, i, j])`` over patch keys ``j``, upsampled
bilinearly by the patch size, summed over layers and min-max normalised per query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .vit import embed_tokens, pooled_mean_embedding, run_blocks, trace_block


def _layer_indices(n_blocks: int, layers: int | Sequence[int]) -> list[int]:
    """``layers`` = k (the last k blocks) or explicit (possibly negative) block indices."""
    if isinstance(layers, int):
        if not 1 <= layers <= n_blocks:
            raise InputError(f"layers must be in 1..{n_blocks}, got {layers}")
        return list(range(n_blocks - layers, n_blocks))
    idx = sorted({i % n_blocks for i in layers})
    if not idx:
        raise InputError("no layers given")
    return idx


def relevance_from_grad(grad_attn: torch.Tensor) -> torch.Tensor:
    """(B, H, N, N) dS/dA -> (B, N-1) patch relevance: ReLU, mean over heads and rows."""
    _, h, n, _ = grad_attn.shape
    return grad_attn.clamp(min=0).sum(dim=(1, 2))[:, 1:] / (h * n)


def upsample_minmax(rel: torch.Tensor, grid: tuple[int, int], patch: int) -> torch.Tensor:
    """(B, g*g) -> (B, gh*patch, gw*patch) bilinear upsampling then per-row min-max to [0, 1]."""
    b = rel.shape[0]
    up = F.interpolate(rel.reshape(b, 1, *grid), scale_factor=patch, mode="bilinear",
                       align_corners=False)[:, 0]
    return minmax(up)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(dim=1).values.view(-1, *([1] * (maps.dim() - 1)))
    hi = flat.max(dim=1).values.view(-1, *([1] * (maps.dim() - 1)))
    return (maps - lo) / (hi - lo).clamp_min(1e-12)


def prepare_image(clip, image: np.ndarray, resolution: int | None) -> tuple[torch.Tensor, int]:
    """Stretch an RGB image to S x S (S a multiple of the patch size) and normalise."""
    s = int(resolution or clip.defaults.get("legrad_resolution", clip.image_size))
    p = clip.patch_size
    if s < p or s % p:
        raise InputError(f"resolution must be a positive multiple of the patch size {p}, got {s}")
    return clip.to_tensor([image], size=s), s


@dataclass
class LegradResult:
    maps: np.ndarray  # (Q, S, S) in [0, 1]
    resolution: int
    layers: list[int]


def legrad_maps(clip, image: np.ndarray, queries: torch.Tensor, resolution: int | None = None,
                layers: int | Sequence[int] = 1, chunk: int = 32) -> LegradResult:
    """LeGrad maps of one RGB image for ``queries`` (Q, D) (normalised here).

    ``layers``: the last k blocks (int; LeGrad's default is 2, MaskInversion uses 1) or explicit
    block indices. Returns min-max normalised maps at the S x S model input resolution; use
    ``regionlab.viz`` / ``resize_maps`` to bring them to the image size. Does not modify the
    model (no hooks).
    """
    visual = clip.visual
    q = F.normalize(torch.as_tensor(queries, dtype=clip.dtype, device=clip.device), dim=-1)
    if q.ndim == 1:
        q = q[None]
    if q.shape[-1] != clip.embed_dim:
        raise InputError(f"query dimension {q.shape[-1]} != model embedding {clip.embed_dim}")
    x, s = prepare_image(clip, image, resolution)
    blocks = list(visual.transformer.resblocks)
    idx = _layer_indices(len(blocks), layers)
    grid = (s // clip.patch_size, s // clip.patch_size)
    with torch.no_grad():
        tok = embed_tokens(visual, x)
        inputs = {}
        cur = run_blocks(visual, tok, blocks[: idx[0]])
        for i in range(idx[0], idx[-1] + 1):
            inputs[i] = cur
            if i < idx[-1]:
                cur = run_blocks(visual, cur, [blocks[i]])
    total = torch.zeros(q.shape[0], s, s, dtype=clip.dtype, device=clip.device)
    for i in idx:
        rels = []
        for c in range(0, q.shape[0], chunk):
            qc = q[c : c + chunk]
            with torch.enable_grad():
                tr = trace_block(blocks[i], inputs[i].expand(qc.shape[0], -1, -1),
                                 attn_requires_grad=True)
                f = F.normalize(pooled_mean_embedding(visual, tr.out), dim=-1)
                (g,) = torch.autograd.grad((f * qc).sum(), tr.attn)
            rels.append(relevance_from_grad(g))
        rel = torch.cat(rels)
        total += F.interpolate(rel.reshape(-1, 1, *grid), scale_factor=clip.patch_size,
                               mode="bilinear", align_corners=False)[:, 0]
    maps = minmax(total)
    return LegradResult(maps=maps.cpu().numpy(), resolution=s, layers=idx)


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(Q, S, S) maps -> (Q, H, W), bilinear."""
    t = torch.as_tensor(maps, dtype=torch.float32)[:, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[:, 0].numpy()
