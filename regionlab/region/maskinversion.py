"""MaskInversion: region embeddings whose LeGrad map matches a mask (METHODS.md section 2).

Per image, ONE forward pass of the ViT is cached (:class:`ImageCache`); every mask and every
iteration reuses it. Two exact engines compute the LeGrad map of the current embeddings:

- ``autograd``: recomputes the last block for all masks at once and differentiates through a
  create_graph gradient (the reference's maths, without re-running the ViT per mask);
- ``factorized``: the backward-free factorisation of METHODS.md 2.1 -- ``e -> dS/dA`` is linear
  in ``e``, so each iteration is a few batched matrix products on cached activations;
- ``auto``: picks the cheaper of the two from a cost model calibrated by
  ``benchmarks/maskinversion_speed.py``.

Hyper-parameters are call arguments; the shared model is never modified.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import LIMITS
from ..errors import InputError
from ..explain.legrad import minmax, prepare_image, relevance_from_grad
from ..explain.vit import (
    _layer_scale,
    embed_tokens,
    encode_image_tokens,
    pooled_mean_embedding,
    run_blocks,
    trace_block,
)
from ..inputs import check_number, load_image, load_masks
from .fused_relevance import fused_relevance

#: The factorized engine's relevance through the fused C++ kernel (``fused_relevance.py``):
#: used on CPU float32/float64 when the kernel builds and ``REGIONLAB_FUSED_RELEVANCE`` is not
#: 0, else the PyTorch expression; set False to always use the PyTorch expression.
USE_FUSED_RELEVANCE = True

ENGINES = ("auto", "autograd", "factorized")


# ----------------------------------------------------------------------------- per-image cache


@dataclass
class ImageCache:
    """One image's ViT activations at one resolution, reusable for any number of masks."""

    model_name: str
    resolution: int
    image_shape: tuple[int, int]
    x_in: torch.Tensor  # input of the last block (1, N, C)
    global_embedding: torch.Tensor  # encode_image output (D,), unnormalised
    grid: tuple[int, int]
    patch: int
    factors: dict | None = None  # filled lazily by the factorized engine

    def nbytes(self) -> int:
        n = self.x_in.numel() * self.x_in.element_size()
        if self.factors:
            n += sum(
                t.numel() * t.element_size() for t in self.factors.values() if torch.is_tensor(t)
            )
        return n


def prepare_image_cache(clip, image, resolution: int | None = None) -> ImageCache:
    """Run the ViT once on the image stretched to S x S and keep what MaskInversion needs."""
    img = load_image(image)
    s = int(resolution or clip.defaults.get("mi_resolution", clip.image_size))
    check_number(s, "resolution", LIMITS.min_resolution, LIMITS.max_resolution, integer=True)
    x, s = prepare_image(clip, img, s)
    visual = clip.visual
    blocks = list(visual.transformer.resblocks)
    with torch.no_grad():
        x_in = run_blocks(visual, embed_tokens(visual, x), blocks[:-1])
        out = trace_block(blocks[-1], x_in).out
        glob = encode_image_tokens(visual, out)[0]
    g = s // clip.patch_size
    return ImageCache(clip.name, s, img.shape[:2], x_in, glob, (g, g), clip.patch_size)


# ----------------------------------------------------------------------------- engines


