"""SAM plumbing with the tiny randomly initialised SAM (128 px input, 32 px logits).

Random weights make the masks meaningless, so these tests check what does not depend on them:
specs and availability, coordinate transforms, shapes at the original image size, multimask,
refinement with previous logits, one image embedding per session reused by every click, and
sessions that do not interfere.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from regionlab import models
from regionlab.errors import InputError, ModelUnavailableError
from regionlab.models.sam import ARCHS, LoadedSAM, build_tiny_sam, infer_arch
from regionlab.segment.interactive import SamSegmenter, make_segmenter
from regionlab.segment.proposals import Proposal, generate_proposals

TINY = "sam-tiny-random"


def _image(h: int = 60, w: int = 100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 90, np.uint8)
    img[h // 4: h // 2, w // 5: w // 2] = (220, 40, 40)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tiny model is latency-bound: extra threads only add synchronisation on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tiny() -> LoadedSAM:
    return models.load(TINY, "sam", "cpu")


@pytest.fixture()
def encoder_calls(tiny):
    calls = []
    encoder = tiny.model.image_encoder
    handle = encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    yield calls
    handle.remove()


@pytest.fixture()
def prompt_inputs(tiny):
    """The (points, boxes) each prompt-encoder call received, in the model's input frame."""
    seen = []

    def hook(module, args, kwargs):
        pts, boxes = kwargs.get("points"), kwargs.get("boxes")
        seen.append((None if pts is None else (pts[0].clone(), pts[1].clone()),
                     None if boxes is None else boxes.clone()))

    handle = tiny.model.prompt_encoder.register_forward_pre_hook(hook, with_kwargs=True)
    yield seen
    handle.remove()


# ---------------------------------------------------------------- specs


def test_sam_specs_listed_with_availability(monkeypatch):
    for var in ("REGIONLAB_SAM_CHECKPOINT", "REGIONLAB_SAM_VIT_B", "REGIONLAB_SAM_VIT_L",
                "REGIONLAB_SAM_VIT_H"):
        monkeypatch.delenv(var, raising=False)
    infos = {m.name: m for m in models.list_models("sam")}
    for name in ("sam-vit-b", "sam-vit-l", "sam-vit-h", "sam", TINY):
        assert name in infos
    assert infos[TINY].available
    b = infos["sam-vit-b"]
    assert not b.available and "REGIONLAB_SAM_VIT_B" in b.reason
    with pytest.raises(ModelUnavailableError, match="sam_vit_b_01ec64.pth"):
        models.load("sam-vit-b", "sam")


def test_env_checkpoint_missing_or_bad(monkeypatch, tmp_path):
    monkeypatch.setenv("REGIONLAB_SAM_VIT_L", str(tmp_path / "nope.pth"))
    ok, why = models.get_spec("sam-vit-l", "sam").available()
    assert not ok and "nope.pth" in why
    bad = tmp_path / "bad.pth"
    torch.save({"something": torch.zeros(2)}, bad)
    spec = models.get_spec(f"vit_b@{bad}", "sam")
    assert spec.available()[0]
    with pytest.raises(ModelUnavailableError, match="not a segment-anything checkpoint"):
        models.load(spec.name, "sam")


