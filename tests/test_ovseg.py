"""OVSeg labelling: crops, fusion, "others", label maps, CLI, bad input, mask-adapted CLIP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from regionlab import viz
from regionlab.errors import InputError, ModelUnavailableError
from regionlab.models.clip import OPENAI_MEAN, OPENAI_STD, LoadedCLIP
from regionlab.tasks import ovseg
from regionlab.tasks.ovseg import LabelOptions

MEAN, STD = OPENAI_MEAN, OPENAI_STD


@pytest.fixture(scope="module")
def rand_clip() -> LoadedCLIP:
    """The ShapesWorld CLIP architecture with random weights (fast; no bundled file needed)."""
    from regionlab.shapes.model import build_model, tokenizer

    torch.manual_seed(0)
    model = build_model().eval().requires_grad_(False)
    return LoadedCLIP("test-rand-shapes", model, tokenizer(), 64, MEAN, STD,
                      torch.device("cpu"), torch.float32,
                      {"mi_lr": 0.03, "mi_iterations": 2, "mi_alpha": 0.0, "mi_resolution": 64})


@pytest.fixture(scope="module")
def scene():
    from regionlab.shapes.scenes import RenderOptions, render_scene

    sc = render_scene(7, RenderOptions(min_objects=3, max_objects=3))
    assert len(sc.objects) >= 2
    return sc


# ----------------------------------------------------------------------------- crops


def _image(h=40, w=50, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_masked_crop_tight_box_and_exact_mean_fill():
    img = _image()
    m = np.zeros((40, 50), bool)
    m[10:20, 5:12] = True
    m[19, 12:30] = True  # an L shape: tight box (5, 10, 30, 20)
    assert ovseg.tight_box(m) == (5, 10, 30, 20)
    x, y = ovseg.region_crops(img, m[None], 25, MEAN, STD)[:2]
    norm = ovseg.normalise_image(img, MEAN, STD)[:, 10:20, 5:30]
    inside = torch.from_numpy(m[10:20, 5:30])
    resized = torch.nn.functional.interpolate(
        torch.where(inside, norm, torch.zeros(())).unsqueeze(0), size=(25, 25),
        mode="bicubic", align_corners=False)[0]
    assert torch.allclose(x[0], resized)
    # before the stretch: outside-mask pixels exactly 0, inside ones the normalised image
    c = ovseg._cut(ovseg.normalise_image(img, MEAN, STD), (5, 10, 30, 20)) * inside.float()
    assert (c[:, ~inside] == 0).all() and torch.equal(c[:, inside], norm[:, inside])
    # a square box stretched to its own size (identity): the final CLIP input is exactly 0
    # outside the mask (the mean colour after normalisation) and the image inside it
    sq = np.zeros((40, 50), bool)
    sq[20:30, 30:40] = True
    sq[22:25, 31:35] = False
    xs = ovseg.region_crops(img, sq[None], 10, MEAN, STD)[0][0]
    ins = torch.from_numpy(sq[20:30, 30:40])
    full = ovseg.normalise_image(img, MEAN, STD)[:, 20:30, 30:40]
    assert (xs[:, ~ins] == 0).all() and torch.equal(xs[:, ins], full[:, ins])
    assert y.shape == (1, 25, 25) and y.dtype == torch.bool


def test_stretched_crop_is_zero_far_from_the_mask():
    img = _image(64, 64, 1)
    m = np.zeros((64, 64), bool)
    m[8:40, 8:12] = True  # thin vertical bar + a blob far right
    m[8:12, 30:34] = True
    x, cm, boxes = ovseg.region_crops(img, m[None], 64, MEAN, STD)
    assert boxes == [(8, 8, 34, 40)]
    # crop 26 x 32 -> 64 x 64; rows 20..31 of the crop are outside the mask for x >= 4
    sub = x[0][:, 48:60, 20:40]  # far from every mask pixel (bicubic support is +-2 source px)
    assert (sub == 0).all()
    assert cm[0][:10, :8].any() and not cm[0][48:60, 20:40].any()
    assert x.abs().sum() > 0


def test_box_crop_keeps_context_and_square_option():
    img = _image(30, 60, 2)
    m = np.zeros((30, 60), bool)
    m[10:14, 10:30] = True
    m[13, 10] = False
    plain, _, b1 = ovseg.region_crops(img, m[None], 20, MEAN, STD, crop="box")
    masked, _, _ = ovseg.region_crops(img, m[None], 20, MEAN, STD, crop="masked")
    assert not torch.equal(plain, masked)
    assert b1 == [(10, 10, 30, 14)]
    _, _, b2 = ovseg.region_crops(img, m[None], 20, MEAN, STD, square=True)
    x0, y0, x1, y1 = b2[0]
    assert x1 - x0 == y1 - y0 == 20 and (x0, x1) == (10, 30) and y0 <= 10 and y1 >= 14
    assert ovseg.square_box((0, 0, 2, 10)) == (-4, 0, 6, 10)  # past the image edge: mean pad


def test_soft_masks_binarised_at_035():
    soft = np.zeros((8, 8), np.float32)
    soft[2, 2], soft[3, 3] = 0.34, 0.36
    grey = np.zeros((8, 8), np.uint8)
    grey[1, 1], grey[4, 4] = 80, 100  # 0.35 * 255 = 89.25
    out = ovseg.binarise_masks([soft, grey], (8, 8))
    assert out[0].sum() == 1 and out[0][3, 3]
    assert out[1].sum() == 1 and out[1][4, 4]
    with pytest.raises(InputError, match="empty"):
        ovseg.binarise_masks([np.full((8, 8), 0.2)], (8, 8))


# ----------------------------------------------------------------------------- fusion


def _masks():
    m = np.zeros((3, 4, 6), bool)
    m[0, :, :3] = True  # left half
    m[1, :, 2:5] = True  # overlaps mask 0 in column 2
    m[2, 0, 5] = True  # one pixel
    return m  # column 5 rows 1..3 are uncovered


def test_eval_fusion_soft_sum_argmax():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.2, 0.2, 0.6]])
    lm = ovseg.fuse(p, _masks(), 3, "eval")
    assert (lm[:, :2] == 1).all()
    # column 2: sums A=0.8, B=0.7, C=0.5 -> A
    assert (lm[:, 2] == 1).all()
    assert (lm[:, 3:5] == 2).all()
    assert lm[0, 5] == 3 and (lm[1:, 5] == 0).all()


def test_demo_fusion_best_mask_per_class():
    # A: best mask 0 (0.7); B: best mask 0 too (0.6) -> shared mask goes to A (higher);
    # C: best mask 2
    p = np.array([[0.7, 0.6, 0.1], [0.2, 0.3, 0.2], [0.1, 0.1, 0.7]])
    lm = ovseg.fuse(p, _masks(), 3, "demo")
    assert (lm[:, :3] == 1).all()  # mask 0 (A); mask 1 not chosen by anyone
    assert (lm[:, 3:5] == 0).all()
    assert lm[0, 5] == 3
    assert ovseg.mask_labels(p, 3, "demo") == [0, None, 2]
    assert ovseg.mask_labels(p, 3, "eval") == [0, 1, 2]
    # min_score drops weak masks: C's 0.7 survives 0.65, A's 0.7 too; 0.75 drops all
    assert (ovseg.fuse(p, _masks(), 3, "demo", min_score=0.75) == 0).all()


def test_others_rule():
    assert ovseg.scored_class_list(["cat"]) == ["cat", "others"]
    assert ovseg.scored_class_list(["Others"]) == ["Others", "other things"]
    assert ovseg.scored_class_list(["cat"], others=False) == ["cat"]
    assert ovseg.scored_class_list(["cat", "dog"]) == ["cat", "dog"]
    m = _masks()
    # the class's best mask is mask 1, but "others" beats it there -> nothing painted
    p = np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9]])
    assert (ovseg.fuse(p, m, 1, "demo") == 0).all()
    assert ovseg.mask_labels(p, 1, "demo") == [None, None, None]
    # the class wins its best mask -> only that mask is painted (others' masks stay 0)
    p = np.array([[0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    lm = ovseg.fuse(p, m, 1, "demo")
    assert (lm == 1).sum() == m[1].sum() and (lm[m[1]] == 1).all()
    # evaluation fusion: every mask where the class beats "others"
    lm = ovseg.fuse(p, m, 1, "eval")
    assert lm[0, 5] == 1 and (lm[:, 3:5] == 1).all() and (lm[:, :2] == 0).all()


def test_blend_probabilities_geometric():
    a = torch.tensor([[0.8, 0.2], [0.5, 0.5]])
    b = torch.tensor([[0.2, 0.8], [0.9, 0.1]])
    assert torch.equal(ovseg.blend_probabilities(a, b, 0.0), a)
    assert torch.equal(ovseg.blend_probabilities(a, b, 1.0), b)
    out = ovseg.blend_probabilities(a, b, 0.5)
    ref = torch.sqrt(a * b)
    assert torch.allclose(out, ref / ref.sum(-1, keepdim=True))
    out = ovseg.blend_probabilities(a, b, 0.7)
    ref = a ** 0.3 * b ** 0.7
    assert torch.allclose(out, ref / ref.sum(-1, keepdim=True), atol=1e-6)


def test_coverage_patterns_many_masks():
    rng = np.random.default_rng(0)
    m = rng.random((70, 9, 11)) > 0.5  # > 64 masks: multi-byte patterns
    pats, inv = ovseg.coverage_patterns(m)
    assert np.array_equal(pats[inv].T.reshape(m.shape), m)


# ----------------------------------------------------------------------------- label()


def test_label_map_indices_overlay_and_annotations(rand_clip, scene):
    masks = [o.mask for o in scene.objects]
    classes = ["red circle", "blue star", "green square", "purple cross"]
    r = ovseg.label(scene.image, classes, masks=masks, clip=rand_clip,
                    options=LabelOptions(fusion="eval"))
    assert r.label_map.shape == scene.image.shape[:2] and r.label_map.dtype == np.int32
    assert set(np.unique(r.label_map)) <= set(range(len(classes) + 1))
    union = np.any(masks, axis=0)
    assert (r.label_map[~union] == 0).all() and (r.label_map[union] > 0).all()
    for reg, m in zip(r.regions, masks):
        assert np.array_equal(reg.mask, m) and reg.box == ovseg.tight_box(m)
        assert reg.label == reg.top[0]["label"]  # eval fusion, no overlap: the mask's argmax
        assert (r.label_map[m] == classes.index(reg.label) + 1).all()
        assert len(reg.top) == 4 and abs(sum(t["score"] for t in reg.top) - 1) < 1e-4
    assert np.allclose(r.probabilities.sum(1), 1, atol=1e-5)
    assert r.annotations and {n for _, n in r.annotations} == {x.label for x in r.regions}
    for mask, name in r.annotations:
        assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
        assert np.array_equal(mask > 0, r.label_map == classes.index(name) + 1)
    assert r.overlay.shape[0] >= 64 and r.overlay.shape[1] > 64 and r.overlay.dtype == np.uint8
    assert set(r.colours) == set(classes)
    json.dumps(r.to_dict())


def test_one_batched_forward_for_all_crops(rand_clip, scene):
    calls = []
    h = rand_clip.visual.conv1.register_forward_hook(lambda mod, i, o: calls.append(i[0].shape[0]))
    try:
        masks = [o.mask for o in scene.objects] * 3
        ovseg.label(scene.image, "red circle, blue star", masks=masks, clip=rand_clip,
                    options=LabelOptions(render=False))
    finally:
        h.remove()
    assert calls == [len(masks)]


def test_label_single_class_adds_others(rand_clip, scene):
    r = ovseg.label(scene.image, "red circle", masks=[o.mask for o in scene.objects],
                    clip=rand_clip)
    assert r.classes == ["red circle"] and r.scored_classes == ["red circle", "others"]
    assert r.probabilities.shape == (len(scene.objects), 2)
    assert set(np.unique(r.label_map)) <= {0, 1}
    # at most one mask painted (demo fusion: the class's single best mask)
    assert sum(reg.label is not None for reg in r.regions) <= 1


def test_ensemble_with_maskinversion(rand_clip, scene):
    pytest.importorskip("regionlab.region.maskinversion")
    masks = [o.mask for o in scene.objects]
    opts = LabelOptions(fusion="eval", ensemble=0.5, mi_iterations=2, render=False)
    r = ovseg.label(scene.image, ["red circle", "blue star", "green square"], masks=masks,
                    clip=rand_clip, options=opts)
    base = ovseg.label(scene.image, ["red circle", "blue star", "green square"], masks=masks,
                       clip=rand_clip, options=LabelOptions(fusion="eval", render=False))
    assert np.allclose(r.probabilities.sum(1), 1, atol=1e-5)
    assert not np.allclose(r.probabilities, base.probabilities)


# ----------------------------------------------------------------------------- bad input


def test_bad_class_lists(rand_clip, scene):
    masks = [scene.objects[0].mask]
    for empty in ("", " , ,", [], ["  "]):
        with pytest.raises(InputError, match="empty"):
            ovseg.label(scene.image, empty, masks=masks, clip=rand_clip)
    with pytest.raises(InputError, match="duplicate"):
        ovseg.label(scene.image, "cat, Cat", masks=masks, clip=rand_clip)
    r = ovseg.label(scene.image, "cat, , dog,", masks=masks, clip=rand_clip)
    assert r.classes == ["cat", "dog"]  # blank names are dropped
    with pytest.raises(InputError, match="2001 classes"):
        ovseg.label(scene.image, [f"c{i}" for i in range(2001)], masks=masks, clip=rand_clip)


def test_two_thousand_classes(rand_clip, scene):
    names = [f"thing {i}" for i in range(2000)]
    r = ovseg.label(scene.image, names, masks=[o.mask for o in scene.objects], clip=rand_clip,
                    options=LabelOptions(templates="single", fusion="eval", top_k=3))
    assert r.probabilities.shape == (len(scene.objects), 2000)
    assert r.label_map.max() <= 2000 and all(len(x.top) == 3 for x in r.regions)
    lm = np.zeros((4, 4), np.int32)
    lm[0, 0], lm[1, 1] = 2000, 300
    img = viz.index_image(lm, viz.palette(2000))
    assert img.mode == "I;16"


def test_unusual_class_names_kept_verbatim(rand_clip, scene):
    names = ['cat, the fluffy kind', 'the "quoted" one', "l'apostrophe", "chat noir é",
             "猫", "🐱 emoji"]
    r = ovseg.label(scene.image, names, masks=[o.mask for o in scene.objects], clip=rand_clip)
    assert r.classes == names
    assert all(reg.top[0]["label"] in names for reg in r.regions)


def test_no_proposals(rand_clip, scene, monkeypatch):
    with pytest.raises(InputError, match="no masks"):
        ovseg.label(scene.image, "a, b", masks=[], clip=rand_clip)
    monkeypatch.setattr(ovseg, "_auto_proposals",
                        lambda img, method, opts: (np.zeros((0, *img.shape[:2]), bool), [], None))
    r = ovseg.label(scene.image, "a, b", clip=rand_clip)
    assert (r.label_map == 0).all() and r.regions == [] and "no mask proposals" in r.notice
    assert r.probabilities.shape == (0, 2) and r.annotations == []


def test_bad_options(rand_clip, scene):
    masks = [scene.objects[0].mask]
    for opts, msg in [(LabelOptions(fusion="vote"), "fusion"), (LabelOptions(crop="x"), "crop"),
                      (LabelOptions(ensemble=1.5), "ensemble"),
                      (LabelOptions(top_k=0), "top_k")]:
        with pytest.raises(InputError, match=msg):
            ovseg.label(scene.image, "a, b", masks=masks, clip=rand_clip, options=opts)
    with pytest.raises(InputError, match="proposal source"):
        ovseg.label(scene.image, "a, b", proposals="magic", clip=rand_clip)
    with pytest.raises(InputError, match="empty"):
        ovseg.label(scene.image, "a, b", masks=[np.zeros((64, 64), bool)], clip=rand_clip)


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_model(rand_clip):
    from regionlab.models import register_model
    from regionlab.models.registry import ModelSpec

    spec = ModelSpec(name="test-rand-shapes", kind="clip", source="test",
                     loader=lambda s, d, t: rand_clip, availability=lambda s: (True, "test"))
    register_model(spec, overwrite=True)
    yield spec.name
    from regionlab.models.registry import _CACHE, _SPECS

    _SPECS.pop(spec.name, None)
    for key in [k for k in _CACHE if k[0] == spec.name]:
        _CACHE.pop(key, None)


def _write_inputs(tmp_path: Path, scene) -> tuple[str, list[str]]:
    img = tmp_path / "scene.png"
    Image.fromarray(scene.image).save(img)
    paths = []
    for i, o in enumerate(scene.objects):
        p = tmp_path / f"m{i}.png"
        Image.fromarray(o.mask.astype(np.uint8) * 255).save(p)
        paths.append(str(p))
    return str(img), paths


def test_cli_label_json(tmp_path, scene, cli_model, capsys):
    from regionlab.cli import main

    img, masks = _write_inputs(tmp_path, scene)
    out = tmp_path / "out" / "map.png"
    argv = ["label", img, "--classes", "red circle, blue star, green square", "--model",
            cli_model, "--out", str(out), "--json", "--fusion", "eval"]
    for m in masks:
        argv += ["--mask", m]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["map"] == str(out) and res["classes"] == ["red circle", "blue star", "green square"]
    assert [r["mask"] for r in res["regions"]] == masks
    lm = np.asarray(Image.open(out))
    assert Image.open(out).mode == "P" and lm.shape == scene.image.shape[:2]
    for r, m in zip(res["regions"], masks):
        inside = np.asarray(Image.open(m)) > 127
        assert (lm[inside] == res["classes"].index(r["top"][0]["label"]) + 1).all()
        assert set(r["top"][0]) == {"label", "score"}
    assert Path(res["overlay"]).is_file()
    # a folder of mask PNGs as --proposals
    mdir = tmp_path / "props"
    mdir.mkdir()
    for i, m in enumerate(masks):
        Path(m).rename(mdir / f"{i:02d}.png")
    assert main(["label", img, "--classes", "a, b", "--model", cli_model, "--proposals",
                 str(mdir), "--out", str(tmp_path / "m2.png"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(res["regions"]) == len(masks)


def test_cli_manifest_and_errors(tmp_path, scene, cli_model, capsys):
    from regionlab.cli import main

    img, masks = _write_inputs(tmp_path, scene)
    lines = [
        {"image": img, "classes": ["cat, the fluffy kind", 'a "quoted" dog', "猫"],
         "masks": masks},
        {"image": img, "classes": [], "masks": masks},
        {"image": img, "classes": "cat, CAT", "masks": masks},
        {"image": img, "classes": ["red star"], "masks": masks[:1]},
    ]
    man = tmp_path / "items.jsonl"
    man.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    rc = main(["label", "--manifest", str(man), "--out-dir", str(tmp_path / "res"), "--json",
               "--model", cli_model])
    outs = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert rc == 1 and [o["line"] for o in outs] == [1, 2, 3, 4]
    assert outs[0]["classes"] == lines[0]["classes"]
    assert Path(outs[0]["map"]) == tmp_path / "res" / "1" / "map.png"
    assert "no classes" in outs[1]["error"] and "duplicate" in outs[2]["error"]
    assert outs[3]["classes"] == ["red star"]  # one class the model knows: "others" competes
    assert {t["label"] for t in outs[3]["regions"][0]["top"]} == {"red star", "others"}
    # no output path -> a clear error, exit code 2
    assert main(["label", img, "--classes", "a", "--mask", masks[0], "--model", cli_model]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["label", img, "--classes", "a", "--proposals", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "x.png"), "--model", cli_model]) == 2
    assert "neither" in capsys.readouterr().err


# ----------------------------------------------------------------------------- mIoU


def test_miou_confusion():
    from regionlab.eval.ovseg import confusion_matrix, scores_from_confusion

    gt = np.array([[0, 1, 1], [2, 2, 255]])
    pred = np.array([[1, 1, 0], [2, 2, 2]])
    conf = confusion_matrix(pred, gt, 2, valid=gt != 255)
    s = scores_from_confusion(conf, ["a", "b"])
    # a: TP 1, FN 1 (unlabelled), FP 1 (on background) -> 1/3; b: 2/2
    assert s["per_class_iou"] == {"a": round(1 / 3, 4), "b": 1.0}
    assert abs(s["miou"] - (1 / 3 + 1) / 2) < 1e-9
    assert s["pixel_accuracy"] == 0.75 and s["background_false_positive_rate"] == 1.0
    # background pixels left out: a loses its FP -> 1/2; b stays 2/2
    assert abs(s["miou_object_pixels"] - (1 / 2 + 1) / 2) < 1e-9


def test_evaluate_folder_with_gt_proposals(tmp_path, rand_clip):
    from regionlab.eval.ovseg import evaluate_folder, shapes_label_map
    from regionlab.shapes.scenes import generate_scenes
    from regionlab.shapes.vocab import CLASSES

    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for i, sc in enumerate(generate_scenes("test", 2)):
        Image.fromarray(sc.image).save(tmp_path / "img" / f"{i}.png")
        viz.index_image(shapes_label_map(sc)).save(tmp_path / "lab" / f"{i}.png")
    out = evaluate_folder(tmp_path / "img", tmp_path / "lab", list(CLASSES), proposals="gt",
                          clip=rand_clip)
    assert 0.0 <= out["miou"] <= 1.0 and out["images"] == 2 and out["classes_evaluated"] >= 1
    (tmp_path / "img" / "extra.png").write_bytes((tmp_path / "img" / "0.png").read_bytes())
    with pytest.raises(InputError, match="no label PNG"):
        evaluate_folder(tmp_path / "img", tmp_path / "lab", list(CLASSES), clip=rand_clip)


# ----------------------------------------------------------------------------- mask-adapted CLIP


def _tiny_openai_clip(seed=0):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    return CLIP(32, CLIPVisionCfg(layers=3, width=64, patch_size=8, image_size=32),
                CLIPTextCfg(context_length=16, vocab_size=49408, width=64, heads=1, layers=1),
                quick_gelu=True).eval().requires_grad_(False)


class _NotATensor:  # any custom object makes a pickle unsafe for weights_only loading
    pass


@pytest.fixture(scope="module")
def tiny_ovseg(tmp_path_factory):
    """A tiny CLIP in OVSeg's detectron2 checkpoint layout, with depth-3 mask prompts."""
    from regionlab.models.ovseg_clip import PREFIX

    model = _tiny_openai_clip()
    sd = {PREFIX + k: v.clone() for k, v in model.state_dict().items()}
    prompts = torch.randn(3, 16, 64)
    sd[PREFIX + "visual.mask_embedding"] = prompts
    sd["sem_seg_head.predictor.class_embed.weight"] = torch.randn(5, 5)  # ignored
    sd["backbone.patch_embed.proj.weight"] = torch.randn(4, 3, 2, 2)
    path = tmp_path_factory.mktemp("ovseg") / "ovseg_tiny.pth"
    torch.save({"model": sd, "iteration": 3}, path)
    return path, model, prompts


