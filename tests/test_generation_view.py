"""Showing generation (issue 28, item 3): the class the CLIP sees in each generated image, the
region view, and what the Generate panel's handler returns."""

from __future__ import annotations

import numpy as np
import pytest

from regionlab.models.generator import SHAPES_GENERATOR
from regionlab.shapes.model import WEIGHTS as SHAPES_CLIP
from regionlab.viz import region_view

needs_clip = pytest.mark.skipif(not SHAPES_CLIP.is_file(), reason="bundled CLIP not trained yet")
needs_generator = pytest.mark.skipif(not (SHAPES_CLIP.is_file() and SHAPES_GENERATOR.is_file()),
                                     reason="bundled CLIP / generator not trained yet")


@pytest.fixture(scope="module")
def clip():
    from regionlab.models import load_clip

    return load_clip("shapes-clip", "cpu")


def _single_object_scenes(n: int):
    from regionlab.shapes.scenes import RenderOptions, generate_scenes

    return generate_scenes("test", n, 0, RenderOptions(min_objects=1, max_objects=1))


@needs_clip
def test_the_clip_sees_the_class_of_single_object_scenes(clip):
    from regionlab.tasks.generate import seen_classes

    # the bundled CLIP reads 98% of held-out single-object scenes right (shapes_quality):
    # at least 18 of 20 here; the checks below use four it reads right
    scenes = _single_object_scenes(20)
    seen = seen_classes(clip, [s.image for s in scenes])
    right = [s for s, c in zip(scenes, seen) if c["label"] == s.objects[0].label]
    assert len(right) >= 18, [(s.objects[0].label, c["label"]) for s, c in zip(scenes, seen)]
    assert all(0.0 < c["score"] <= 1.0 for c in seen)
    scenes = right[:4]
    truth = [s.objects[0].label for s in scenes]
    assert len(set(truth)) > 1  # not one class four times
    assert all(0.5 < c["score"] <= 1.0 for s, c in zip(scenes, seen_classes(
        clip, [s.image for s in scenes])))
    # a given vocabulary is the only one used: the scenes' classes and one other
    vocab = sorted(set(truth)) + ["purple cross" if "purple cross" not in truth else "red star"]
    assert [c["label"] for c in seen_classes(clip, [s.image for s in scenes], vocab)] == truth
    other = [v for v in vocab if v != truth[0]]
    assert seen_classes(clip, [scenes[0].image], other)[0]["label"] != truth[0]
    assert seen_classes(clip, []) == []


def test_region_view_crops_dims_and_outlines():
    image = np.full((40, 60, 3), 200, np.uint8)
    mask = np.zeros((40, 60), bool)
    mask[10:20, 30:50] = True  # 20 wide, 10 high: margin 3 px
    view = region_view(image, mask, colour=(255, 0, 0), dim=0.5)
    assert view.shape == (16, 26, 3)
    assert tuple(view[0, 0]) == (100, 100, 100)  # outside: dimmed
    assert tuple(view[3, 3]) == (255, 0, 0)  # the mask's corner: outline
    assert tuple(view[8, 13]) == (200, 200, 200)  # inside: as is
    big = region_view(image, mask, size=130)
    assert max(big.shape[:2]) == 130 and big.shape[1] > big.shape[0]
    with pytest.raises(ValueError, match="empty"):
        region_view(image, np.zeros((40, 60), bool))


@needs_generator
def test_generate_regions_reports_what_the_clip_sees(clip):
    from regionlab.shapes.scenes import RenderOptions, render_scene
    from regionlab.tasks.generate import GenerateOptions, generate_regions, seen_classes

    scene = render_scene((2, 3, 1), RenderOptions(min_objects=2, max_objects=2))
    masks = [o.mask for o in scene.objects]
    res = generate_regions(scene.image, masks, method="masked-crop", clip=clip,
                           options=GenerateOptions(n=2, seed=1, steps=3), vocab="shapes")
    assert [len(r) for r in res.seen] == [2, 2] and res.vocab == "shapes"
    flat = seen_classes(clip, [im for row in res.images for im in row])
    assert [c for row in res.seen for c in row] == flat
    assert res.to_json()["seen"] == res.seen
    no_vocab = generate_regions(scene.image, masks[:1], method="masked-crop", clip=clip,
                                options=GenerateOptions(n=1, steps=1))
    assert no_vocab.seen is None
    with pytest.raises(Exception, match="class"):  # bad vocabulary: refused before any work
        generate_regions(scene.image, masks, method="masked-crop", clip=clip,
                         options=GenerateOptions(n=1, steps=1), vocab=[])