def test_tiny_sam_is_deterministic_and_cached(tiny):
    again = build_tiny_sam()
    for (k, a), (_, b) in zip(tiny.model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    assert models.load(TINY, "sam", "cpu") is tiny
    assert tiny.image_size == 128 and tiny.low_res_size == 32
    assert not any(p.requires_grad for p in tiny.model.parameters())


def test_infer_arch_from_weights():
    for arch, (width, *_rest) in ARCHS.items():
        assert infer_arch({"image_encoder.patch_embed.proj.weight": torch.zeros(width, 3, 16, 16)}
                          ) == arch


@pytest.mark.slow
def test_real_size_checkpoint_round_trip(monkeypatch, tmp_path):
    """A (random) ViT-B checkpoint given by REGIONLAB_SAM_VIT_B loads with weights_only."""
    from regionlab.models.sam import build_sam_model

    path = tmp_path / "sam_vit_b.pth"
    torch.save(build_sam_model("vit_b").state_dict(), path)
    monkeypatch.setenv("REGIONLAB_SAM_VIT_B", str(path))
    models.clear_cache()
    loaded = models.load("sam-vit-b", "sam", "cpu")
    assert loaded.arch == "vit_b" and loaded.image_size == 1024 and loaded.low_res_size == 256
    models.clear_cache()


# ---------------------------------------------------------------- interactive


def test_shapes_at_original_size_and_multimask():
    seg = make_segmenter(TINY)
    assert isinstance(seg, SamSegmenter)
    seg.set_image(_image(60, 100))
    r = seg.predict(points=[(50, 30, 1)], multimask=True)
    assert r.masks.shape == (3, 60, 100) and r.masks.dtype == bool
    assert r.scores.shape == (3,) and np.all(np.diff(r.scores) <= 0)  # best first
    assert r.logits.shape == (3, 32, 32) and r.low_res_logits.shape == (32, 32)
    assert not r.fallback and r.backend == TINY
    one = seg.predict(points=[(50, 30, 1)], multimask=False)
    assert one.masks.shape == (1, 60, 100) and one.scores.shape == (1,)
    assert r.pick(2).masks.shape == (1, 60, 100)


def test_embedding_computed_once_and_reused(encoder_calls):
    seg = make_segmenter(TINY)
    seg.set_image(_image())
    assert len(encoder_calls) == 1 and tuple(encoder_calls[0][-2:]) == (128, 128)
    r1 = seg.predict(points=[(50, 30, 1)])
    r2 = seg.predict(points=[(50, 30, 1), (10, 50, 0)], prev_logits=r1.low_res_logits)
    seg.predict(box=(20, 15, 50, 30))
    assert len(encoder_calls) == 1 and seg.embed_count == 1
    assert r2.masks.shape[1:] == (60, 100)


def test_point_and_box_coordinates_follow_longest_side_rule(prompt_inputs):
    seg = make_segmenter(TINY)
    seg.set_image(_image(60, 100))  # longest side 100 -> 128, the other 60 -> round(76.8) = 77
    sx, sy = 128 / 100, 77 / 60
    seg.predict(points=[(50, 30, 1), (99, 0, 0)])
    (coords, labels), box = prompt_inputs[-1]
    assert box is None
    # pixel indices arrive scaled per axis (the prompt encoder adds the half-pixel shift itself)
    np.testing.assert_allclose(coords[0].numpy(), [[50 * sx, 30 * sy], [99 * sx, 0.0]], atol=1e-4)
    assert labels[0].tolist() == [1, 0]
    seg.predict(box=(10, 20, 41, 31))  # exclusive ends -> SAM's inclusive corners 40, 30
    _, box = prompt_inputs[-1]
    np.testing.assert_allclose(box.numpy().reshape(-1), [10 * sx, 20 * sy, 40 * sx, 30 * sy],
                               atol=1e-4)


def test_masks_follow_the_logits_at_original_size():
    """Upsampled logits > 0 are the mask: SAM's postprocessing, done at the original size."""
    seg = make_segmenter(TINY)
    img = _image(60, 100)
    seg.set_image(img)
    r = seg.predict(points=[(50, 30, 1)], multimask=False)
    lowres = torch.from_numpy(r.logits)[None]
    model = seg.loaded.model
    up = model.postprocess_masks(lowres, (77, 128), (60, 100))[0]  # 60 * 1.28 = 76.8 -> 77
    assert np.array_equal(up.numpy() > model.mask_threshold, r.masks)


def test_prev_logits_change_the_result_and_shape_is_checked():
    seg = make_segmenter(TINY)
    seg.set_image(_image())
    r = seg.predict(points=[(50, 30, 1)], multimask=False)
    plain = seg.predict(points=[(50, 30, 1)], multimask=False)
    refined = seg.predict(points=[(50, 30, 1)], multimask=False,
                          prev_logits=np.full((32, 32), 8.0, np.float32))
    assert np.array_equal(r.masks, plain.masks)  # deterministic
    assert not np.allclose(refined.logits, plain.logits)  # the mask prompt is used
    with pytest.raises(InputError, match="prev_logits"):
        seg.predict(points=[(50, 30, 1)], prev_logits=np.zeros((256, 256), np.float32))


def test_huge_grey_and_rgba_images_give_masks_at_original_size(encoder_calls):
    seg = make_segmenter(TINY)
    tall = np.zeros((3000, 40), np.uint8)  # greyscale, longest side above LIMITS.max_side
    tall[1000:2000, 10:30] = 255
    seg.set_image(tall)
    assert tuple(encoder_calls[-1][-2:]) == (128, 128)
    r = seg.predict(points=[(20, 1500, 1)], box=(5, 900, 35, 2100))
    assert r.masks.shape == (3, 3000, 40)
    rgba = np.zeros((50, 70, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[10:30, 10:40, 3] = 255
    seg.set_image(rgba)
    assert seg.predict(points=[(20, 20)]).masks.shape == (3, 50, 70)


def test_bad_prompts_are_clear_errors():
    seg = make_segmenter(TINY)
    with pytest.raises(InputError, match="set_image"):
        seg.predict(points=[(1, 1, 1)])
    seg.set_image(_image(60, 100))
    with pytest.raises(InputError, match="outside"):
        seg.predict(points=[(100, 10, 1)])
    with pytest.raises(InputError, match="outside"):
        seg.predict(points=[(-1, 10, 1)])
    with pytest.raises(InputError, match="point"):
        seg.predict()
    with pytest.raises(InputError, match="foreground"):
        seg.predict(points=[(5, 5, 0)])
    with pytest.raises(InputError, match="degenerate"):
        seg.predict(box=(10, 10, 10, 40))
    with pytest.raises(InputError, match="outside"):
        seg.predict(box=(200, 200, 300, 300))


def test_sessions_do_not_share_embeddings():
    a, b = make_segmenter(TINY), make_segmenter(TINY)
    a.set_image(_image(seed=1))
    before = a.predict(points=[(50, 30, 1)])
    b.set_image(_image(80, 50, seed=2))  # another user's image on the same shared model
    after = a.predict(points=[(50, 30, 1)])
    assert np.array_equal(before.masks, after.masks) and before.masks.shape[1:] == (60, 100)
    assert np.allclose(before.logits, after.logits)


def test_concurrent_sessions_match_sequential_results():
    images = [_image(seed=s) for s in range(4)]
    expected = []
    for im in images:
        s = make_segmenter(TINY)
        s.set_image(im)
        expected.append(s.predict(points=[(40, 20, 1)]).logits)
    got: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        s = make_segmenter(TINY)
        s.set_image(images[i])
        got[i] = s.predict(points=[(40, 20, 1)]).logits

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for i in range(4):
        np.testing.assert_allclose(got[i], expected[i], atol=1e-5)


def test_auto_picks_sam_when_available_and_says_so(monkeypatch):
    monkeypatch.setenv("REGIONLAB_SAM", TINY)
    seg = make_segmenter("auto")
    assert isinstance(seg, SamSegmenter) and seg.notice is None
    monkeypatch.delenv("REGIONLAB_SAM")
    with pytest.raises(ModelUnavailableError):
        make_segmenter("sam-vit-h")  # named explicitly: no silent substitution


# ---------------------------------------------------------------- proposals


def test_sam_proposals_plumbing():
    img = _image(60, 100)
    props = generate_proposals(img, TINY, points_per_side=4, pred_iou_thresh=-1e3,
                               stability_score_thresh=0.0, min_area=1, max_proposals=5,
                               nms_iou=0.7)
    assert 1 <= len(props) <= 5
    scores = [p.score for p in props]
    assert scores == sorted(scores, reverse=True)
    for p in props:
        assert isinstance(p, Proposal) and p.mask.shape == (60, 100) and p.mask.dtype == bool
        x0, y0, x1, y1 = p.box
        assert all(isinstance(v, int) for v in p.box)
        assert p.mask[y0:y1, x0:x1].sum() == p.mask.sum() > 0  # tight, exclusive ends
        assert p.mask[y0, :].any() and p.mask[y1 - 1, :].any()
        assert p.mask[:, x0].any() and p.mask[:, x1 - 1].any()
    flat = np.stack([p.mask.ravel() for p in props]).astype(float)
    inter = flat @ flat.T
    union = flat.sum(1)[:, None] + flat.sum(1)[None] - inter
    iou = inter / np.maximum(union, 1)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.7 + 1e-6  # deduplicated


@pytest.mark.gpu
def test_tiny_sam_on_cuda_returns_numpy_at_original_size():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    seg = make_segmenter(TINY, device="cuda")
    assert seg.loaded.device.type == "cuda"
    seg.set_image(_image(60, 100))
    r = seg.predict(points=[(50, 30, 1)], box=(20, 10, 60, 40))
    assert isinstance(r.masks, np.ndarray) and r.masks.shape == (3, 60, 100)
    assert isinstance(r.logits, np.ndarray) and r.logits.shape == (3, 32, 32)
