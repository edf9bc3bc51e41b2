"""The fused ReLU-column-sum kernel of the factorized MaskInversion engine (issue 30 item 1).

The kernel is built at first use (about 6 s, then cached); every test that needs it skips
when it cannot be built here (no compiler, no ninja), since the library then falls back to
the PyTorch expression, which the fallback tests check.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_maskinversion import box_mask, tiny_clip

import regionlab.region.fused_relevance as fr
import regionlab.region.maskinversion as mi
from regionlab.explain.legrad import relevance_from_grad


@pytest.fixture(scope="module")
def kernel():
    mod = fr.load_kernel()
    if mod is None:
        pytest.skip("the fused relevance kernel cannot be built here (see the logged reason)")
    return mod


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-300)).item()


TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
# (P, H, N, d): N = 1..3, N and d off every tile size (16/32/64 columns, 4/6 rows, 8..64 lanes)
SHAPES = [(1, 1, 1, 1), (2, 3, 1, 5), (1, 2, 2, 3), (2, 1, 3, 7), (3, 2, 17, 16),
          (2, 3, 65, 64), (1, 2, 130, 33), (2, 2, 200, 72)]


def data(shape, dtype, seed=0):
    p, h, n, d = shape
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(p, h, n, d, generator=gen, dtype=dtype)
    vt = torch.randn(h, d, n, generator=gen, dtype=dtype)
    return g, vt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_pytorch(kernel, dtype, shape):
    g, vt = data(shape, dtype)
    ref_g = g.clone().requires_grad_()
    ref = relevance_from_grad(ref_g @ vt[None])
    fg = g.clone().requires_grad_()
    out = fr.fused_relevance(fg, vt)
    assert out.shape == ref.shape == (shape[0], shape[2] - 1) and out.dtype == dtype
    if shape[2] > 1:
        assert rel_err(out, ref) <= TOL[dtype]
    cols = fr.relu_colsum(g, vt)  # before the head sum and the CLS column drop
    assert rel_err(cols, (g @ vt).clamp(min=0).sum(-2)) <= TOL[dtype]
    w = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    (ref * w).sum().backward()
    (out * w).sum().backward()
    if shape[2] > 1:
        assert rel_err(fg.grad, ref_g.grad) <= TOL[dtype]
    else:
        assert not fg.grad.any() and not ref_g.grad.any()  # only the CLS column


def test_real_size_float32(kernel):
    """ViT-B/16 at 448 px, one mask: N = 785, d = 64, 12 heads."""
    g, vt = data((1, 12, 785, 64), torch.float32)
    g.requires_grad_()
    ref = relevance_from_grad(g @ vt[None])
    (gr,) = torch.autograd.grad(ref.sum(), g)
    out = fr.fused_relevance(g, vt)
    (gf,) = torch.autograd.grad(out.sum(), g)
    assert rel_err(out, ref) <= 1e-5 and rel_err(gf, gr) <= 1e-5


def test_gradcheck_float64(kernel):
    g, vt = data((2, 2, 7, 5), torch.float64, seed=3)
    g.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: fr.relu_colsum(x, vt), (g,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(lambda x: fr.fused_relevance(x, vt), (g,), eps=1e-6,
                                    atol=1e-7)


def test_batched_interface_and_views(kernel):
    """(B, N, d) x (B, d, N) -> (B, N); non-contiguous g (the engine's transposed view)."""
    g, vt = data((1, 4, 30, 8), torch.float64)
    assert rel_err(fr.relu_colsum(g[0], vt), (g[0] @ vt).clamp(min=0).sum(-2)) <= 1e-12
    gt = g.transpose(1, 2).contiguous().transpose(1, 2)  # (P, H, N, d) view, not contiguous
    assert not gt.is_contiguous()
    assert rel_err(fr.relu_colsum(gt, vt), fr.relu_colsum(g, vt)) == 0


def test_no_grad_and_shape_errors(kernel):
    g, vt = data((2, 3, 20, 8), torch.float32)
    g.requires_grad_()
    with torch.no_grad():
        out = fr.fused_relevance(g, vt)
    assert not out.requires_grad
    assert rel_err(out, relevance_from_grad(g.detach() @ vt[None])) <= 1e-5
    with pytest.raises(ValueError, match="relu_colsum needs"):
        fr.relu_colsum(g, vt[:, :, :5])


def test_switched_off_is_the_pytorch_expression(monkeypatch):
    g, vt = data((2, 3, 20, 8), torch.float32)
    monkeypatch.setenv(fr.ENV_SWITCH, "0")

    def boom(*a, **k):
        raise AssertionError("the kernel must not be loaded when switched off")

    monkeypatch.setattr(fr, "load_kernel", boom)
    assert not fr.enabled()
    assert torch.equal(fr.fused_relevance(g, vt), relevance_from_grad(g @ vt[None]))
    assert torch.equal(fr.relu_colsum(g, vt), (g @ vt).clamp(min=0).sum(-2))


def test_failed_build_falls_back_with_one_warning(monkeypatch, caplog):
    from torch.utils import cpp_extension

    def fail(*a, **k):
        raise RuntimeError("Ninja is required to load C++ extensions (simulated)")

    monkeypatch.setattr(cpp_extension, "load_inline", fail)
    monkeypatch.setattr(fr, "_modules", {})
    monkeypatch.setattr(fr, "_told", set())
    monkeypatch.delenv(fr.ENV_SWITCH, raising=False)
    g, vt = data((2, 3, 20, 8), torch.float32)
    g.requires_grad_()
    with caplog.at_level(logging.WARNING, logger="regionlab.region"):
        for _ in range(3):
            out = fr.fused_relevance(g, vt)
    ref = relevance_from_grad(g @ vt[None])
    assert torch.equal(out, ref) and out.requires_grad
    warnings = [r for r in caplog.records if "could not be built" in r.getMessage()]
    assert len(warnings) == 1 and "simulated" in warnings[0].getMessage()
    assert fr.load_kernel() is None


def test_other_devices_dtypes_and_vt_gradients_use_pytorch(monkeypatch, kernel):
    monkeypatch.setattr(fr, "load_kernel", lambda *a, **k: pytest.fail("kernel used"))
    g, vt = data((2, 3, 20, 8), torch.float32)
    meta = fr.fused_relevance(g.to("meta"), vt.to("meta"))  # stands in for cuda: not CPU
    assert meta.shape == (2, 19) and meta.device.type == "meta"
    gb, vb = g.to(torch.bfloat16), vt.to(torch.bfloat16)
    assert torch.equal(fr.fused_relevance(gb, vb), relevance_from_grad(gb @ vb[None]))
    vt_g = vt.clone().requires_grad_()  # the kernel has no gradient for vt: PyTorch gives it
    fr.fused_relevance(g, vt_g).sum().backward()
    assert vt_g.grad is not None and vt_g.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("res", [32, 64])
def test_maps_factorized_same_with_and_without_kernel(monkeypatch, kernel, dtype, tol, res):
    c = tiny_clip(False, dtype)
    image = (np.random.RandomState(0).rand(40, 48, 3) * 255).astype(np.uint8)
    cache = mi.prepare_image_cache(c, image, res)
    e0 = F.normalize(torch.randn(5, c.embed_dim, dtype=dtype), dim=-1)
    outs = {}
    for fused in (True, False):
        monkeypatch.setattr(mi, "USE_FUSED_RELEVANCE", fused)
        e = e0.clone().requires_grad_()
        rel = mi._maps_factorized(c, cache, e)
        (grad,) = torch.autograd.grad((rel * torch.linspace(-1, 1, rel.shape[1],
                                                            dtype=dtype)).sum(), e)
        outs[fused] = rel.detach(), grad
    assert rel_err(outs[True][0], outs[False][0]) <= tol
    assert rel_err(outs[True][1], outs[False][1]) <= tol * 10


def test_invert_same_with_and_without_kernel(monkeypatch, kernel):
    c = tiny_clip()
    image = (np.random.RandomState(0).rand(40, 48, 3) * 255).astype(np.uint8)
    masks = [box_mask(40, 48, 0, 0, 20, 20), box_mask(40, 48, 20, 10, 48, 40)]
    runs = {}
    for fused in (True, False):
        monkeypatch.setattr(mi, "USE_FUSED_RELEVANCE", fused)
        runs[fused] = mi.invert(c, image, masks, iterations=4, lr=0.1, engine="factorized")
    assert np.allclose(runs[True].losses, runs[False].losses, atol=1e-5)
    assert F.cosine_similarity(runs[True].embeddings, runs[False].embeddings).min() > 0.99999


@pytest.mark.slow  # two more builds of about 6 s each the first time
@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_other_instruction_sets(isa, monkeypatch):
    mod = fr.load_kernel(isa)
    if mod is None:
        pytest.skip(f"the {isa} build is not possible here")
    monkeypatch.setitem(fr._modules, "native", mod)
    for dtype in (torch.float32, torch.float64):
        for shape in SHAPES:
            g, vt = data(shape, dtype)
            g.requires_grad_()
            ref = relevance_from_grad(g @ vt[None])
            (gr,) = torch.autograd.grad(ref.sum(), g)
            out = fr.fused_relevance(g, vt)
            (gf,) = torch.autograd.grad(out.sum(), g)
            if shape[2] > 1:
                assert rel_err(out, ref) <= TOL[dtype] and rel_err(gf, gr) <= TOL[dtype]
