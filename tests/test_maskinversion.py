"""LeGrad and MaskInversion on tiny random open_clip ViTs (fast) and engine agreement."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip import factory

from regionlab.errors import InputError
from regionlab.explain.legrad import legrad_maps
from regionlab.models.clip import OPENAI_MEAN, OPENAI_STD, REAL_DEFAULTS, LoadedCLIP
from regionlab.region.baselines import METHODS, region_embeddings
from regionlab.region.maskinversion import (
    _maps_autograd,
    _maps_factorized,
    choose_engine,
    invert,
    prepare_image_cache,
)

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_clip(quick_gelu: bool = False, dtype=torch.float32) -> LoadedCLIP:
    name = "Tiny-ViT-test-quick" if quick_gelu else "Tiny-ViT-test"
    factory._MODEL_CONFIGS[name] = {**TINY, "quick_gelu": quick_gelu}
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None).to(dtype).eval().requires_grad_(False)
    defaults = {**REAL_DEFAULTS, "mi_resolution": 32, "legrad_resolution": 32}
    return LoadedCLIP(name, model, open_clip.get_tokenizer("ViT-B-32"), 32, OPENAI_MEAN,
                      OPENAI_STD, torch.device("cpu"), dtype, defaults)


@pytest.fixture(scope="module")
def clip():
    return tiny_clip()


@pytest.fixture(scope="module")
def image():
    return (np.random.RandomState(0).rand(40, 48, 3) * 255).astype(np.uint8)


def box_mask(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.mark.parametrize("quick", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("res", [32, 64])
def test_factorized_equals_autograd(quick, dtype, tol, res, image):
    c = tiny_clip(quick, dtype)
    cache = prepare_image_cache(c, image, res)
    e = F.normalize(torch.randn(5, c.embed_dim, dtype=dtype), dim=-1)
    a = _maps_autograd(c, cache, e, create_graph=False)
    b = _maps_factorized(c, cache, e)
    assert a.shape == (5, (res // 8) ** 2)
    assert (a - b).abs().max().item() <= tol * max(1.0, a.abs().max().item() * 1e4)
    assert (a - b).abs().max() / a.abs().max() < (1e-5 if dtype == torch.float32 else 1e-12)


def test_engines_give_same_embeddings(clip, image):
    masks = [box_mask(40, 48, 0, 0, 20, 20), box_mask(40, 48, 20, 10, 48, 40)]
    ra = invert(clip, image, masks, iterations=5, lr=0.1, engine="autograd")
    rf = invert(clip, image, masks, iterations=5, lr=0.1, engine="factorized")
    cos = F.cosine_similarity(ra.embeddings, rf.embeddings, dim=-1)
    assert cos.min() > 0.9999
    assert np.allclose(ra.losses, rf.losses, atol=1e-4)


@pytest.mark.parametrize("engine", ["factorized", "autograd"])
def test_chunks_give_the_joint_result(clip, image, engine):
    """Issue 30 item 2: masks optimised in chunks (flat memory) give the joint run's result:
    each embedding has its own map, loss term (its share of the mean) and AdamW state."""
    masks = [box_mask(40, 48, x, y, x + 14, y + 12) for x, y in
             [(0, 0), (20, 0), (30, 20), (5, 25), (12, 10)]]
    calls = []
    joint = invert(clip, image, masks, iterations=4, lr=0.1, engine=engine, chunk=16,
                   keep_history=True)
    split = invert(clip, image, masks, iterations=4, lr=0.1, engine=engine, chunk=2,
                   keep_history=True, progress=lambda k, n: calls.append((k, n)))
    assert torch.allclose(joint.embeddings, split.embeddings, atol=1e-5)
    assert np.allclose(joint.maps, split.maps, atol=1e-5)
    assert np.allclose(joint.initial_maps, split.initial_maps, atol=1e-5)
    assert np.allclose(joint.losses, split.losses, atol=1e-6)
    assert len(split.history) == 5 and split.history[0].shape == (5, 32, 32)
    assert calls[-1] == (12, 12) and len(calls) == 12  # 3 chunks x 4 iterations


def test_invert_outputs_and_history(clip, image):
    masks = [box_mask(40, 48, 5, 5, 25, 30)]
    r = invert(clip, image, masks, iterations=4, lr=0.1, keep_history=True)
    assert r.embeddings.shape == (1, 32)
    assert r.maps.shape == (1, 40, 48) and r.initial_maps.shape == (1, 40, 48)
    assert 0 <= r.maps.min() and r.maps.max() <= 1 + 1e-6
    assert len(r.history) == 5 and r.history[0].shape == (1, 32, 32)
    assert len(r.losses) == 4 and r.engine in ("autograd", "factorized")
    assert r.losses[-1] < r.losses[0]  # the optimiser reduces the Dice loss


def test_zero_iterations_returns_global_embedding(clip, image):
    r = invert(clip, image, [box_mask(40, 48, 0, 0, 10, 10)], iterations=0)
    g = region_embeddings(clip, image, [box_mask(40, 48, 0, 0, 10, 10)], "global")
    assert torch.allclose(r.embeddings, g, atol=1e-5)


def test_cache_reuse_skips_forward(clip, image, monkeypatch):
    import regionlab.region.maskinversion as mi

    r = invert(clip, image, [box_mask(40, 48, 0, 0, 10, 10)], iterations=2)
    calls = []
    monkeypatch.setattr(mi, "prepare_image_cache", lambda *a, **k: calls.append(1))
    r2 = invert(clip, image, [box_mask(40, 48, 10, 10, 30, 30)], iterations=2, cache=r.cache)
    assert not calls and r2.embeddings.shape == (1, 32)


def test_model_not_mutated(clip, image):
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    invert(clip, image, [box_mask(40, 48, 0, 0, 10, 10)], iterations=3, engine="autograd")
    after = clip.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in clip.model.parameters())


def test_legrad_any_resolution_and_layers(clip, image):
    q = F.normalize(torch.randn(3, 32), dim=-1)
    for res in (32, 48, 64):
        r = legrad_maps(clip, image, q, resolution=res, layers=2)
        assert r.maps.shape == (3, res, res) and r.layers == [0, 1]
        assert np.isclose(r.maps.max(), 1) and np.isclose(r.maps.min(), 0)
    with pytest.raises(InputError, match="multiple of the patch"):
        legrad_maps(clip, image, q, resolution=30)


def test_legrad_batch_independent(clip, image):
    q = F.normalize(torch.randn(4, 32), dim=-1)
    all4 = legrad_maps(clip, image, q).maps
    one = legrad_maps(clip, image, q[2:3]).maps
    assert np.allclose(all4[2], one[0], atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_baselines_shapes(clip, image, method):
    masks = [box_mask(40, 48, 0, 0, 20, 20), box_mask(40, 48, 20, 10, 48, 40)]
    e = region_embeddings(clip, image, masks, method, iterations=2)
    assert e.shape == (2, 32) and torch.isfinite(e).all()


def test_auto_engine_prefers_factorized_for_many_masks(clip):
    assert choose_engine(clip, 30, 10, 64) == "factorized"


# ------------------------------------------------------------------ bad input


def test_bad_masks(clip, image):
    full = np.ones((40, 48), bool)
    r = invert(clip, image, [full], iterations=2)  # full-image mask works
    assert r.embeddings.shape == (1, 32)
    with pytest.raises(InputError, match="empty"):
        invert(clip, image, [np.zeros((40, 48), bool)], iterations=2)
    with pytest.raises(InputError, match="no masks"):
        invert(clip, image, [], iterations=2)
    small = np.zeros((10, 12), bool)
    small[2:6, 3:9] = True  # other size: resized with nearest
    assert invert(clip, image, [small], iterations=1).maps.shape == (1, 40, 48)
    soft = np.zeros((40, 48), np.float32)
    soft[:20, :20] = 0.7  # non-binary: thresholded at 0.5
    assert invert(clip, image, [soft], iterations=1).embeddings.shape == (1, 32)
    nan = soft.copy()
    nan[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        invert(clip, image, [nan], iterations=1)
    with pytest.raises(InputError, match="limit"):
        invert(clip, image, [full] * 1000, iterations=1)


def test_bad_numbers_and_image(clip, image):
    m = [box_mask(40, 48, 0, 0, 10, 10)]
    with pytest.raises(InputError, match="lr"):
        invert(clip, image, m, lr=float("nan"))
    with pytest.raises(InputError, match="iterations"):
        invert(clip, image, m, iterations=-1)
    with pytest.raises(InputError, match="iterations"):
        invert(clip, image, m, iterations=10**6)
    with pytest.raises(InputError, match="engine"):
        invert(clip, image, m, engine="fast")
    with pytest.raises(InputError, match="resolution"):
        invert(clip, image, m, resolution=4096)
    bad = image.astype(np.float32) / 255
    bad[0, 0, 0] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        invert(clip, bad, m)