def _reference_prompted(model, prompts, x, masks):
    """Independent reading of METHODS.md 4: replace background patch tokens before the
    positional embedding and after blocks 1 and 2; patch fg if any pixel is."""
    v = model.visual
    fg = torch.stack([torch.tensor([[bool(m[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].any())
                                     for c in range(4)] for r in range(4)]).flatten()
                      for m in masks]).float()[..., None]
    t = v.conv1(x).flatten(2).transpose(1, 2)
    t = torch.where(fg > 0, t, prompts[0][None])
    t = torch.cat([v.class_embedding.expand(len(x), 1, -1), t], 1) + v.positional_embedding
    t = v.ln_pre(t)
    for i, blk in enumerate(v.transformer.resblocks):
        t = blk(t)  # open_clip 3.x is batch-first
        if i in (0, 1):
            t = torch.cat([t[:, :1], torch.where(fg > 0, t[:, 1:], prompts[i + 1][None])], 1)
    return v.ln_post(t[:, 0]) @ v.proj


def test_mask_adapted_clip_loads_and_prompts(tiny_ovseg):
    from regionlab.models import load_clip
    from regionlab.models.ovseg_clip import MaskAdaptedCLIP, register_ovseg_checkpoint

    path, model, prompts = tiny_ovseg
    clip = load_clip(register_ovseg_checkpoint(path), device="cpu")
    assert isinstance(clip, MaskAdaptedCLIP) and clip.prompt_depth == 3
    assert clip.image_size == 32 and torch.equal(clip.mask_embedding, prompts)
    torch.manual_seed(1)
    x = torch.randn(3, 3, 32, 32)
    full = torch.ones(3, 32, 32, dtype=torch.bool)
    # all-foreground: the prompts are never used -> the plain CLIP image embedding
    assert torch.allclose(clip.encode_masked(x, full), model.encode_image(x), atol=1e-5)
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[0, 3:12, 2:20] = True
    masks[1, 31, 31] = True  # a single pixel makes its patch foreground
    masks[2, 8:24, 8:24] = True
    out = clip.encode_masked(x, masks)
    assert torch.allclose(out, _reference_prompted(model, prompts, x, masks), atol=1e-5)
    # background-patch pixels do not matter at all; foreground ones do
    x2 = x.clone()
    x2[0, :, 24:, 24:] = 3.0
    assert torch.equal(clip.encode_masked(x2, masks)[0], out[0])
    x2[0, :, 4, 4] = 3.0
    assert not torch.allclose(clip.encode_masked(x2, masks)[0], out[0])
    # the depth-2 and depth-3 prompts are used (after blocks 1 and 2); the perturbation varies
    # over channels: a constant shift of a token is removed by the next block's LayerNorm
    from regionlab.models.ovseg_clip import mask_prompted_forward

    for d in (1, 2):
        p2 = prompts.clone()
        p2[d] += torch.linspace(-1.0, 1.0, p2.shape[-1])
        assert not torch.allclose(mask_prompted_forward(clip.visual, x, masks, p2), out)
    # text tower loaded too
    assert clip.encode_texts(["a photo of a cat."]).shape == (1, 32)


