"""Layout-independent access to an open_clip VisionTransformer's internals.

Nothing here registers hooks or mutates the model: the last block(s) are recomputed from the
block's own parameters, so concurrent callers on one shared model cannot interfere, and the
result does not depend on whether the transformer runs batch-first (open_clip >= 2.26) or
sequence-first (older releases).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def grid_size(visual: nn.Module, height: int, width: int) -> tuple[int, int]:
    ph, pw = _patch(visual)
    if height % ph or width % pw:
        raise ValueError(f"input {height}x{width} is not a multiple of the patch size {ph}x{pw}")
    return height // ph, width // pw


def _patch(visual: nn.Module) -> tuple[int, int]:
    ks = visual.conv1.kernel_size
    return (ks, ks) if isinstance(ks, int) else tuple(ks)


def resample_pos_embed(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]):
    """Bicubic resampling of a (1 + gh*gw, C) positional embedding to another grid.

    Computed in float32 with antialiasing (as timm's ``resample_abs_pos_embed``, which the
    reference LeGrad uses), then cast back, so that parity holds in every dtype.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos
    cls, patches = pos[:1], pos[1:]
    c = patches.shape[-1]
    patches = patches.float().reshape(1, old_grid[0], old_grid[1], c).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=new_grid, mode="bicubic", align_corners=False,
                            antialias=True).to(pos.dtype)
    return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(-1, c)], dim=0)


def embed_tokens(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Patch + class + positional embeddings (+ ln_pre) for normalised images (B, 3, H, W).

    Returns batch-first tokens (B, N, C). Any H, W that are multiples of the patch size work;
    the positional embedding is resampled bicubically to the new grid.
    """
    gh, gw = grid_size(visual, images.shape[-2], images.shape[-1])
    x = visual.conv1(images.to(visual.conv1.weight.dtype))
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1)
    old = tuple(visual.grid_size)
    pos = resample_pos_embed(visual.positional_embedding, old, (gh, gw))
    x = x + pos.to(x.dtype)
    return visual.ln_pre(x)


def _batch_first(visual: nn.Module) -> bool:
    return bool(getattr(visual.transformer, "batch_first", True))


def run_blocks(visual: nn.Module, x: torch.Tensor, blocks) -> torch.Tensor:
    """Run the given resblocks on batch-first tokens, whatever layout the model uses inside."""
    bf = _batch_first(visual)
    if not bf:
        x = x.transpose(0, 1)
    for blk in blocks:
        x = blk(x)
    return x if bf else x.transpose(0, 1)


@dataclass
class BlockTrace:
    """Intermediates of one recomputed pre-LN transformer block (batch-first, (B, N, ...))."""

    x: torch.Tensor  # block input X (B, N, C)
    v: torch.Tensor  # values per head (B, H, N, d)
    attn: torch.Tensor  # post-softmax attention (B, H, N, N)
    y: torch.Tensor  # after the attention residual (B, N, C)
    hpre: torch.Tensor  # MLP pre-activation (B, N, 4C)
    out: torch.Tensor  # block output X' (B, N, C)


def _layer_scale(mod: nn.Module) -> torch.Tensor | None:
    if isinstance(mod, nn.Identity):
        return None
    gamma = getattr(mod, "gamma", None)
    if gamma is None:
        raise NotImplementedError(f"unsupported layer-scale module {type(mod).__name__}")
    return gamma


def check_block(block: nn.Module) -> None:
    """Raise a clear error for blocks whose maths we do not recompute."""
    attn = getattr(block, "attn", None)
    if not isinstance(attn, nn.MultiheadAttention) or not hasattr(block, "mlp"):
        raise NotImplementedError(
            f"LeGrad needs open_clip's standard ResidualAttentionBlock (nn.MultiheadAttention); "
            f"got {type(block).__name__}"
        )
    if not attn._qkv_same_embed_dim or attn.in_proj_bias is None:
        raise NotImplementedError("attention without a packed, biased in-projection is unsupported")


def trace_block(block: nn.Module, x: torch.Tensor, attn_requires_grad: bool = False) -> BlockTrace:
    """Recompute a standard open_clip ResidualAttentionBlock on batch-first ``x`` (B, N, C).

    With ``attn_requires_grad`` the softmax output is a graph leaf-like tensor whose gradient
    can be taken (LeGrad's dS/dA); the rest of the forward is unchanged.
    """
    check_block(block)
    attn = block.attn
    b, n, c = x.shape
    h = attn.num_heads
    d = c // h
    u = block.ln_1(x)
    qkv = F.linear(u, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.split(c, dim=-1)
    q = q.reshape(b, n, h, d).transpose(1, 2)
    k = k.reshape(b, n, h, d).transpose(1, 2)
    v = v.reshape(b, n, h, d).transpose(1, 2)
    a = torch.softmax((q * (1.0 / math.sqrt(d))) @ k.transpose(-1, -2), dim=-1)
    if attn_requires_grad and not a.requires_grad:
        a.requires_grad_(True)
    o = (a @ v).transpose(1, 2).reshape(b, n, c)
    o = F.linear(o, attn.out_proj.weight, attn.out_proj.bias)
    g1 = _layer_scale(block.ls_1)
    y = x + (o * g1 if g1 is not None else o)
    hpre = block.mlp.c_fc(block.ln_2(y))
    mlp = block.mlp.c_proj(block.mlp.gelu(hpre))
    g2 = _layer_scale(block.ls_2)
    out = y + (mlp * g2 if g2 is not None else mlp)
    return BlockTrace(x=x, v=v, attn=a, y=y, hpre=hpre, out=out)


def pooled_mean_embedding(visual: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """LeGrad's image feature: ``ln_post(mean over ALL tokens) @ proj`` (unnormalised)."""
    z = visual.ln_post(tokens.mean(dim=1))
    return z @ visual.proj if visual.proj is not None else z


def encode_image_tokens(visual: nn.Module, tokens_out: torch.Tensor) -> torch.Tensor:
    """The model's own global embedding (as ``encode_image``) from final-block tokens."""
    if getattr(visual, "attn_pool", None) is not None:
        raise NotImplementedError("attentional pooling is not supported")
    pooled, _ = visual._pool(tokens_out)
    return pooled @ visual.proj if visual.proj is not None else pooled