def test_generate_handler_shows_each_region_then_its_images(monkeypatch):
    """on_generate with the model work replaced: one gallery row per region (the region, then
    its images captioned with what the CLIP sees), the vocabulary of the Region tab passed on,
    timings and results kept."""
    from regionlab.tasks.generate import GenerateResult
    from regionlab.ui import handlers, service
    from regionlab.ui.options import AppOptions
    from regionlab.ui.session import Session

    s = Session()
    image = np.zeros((50, 80, 3), np.uint8)
    image[5:20, 5:20] = (255, 0, 0)
    s.set_image(image, "test")
    for box in ((5, 5, 20, 20), (40, 10, 70, 40)):
        m = np.zeros((50, 80), bool)
        m[box[1]:box[3], box[0]:box[2]] = True
        s.add_region(m, "brush")
    calls = {}

    def fake_generate(img, masks, **kw):
        calls.update(kw, masks=masks)
        n = kw["n"]
        images = [[np.full((64, 64, 3), 10 * (p * n + k), np.uint8) for k in range(n)]
                  for p in range(len(masks))]
        seen = [[{"label": f"class {p}{k}", "score": 0.5 + 0.1 * k} for k in range(n)]
                for p in range(len(masks))]
        return GenerateResult(images, "maskinversion", "fake-generator", "shapes-clip",
                              {"n": n}, 0.01, seen=seen, vocab=kw["vocab"] or "shapes")

    monkeypatch.setattr(service, "generate", fake_generate)
    monkeypatch.setattr(service, "vocab_warnings", lambda *a, **k: [])
    opts = AppOptions()
    s2, gallery, timings = handlers.on_generate(
        s, "", "cpu", 3, 0, 4, opts, lambda *a, **k: None, "shapes", "red star, blue circle",
        "single")
    assert calls["vocab"] == ["red star", "blue circle"] and calls["n"] == 3
    assert calls["masks"].shape == (2, 50, 80)
    assert gallery.columns == 4  # the region + its 3 images: one region per row
    captions = [item["caption"] for item in gallery.value]
    assert captions == [
        "region 1 · the region", "region 1 · generated 1: class 00 (0.50)",
        "region 1 · generated 2: class 01 (0.60)", "region 1 · generated 3: class 02 (0.70)",
        "region 2 · the region", "region 2 · generated 1: class 10 (0.50)",
        "region 2 · generated 2: class 11 (0.60)", "region 2 · generated 3: class 12 (0.70)"]
    assert "shapes-clip sees" in gallery.label and "red star, blue circle" in gallery.label
    assert "generate_s" in timings and s2.results["generate"]["seen"][1][2]["label"] == "class 12"
    assert s2.results["generate"]["regions"] == ["region 1", "region 2"]

    # the region item is the region: the box of region 1 (red) grown by its margin
    view = handlers.generation_view(image, [r.mask for r in s.regions], s.names(),
                                    [r.colour for r in s.regions],
                                    fake_generate(image, s.masks(), n=1, vocab="shapes"))
    region1 = view["items"][0][0]
    assert max(region1.shape[:2]) == 128 and view["columns"] == 2
    centre = region1[region1.shape[0] // 2, region1.shape[1] // 2]
    assert tuple(centre) == (255, 0, 0)

    # no vocabulary chosen: the service picks the CLIP's default (None passed on)
    handlers.on_generate(s, "", "cpu", 1, 0, 4, opts, lambda *a, **k: None)
    assert calls["vocab"] is None