def test_label_with_mask_adapted_clip(tiny_ovseg, scene):
    from regionlab.models.ovseg_clip import build_mask_adapted_clip, read_checkpoint

    clip = build_mask_adapted_clip(read_checkpoint(tiny_ovseg[0]), "tiny-ovseg")
    ell = np.zeros((64, 64), bool)  # an L: its crop has patches without any foreground
    ell[4:60, 4:12] = True
    ell[52:60, 4:60] = True
    masks = [o.mask for o in scene.objects] + [ell]
    a = ovseg.label(scene.image, "cat, dog, sofa", masks=masks, clip=clip)
    b = ovseg.label(scene.image, "cat, dog, sofa", masks=masks, clip=clip,
                    options=LabelOptions(mask_prompt=False))
    assert a.probabilities.shape == (len(masks), 3)
    assert not np.allclose(a.probabilities[-1], b.probabilities[-1])


def test_ovseg_checkpoint_safe_loading(tmp_path, tiny_ovseg):
    from regionlab.models.ovseg_clip import PREFIX, build_mask_adapted_clip, read_checkpoint

    path, model, prompts = tiny_ovseg
    sd = torch.load(path, weights_only=True)["model"]
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": sd, "cfg": _NotATensor()}, unsafe)
    with pytest.raises(ModelUnavailableError, match="weights_only") as exc:
        read_checkpoint(unsafe)
    assert "safetensors" in str(exc.value)
    with pytest.raises(ModelUnavailableError, match="not found"):
        read_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(ModelUnavailableError, match="no CLIP ViT image tower"):
        build_mask_adapted_clip({"backbone.x": torch.zeros(1)}, "bad")
    bad = dict(sd)
    bad[PREFIX + "visual.mask_embedding"] = torch.zeros(3, 10, 64)
    with pytest.raises(ModelUnavailableError, match="mask_embedding has shape"):
        build_mask_adapted_clip(bad, "bad")
    # safetensors with only the CLIP keys works the same
    from safetensors.torch import save_file

    st = tmp_path / "ovseg_clip.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items() if k.startswith(PREFIX)}, str(st))
    clip = build_mask_adapted_clip(read_checkpoint(st), "st")
    assert torch.equal(clip.mask_embedding, prompts)