def _maps_autograd(clip, cache: ImageCache, e: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """(P, D) unit embeddings -> (P, g*g) patch relevance, via autograd through the last block."""
    visual = clip.visual
    p = e.shape[0]
    with torch.enable_grad():
        tr = trace_block(
            visual.transformer.resblocks[-1], cache.x_in.expand(p, -1, -1), attn_requires_grad=True
        )
        f = F.normalize(pooled_mean_embedding(visual, tr.out), dim=-1)
        s = (f * e).sum()
        (g,) = torch.autograd.grad(s, tr.attn, create_graph=create_graph)
    return relevance_from_grad(g)


def _gelu_derivative(act: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    name = type(act).__name__
    if name == "QuickGELU":

        def d(x):
            sg = torch.sigmoid(1.702 * x)
            return sg + 1.702 * x * sg * (1 - sg)

        return d
    if isinstance(act, nn.GELU):
        if act.approximate == "tanh":

            def d(x):
                k = math.sqrt(2 / math.pi)
                u = k * (x + 0.044715 * x**3)
                t = torch.tanh(u)
                return 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * k * (1 + 3 * 0.044715 * x**2)

            return d

        def d(x):
            return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * torch.exp(-0.5 * x**2) / math.sqrt(
                2 * math.pi
            )

        return d
    raise NotImplementedError(f"no exact derivative for activation {name}")


def _ln_stats(ln: nn.LayerNorm, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    sigma = torch.sqrt(var + ln.eps)
    return (x - mu) / sigma, sigma


def _ln_vjp(xhat: torch.Tensor, sigma: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """LayerNorm input gradient for ``w = gamma * upstream``."""
    return (w - w.mean(-1, keepdim=True) - xhat * (w * xhat).mean(-1, keepdim=True)) / sigma


def build_factors(clip, cache: ImageCache) -> dict:
    """Detached per-image tensors of the factorized engine, with the MLP and the attention
    output projection folded together (about 3 N 4C + 2 4C C + 3 N C floats: the whole cache of a
    ViT-B/16 at 448 px is 59 MB)."""
    if cache.factors is not None:
        return cache.factors
    visual = clip.visual
    blk = visual.transformer.resblocks[-1]
    with torch.no_grad():
        tr = trace_block(blk, cache.x_in)
        out = tr.out[0]
        n, c = out.shape
        m = out.mean(0)
        mhat, sig_m = _ln_stats(visual.ln_post, m)
        z = visual.ln_post(m) @ visual.proj
        znorm = z.norm()
        yhat, sig2 = _ln_stats(blk.ln_2, tr.y[0])
        g1, g2 = _layer_scale(blk.ls_1), _layer_scale(blk.ls_2)
        wo = blk.attn.out_proj.weight * (g1[:, None] if g1 is not None else 1)
        w1g = blk.mlp.c_fc.weight * blk.ln_2.weight  # W1 diag(gamma_2), (4C, C)
        dphi = _gelu_derivative(blk.mlp.gelu)(tr.hpre[0])  # (N, 4C)
        v = tr.v[0]  # (H, N, d)
        cache.factors = {
            "n": n,
            "fhat": z / znorm,
            "znorm": znorm,
            "mhat": mhat,
            "sig_m": sig_m,
            "gamma_post": visual.ln_post.weight,
            "proj": visual.proj,
            "w2": blk.mlp.c_proj.weight * (g2[:, None] if g2 is not None else 1),
            "dphi": dphi,
            "fold": w1g @ wo,  # (4C, C): W1 diag(gamma_2) W_o
            "dphi_a": dphi * w1g.mean(1),  # (N, 4C): row means of the LN_2 VJP input
            "dphi_b": dphi * (yhat @ w1g.T) / c,  # (N, 4C): its xhat-weighted means
            "u": wo.sum(0),  # (C,)
            "yhat_wo": yhat @ wo,  # (N, C)
            "sig2": sig2,
            "wo": wo,
            "vt": v.transpose(-1, -2).contiguous(),  # (H, d, N)
        }
    return cache.factors


def _maps_factorized(clip, cache: ImageCache, e: torch.Tensor) -> torch.Tensor:
    """(P, D) unit embeddings -> (P, g*g) patch relevance, closed form (METHODS.md 2.1).

    Folded: with T_i = phi'(Hpre_i) * r, the LN_2 VJP ``S_i`` pushed through ``W_o`` is
    ``(T_i W1 diag(g2) W_o - a_i 1 W_o - b_i yhat_i W_o) / sigma_i`` where the scalars
    ``a_i, b_i`` are products of ``r`` with cached (N, 4C) tensors; one (P N, 4C) x (4C, C)
    product per iteration remains (the N C C product with W_o is folded away).
    """
    fa = build_factors(clip, cache)
    n = fa["n"]
    h, d, _ = fa["vt"].shape
    p = e.shape[0]
    g_z = (e - (e @ fa["fhat"])[:, None] * fa["fhat"]) / fa["znorm"]  # (P, D)
    w = fa["gamma_post"] * (g_z @ fa["proj"].T)  # (P, C)
    g_m = _ln_vjp(fa["mhat"], fa["sig_m"], w)  # (P, C): dS/dm
    gx = g_m / n  # dS/dX'_i, the same for every token
    r = gx @ fa["w2"]  # (P, 4C)
    main = (fa["dphi"][None] * r[:, None, :]) @ fa["fold"]  # (P, N, C)
    a = r @ fa["dphi_a"].T  # (P, N)
    b = r @ fa["dphi_b"].T  # (P, N)
    g = (main - a[..., None] * fa["u"] - b[..., None] * fa["yhat_wo"]) / fa["sig2"]
    g = g + (gx @ fa["wo"])[:, None, :]  # (P, N, C) = dS/dY W_o
    gh = g.reshape(p, n, h, d).transpose(1, 2)  # (P, H, N, d)
    if USE_FUSED_RELEVANCE:  # the same numbers without the (P, H, N, N) tensor dS/dA
        return fused_relevance(gh, fa["vt"])
    return relevance_from_grad(gh @ fa["vt"][None])  # from dS/dA, (P, H, N, N)


# ----------------------------------------------------------------------------- engine choice

# Cost model: seconds ~ a * MACs (+ overhead); constants from benchmarks/maskinversion_speed.py
# on the development CPU. autograd recomputes the block for every mask and runs a second-order
# backward (~4 block forwards per mask-iteration); factorized needs ~ N*C*(4C + 4C + C + N)
# MACs per mask-iteration plus a one-off block pass.
AUTOGRAD_FACTOR = 4.0
FACTORIZED_FACTOR = 1.0


def choose_engine(clip, n_masks: int, iterations: int, resolution: int) -> str:
    """The engine with the lower predicted cost for this problem size."""
    c = clip.visual.transformer.width
    n = (resolution // clip.patch_size) ** 2 + 1
    block = n * (12 * c * c) + 2 * n * n * c
    auto = AUTOGRAD_FACTOR * block * n_masks * iterations
    fact = block + FACTORIZED_FACTOR * (n * c * (9 * c) + n * n * c) * n_masks * iterations
    return "factorized" if fact <= auto else "autograd"


# ----------------------------------------------------------------------------- the optimiser


def soft_dice_loss(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-mask ``1 - (2 sum(x m) + 1) / (sum x + sum m + 1)``."""
    x, m = maps.flatten(1), masks.flatten(1)
    return 1 - (2 * (x * m).sum(1) + 1) / (x.sum(1) + m.sum(1) + 1)


@dataclass
class InversionResult:
    embeddings: torch.Tensor  # (P, D) unnormalised region embeddings
    maps: np.ndarray  # (P, H, W) final LeGrad maps at the image size, in [0, 1]
    initial_maps: np.ndarray  # (P, H, W) maps of the initial (global) embedding
    history: list[np.ndarray]  # per iteration (P, S, S) float16 maps (keep_history=True)
    losses: list[float]  # total loss per iteration
    engine: str
    settings: dict
    timings: dict = field(default_factory=dict)
    cache: ImageCache | None = None


def _maps_at(maps_grid: torch.Tensor, cache: ImageCache, size: tuple[int, int]) -> torch.Tensor:
    up = F.interpolate(
        maps_grid.reshape(-1, 1, *cache.grid),
        scale_factor=cache.patch,
        mode="bilinear",
        align_corners=False,
    )[:, 0]
    up = minmax(up)
    if tuple(up.shape[-2:]) != tuple(size):
        up = F.interpolate(up[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return up


#: Masks optimised together; more are done in chunks of this size with the same result (each
#: embedding has its own map, loss term and AdamW state), so memory stays flat in the count.
#: ViT-B/16 at 448, 100 masks x 10 iterations: chunks of 2/4/8 took 80/78-84/88 s, all at once
#: 132 s and 8.9 GB (benchmarks/results/maskinversion_*chunked.json).
MASK_CHUNK = 4


def _history_frame(maps: torch.Tensor) -> torch.Tensor:
    """One history frame, kept on the maps' device until the run ends. float32 (and half types)
    become float16 there, exactly as numpy's ``astype(np.float16)`` would round them; float64
    stays as it is (torch rounds it to half through float32, numpy in one step) and is
    converted on the host at the end."""
    return maps if maps.dtype == torch.float64 else maps.to(torch.float16)


def _history_numpy(frame: torch.Tensor) -> np.ndarray:
    return frame.cpu().numpy().astype(np.float16)


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work (wall-clock timings only; never called per iteration)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _optimise(clip, cache: ImageCache, mk: torch.Tensor, p_total: int, chosen: str,
              iterations: int, lr: float, alpha: float, keep_history: bool,
              progress, chunk: tuple[int, int]) -> dict:
    """MaskInversion of one chunk of masks. The loss is the chunk's share of the mean over all
    ``p_total`` masks, so every embedding gets exactly the gradient of the joint run.

    Everything stays on the device of the cache: no host round trip (``.item()``, ``float()``,
    ``bool()`` of a tensor, ``.cpu()``) and no tensor made on the CPU inside the loop, so a GPU
    is never stalled (``tests/test_maskinversion_device.py``). Losses and history frames are
    returned as device tensors; :func:`invert` brings them to the host once, at the end, and
    checks there that no loss was non-finite."""
    h, w = cache.image_shape
    p = mk.shape[0]

    def relevance(e: torch.Tensor, grad: bool) -> torch.Tensor:
        if chosen == "factorized":
            with torch.set_grad_enabled(grad):
                return _maps_factorized(clip, cache, e)
        return _maps_autograd(clip, cache, e, create_graph=grad)

    init = cache.global_embedding.detach().clone().expand(p, -1).contiguous()
    emb = nn.Parameter(init.clone())
    opt = torch.optim.AdamW([emb], lr=lr, weight_decay=0.0)
    init_unit = F.normalize(init, dim=-1)
    history: list[torch.Tensor] = []
    losses: list[torch.Tensor] = []
    first_maps = None
    for it in range(iterations):
        e = F.normalize(emb, dim=-1)
        with torch.enable_grad():
            rel = relevance(e, grad=True)
            maps = _maps_at(rel, cache, (h, w))
            loss = soft_dice_loss(maps, mk).sum() / p_total
            if alpha:
                loss = loss + alpha * (1 - (init_unit * e).sum(-1)).sum() / p_total
        if first_maps is None:
            first_maps = maps.detach()
        if keep_history:
            grid_maps = _maps_at(rel.detach(), cache, (cache.resolution, cache.resolution))
            history.append(_history_frame(grid_maps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        if progress:
            progress(chunk[0] * iterations + it + 1, chunk[1] * iterations)
    with torch.no_grad():
        e = F.normalize(emb.detach(), dim=-1)
        rel = relevance(e, grad=False) if chosen == "factorized" else None
    if rel is None:
        rel = _maps_autograd(clip, cache, e, create_graph=False).detach()
    final = _maps_at(rel, cache, (h, w))
    if keep_history:
        history.append(_history_frame(_maps_at(rel, cache, (cache.resolution,) * 2)))
    return {"embeddings": emb.detach(), "final": final.detach(),
            "first": (final if first_maps is None else first_maps).detach(),
            "losses": losses, "history": history}


def invert(
    clip,
    image,
    masks,
    *,
    iterations: int | None = None,
    lr: float | None = None,
    alpha: float | None = None,
    resolution: int | None = None,
    engine: str = "auto",
    keep_history: bool = False,
    cache: ImageCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk: int | None = None,
) -> InversionResult:
    """MaskInversion for all ``masks`` of one image.

    ``image``: RGB array/PIL/path; ``masks``: list of HxW masks (bool, 0/255, or float
    thresholded at 0.5; other sizes are resized to the image with nearest sampling; empty masks
    are refused). Defaults of ``iterations``, ``lr``, ``alpha``, ``resolution`` come from the
    model's tuned settings (``clip.defaults``). Pass ``cache`` (from a previous result or
    :func:`prepare_image_cache`) to invert more masks on the same image without a new forward.
    ``chunk``: masks optimised at once (default :data:`MASK_CHUNK`); the result does not depend
    on it, the peak memory does. On a GPU nothing waits for the device inside the loop, so
    ``progress`` counts iterations as they are queued, which may run ahead of the device; the
    call returns when the results have reached the host.
    """
    t0 = time.perf_counter()
    d = clip.defaults
    iterations = check_number(
        d["mi_iterations"] if iterations is None else iterations,
        "iterations",
        0,
        LIMITS.max_iterations,
        integer=True,
    )
    lr = check_number(d["mi_lr"] if lr is None else lr, "lr", LIMITS.min_lr, LIMITS.max_lr)
    alpha = check_number(d["mi_alpha"] if alpha is None else alpha, "alpha", 0, LIMITS.max_alpha)
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose from {ENGINES}")
    res = resolution or d.get("mi_resolution")
    if res is not None:
        res = check_number(res, "resolution", LIMITS.min_resolution, LIMITS.max_resolution, True)
    if cache is not None and (cache.model_name != clip.name or cache.resolution != int(res)):
        cache = None  # a cache of another model or resolution cannot be reused
    if cache is None:
        cache = prepare_image_cache(clip, image, res)
    _sync(cache.x_in.device)
    t_fwd = time.perf_counter()
    h, w = cache.image_shape
    mk = torch.as_tensor(load_masks(masks, (h, w)), dtype=clip.dtype, device=clip.device)
    p = mk.shape[0]
    chosen = choose_engine(clip, p, iterations, cache.resolution) if engine == "auto" else engine
    size = max(1, int(chunk or MASK_CHUNK))
    parts = [_optimise(clip, cache, mk[i:i + size], p, chosen, iterations, lr, alpha,
                       keep_history, progress, (i // size, -(-p // size)))
             for i in range(0, p, size)]
    emb = torch.cat([r["embeddings"] for r in parts])
    final = torch.cat([r["final"] for r in parts])
    first_maps = torch.cat([r["first"] for r in parts])
    # the host sees the losses once, after the last chunk (one transfer, not one per iteration)
    per_chunk = (torch.stack([torch.stack(r["losses"]) for r in parts]).tolist()
                 if iterations else [[] for _ in parts])
    if not all(math.isfinite(v) for row in per_chunk for v in row):
        raise InputError("MaskInversion diverged (non-finite loss): lower the learning rate")
    losses = [float(sum(v)) for v in zip(*per_chunk)]
    history = []
    if keep_history:  # every frame of every chunk in one transfer
        frames = torch.stack([torch.cat(v) for v in zip(*(r["history"] for r in parts))])
        history = [f.copy() for f in _history_numpy(frames)]  # own arrays: thinning frees
    _sync(final.device)
    t_end = time.perf_counter()
    return InversionResult(
        embeddings=emb.cpu(),
        maps=final.float().cpu().numpy(),
        initial_maps=first_maps.float().cpu().numpy(),
        history=history,
        losses=losses,
        engine=chosen,
        settings={
            "iterations": iterations,
            "lr": lr,
            "alpha": alpha,
            "resolution": cache.resolution,
            "model": clip.name,
        },
        timings={
            "forward_s": round(t_fwd - t0, 4),
            "optimise_s": round(t_end - t_fwd, 4),
            "total_s": round(t_end - t0, 4),
        },
        cache=cache,
    )