def test_cache_reuses_crop_embeddings(rand_clip, scene):
    calls = []
    h = rand_clip.visual.conv1.register_forward_hook(lambda mod, i, o: calls.append(1))
    cache: dict = {}
    masks = [o.mask for o in scene.objects]
    try:
        a = ovseg.label(scene.image, "red circle, blue star", masks=masks, clip=rand_clip,
                        cache=cache, options=LabelOptions(render=False))
        b = ovseg.label(scene.image, "green square, blue star, red cross", masks=masks,
                        clip=rand_clip, cache=cache, options=LabelOptions(fusion="eval"))
    finally:
        h.remove()
    assert len(calls) == 1 and b.probabilities.shape == (len(masks), 3)
    assert a.probabilities.shape == (len(masks), 2)


def test_sam_requested_without_checkpoint(rand_clip, scene, monkeypatch):
    from regionlab.segment import interactive

    monkeypatch.setattr(interactive, "default_segmenter_name",
                        lambda: (interactive.CLASSICAL, "no SAM here"))
    with pytest.raises(ModelUnavailableError, match="fallback"):
        ovseg.label(scene.image, "a, b", proposals="sam", clip=rand_clip)
    engine, notice = ovseg.proposal_engine("auto")
    assert engine == interactive.CLASSICAL and notice == "no SAM here"


def test_automatic_fallback_proposals(rand_clip, scene):
    r = ovseg.label(scene.image, "red circle, blue star", proposals="fallback", clip=rand_clip,
                    options=LabelOptions(max_proposals=10, fusion="eval"))
    assert 1 <= len(r.regions) <= 10 and r.proposals == "fallback" and "fallback" in r.notice
    assert all(reg.proposal_score is not None for reg in r.regions)
    assert set(np.unique(r.label_map)) <= {0, 1, 2}


def test_evaluate_shapes_variants(rand_clip):
    from regionlab.eval.ovseg import evaluate_shapes_variants

    out = evaluate_shapes_variants({"masked": LabelOptions(fusion="eval"),
                                    "box": LabelOptions(fusion="eval", crop="box")},
                                   rand_clip, n=3, split="val", proposals="gt")
    assert set(out) == {"masked", "box"}
    for r in out.values():
        assert 0 <= r["miou"] <= 1 and r["scenes"] == 3
        # ground-truth masks as proposals: background is never painted
        assert r["background_false_positive_rate"] == 0.0
    # the shift set's scenes (matplotlib renderer): other pictures, the same bookkeeping
    mpl = evaluate_shapes_variants({"masked": LabelOptions(fusion="eval")}, rand_clip, n=3,
                                   split="val", proposals="gt", renderer="mpl")["masked"]
    assert mpl["renderer"] == "mpl" and out["masked"]["renderer"] == "pil"
    assert mpl["background_false_positive_rate"] == 0.0


def test_viz_helpers(tmp_path):
    img = _image(20, 30, 3)
    m = np.zeros((20, 30), bool)
    m[5:10, 5:15] = True
    out = viz.overlay_masks(img, m[None], alpha=1.0, outline=False)
    col = viz.palette(1)[0]
    assert (out[m] == col).all() and np.array_equal(out[~m], img[~m])
    heat = viz.heatmap_overlay(img, np.random.default_rng(0).random((5, 6)))
    assert heat.shape == img.shape and heat.dtype == np.uint8
    lm = np.zeros((20, 30), np.int32)
    lm[m] = 2
    over = viz.label_map_overlay(img, lm, viz.palette(3), alpha=0.5)
    assert np.array_equal(over[lm == 0], img[lm == 0]) and not np.array_equal(over[m], img[m])
    leg = viz.legend(["猫", 'a "quoted", name'], viz.palette(2))
    assert leg.ndim == 3 and leg.shape[0] > 20
    assert len(np.unique(viz.palette(40), axis=0)) == 40
    for top in (3, 700):
        lm[0, 0] = top
        viz.index_image(lm, viz.palette(top)).save(tmp_path / "m.png")
        assert np.array_equal(np.asarray(Image.open(tmp_path / "m.png")), lm)


def test_painted_classes_get_distinct_colours():
    """Out of 30 classes the few on the map take a palette of their own (with the 30-colour
    palette, example scene 30's red cross and green triangle were both painted lime)."""
    from regionlab.tasks.ovseg import class_colours

    cols = class_colours(30, [0, 13, 14, 29]).astype(int)
    assert cols.shape == (30, 3)
    np.testing.assert_array_equal(cols[[0, 13, 14, 29]], viz.palette(4))
    shown = cols[[0, 13, 14, 29]]
    gaps = [np.abs(a - b).sum() for i, a in enumerate(shown) for b in shown[i + 1:]]
    assert min(gaps) > 100, gaps
    np.testing.assert_array_equal(class_colours(5, []), viz.palette(5))
