"""Objectness filter of automatic grounding candidates (regionlab.tasks.objectness)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from regionlab.errors import InputError
from regionlab.tasks.objectness import candidates_keep, known_classes
from regionlab.tasks.reclip import GroundingOptions, ProposalFeatures, Proposals, ground_features


class _FakeCLIP:
    """Four classes (red/blue x circle/square), one direction each; a fifth direction (4) is
    what no class reads: the background."""

    name = "fake"
    logit_scale = 10.0

    def __init__(self, defaults=None, groups=(("red", "blue"), ("circle", "square"))):
        self.word_groups = groups
        self.defaults = {"object_min_cos": 0.5} if defaults is None else defaults

    def encode_texts(self, texts):
        dirs = {"red circle": 0, "red square": 1, "blue circle": 2, "blue square": 3}
        out = torch.zeros(len(texts), 5)
        for k, t in enumerate(texts):
            hits = [d for name, d in dirs.items() if name in t]
            for w, d in (("circle", 0), ("square", 1)):  # bare shapes read as their red one
                if not hits and w in t:
                    hits = [d]
            out[k, hits[0] if hits else 4] = 1.0
        return out


def _features(clip, source="automatic") -> ProposalFeatures:
    # candidate 0: a red circle at the left; 1: the background (the biggest, at the right);
    # 2: a red circle at the right; views and masked crops read the same
    emb = F.normalize(torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.1], [0.1, 0.0, 0.0, 0.0, 1.0],
                                    [1.0, 0.0, 0.0, 0.0, 0.2]]), dim=-1)
    boxes = np.array([[0, 40, 10, 50], [50, 0, 100, 100], [40, 40, 55, 55]], float)
    return ProposalFeatures([clip], [emb[None]], Proposals(boxes, source=source), (100, 100),
                            "ips", {}, member_embeddings=[emb[None]])


def test_known_classes_are_the_word_group_combinations(bundled_clip):
    assert known_classes(_FakeCLIP()) == ["red circle", "red square", "blue circle",
                                          "blue square"]
    assert known_classes(_FakeCLIP(groups=())) == []
    classes = known_classes(bundled_clip)
    assert len(classes) == 30 and "red star" in classes


def test_background_candidate_is_left_out_of_the_choice():
    feats = _features(_FakeCLIP())
    keep, notes = candidates_keep(feats)
    assert keep.tolist() == [True, False, True]
    assert "1 automatic candidate(s) (1) left out" in notes[0]
    res = ground_features(feats, "the rightmost shape")
    assert res.index == 2 and res.objects == [True, False, True]
    assert res.probs[1] == 0.0
    assert res.to_dict()["objects"] == [True, False, True]
    assert any("left out" in n for n in res.to_dict()["notes"])
    off = ground_features(feats, "the rightmost shape", GroundingOptions(object_min_cos=-1))
    assert off.index == 1 and off.objects is None  # the background strip, as before


def test_filter_needs_automatic_candidates_a_vocabulary_and_a_threshold():
    assert candidates_keep(_features(_FakeCLIP(), source="masks")) == (None, [])  # user regions
    assert candidates_keep(_features(_FakeCLIP(groups=()))) == (None, [])  # a real CLIP
    assert candidates_keep(_features(_FakeCLIP(defaults={}))) == (None, [])  # no tuned default
    keep, _ = candidates_keep(_features(_FakeCLIP(defaults={})), threshold=0.5)  # asked for
    assert keep.tolist() == [True, False, True]
    feats = _features(_FakeCLIP())
    feats.member_embeddings = None  # embedded without masked crops (membership "views")
    assert candidates_keep(feats) == (None, [])


def test_a_filter_that_would_drop_everything_keeps_all_and_says_so():
    keep, notes = candidates_keep(_features(_FakeCLIP()), threshold=0.999)
    assert keep is None and "all kept" in notes[0]
    res = ground_features(_features(_FakeCLIP()), "the rightmost shape",
                          GroundingOptions(object_min_cos=0.999))
    assert res.index == 1 and res.objects is None


def test_object_min_cos_is_checked():
    with pytest.raises(InputError, match="object_min_cos"):
        GroundingOptions(object_min_cos=1.5).checked()


def test_cli_leaves_background_candidates_out_on_another_renderer(tmp_path, capsys,
                                                                  bundled_clip):
    """An OpenCV-renderer test scene at the app's size, automatic candidates: "the purple
    object" picked a background candidate (box IoU 0.31 with the purple circle) before the
    objectness filter; with it the purple circle, and every object keeps a candidate."""
    import json

    from PIL import Image

    from regionlab import cli
    from regionlab.shapes.expressions import ALL_KINDS, generate_rec_items
    from regionlab.shapes.scenes import RenderOptions
    from regionlab.tasks.reclip import box_iou

    item = generate_rec_items("test", 1, 0, kinds=ALL_KINDS, renderer="cv",
                              options=RenderOptions(size=448))[0]
    Image.fromarray(item.scene.image).save(tmp_path / "scene.png")
    target = np.asarray(item.boxes, float)[[1]]  # the purple circle
    args = ["ground", str(tmp_path / "scene.png"), "the purple object", "--json"]
    assert cli.main(args) == 0
    on = json.loads(capsys.readouterr().out)
    assert cli.main([*args, "--object-min-cos", "-1", "--fragment-min-inside", "0"]) == 0
    off = json.loads(capsys.readouterr().out)
    assert box_iou(np.array([on["box"]]), target)[0, 0] > 0.5
    assert box_iou(np.array([off["box"]]), target)[0, 0] < 0.5
    assert off["objects"] is None and False in on["objects"]
    kept = np.asarray(on["boxes"], float)[np.asarray(on["objects"])]
    assert (box_iou(kept, np.asarray(item.boxes, float)) > 0.5).any(0).all()
    assert cli.main([*args, "--object-min-cos", "2"]) != 0
    assert "object_min_cos" in capsys.readouterr().err
    assert cli.main([*args, "--fragment-min-inside", "1.5"]) != 0
    assert "fragment_min_inside" in capsys.readouterr().err


def test_labelling_leaves_non_objects_out_of_automatic_proposals(bundled_clip):
    """OVSeg labelling of an OpenCV-renderer scene (textured background) with automatic
    proposals: an explicit threshold leaves background regions out with a notice, -1 keeps
    them all, and user masks are never filtered."""
    from regionlab.shapes.renderers import render
    from regionlab.shapes.scenes import split_seed
    from regionlab.tasks.ovseg import LabelOptions, label
    from regionlab.tasks.vocabularies import BUILTIN

    sc = render("cv", split_seed("test", 3))
    classes = list(BUILTIN["shapes"])
    off = label(sc.image, classes, options=LabelOptions(object_min_cos=-1, render=False),
                clip=bundled_clip)
    on = label(sc.image, classes, options=LabelOptions(object_min_cos=0.42, render=False),
               clip=bundled_clip)
    n_left = len(off.regions) - len(on.regions)
    assert n_left > 0 and f"{n_left} automatic proposal(s) left out" in on.notice
    assert "left out" not in (off.notice or "")
    masks = np.stack([o.mask for o in sc.objects])
    user = label(sc.image, classes, masks=masks, clip=bundled_clip,
                 options=LabelOptions(object_min_cos=0.99, render=False))
    assert len(user.regions) == len(sc.objects) and "left out" not in (user.notice or "")
    with pytest.raises(InputError, match="object_min_cos"):
        label(sc.image, classes, options=LabelOptions(object_min_cos=-2), clip=bundled_clip)


def test_fragments_are_kept_masks_inside_a_larger_kept_mask():
    from regionlab.tasks.objectness import fragments

    masks = np.zeros((4, 20, 20), bool)
    masks[0, 2:12, 2:12] = True    # an object
    masks[1, 4:8, 4:8] = True      # a piece of it
    masks[2, 14:18, 14:18] = True  # another object
    masks[3, 9:14, 9:14] = True    # overlaps 0 partly (9 of 25 pixels inside)
    keep = np.ones(4, bool)
    assert fragments(masks, keep, 0.9).tolist() == [False, True, False, False]
    assert fragments(masks, keep, 0.3).tolist() == [False, True, False, True]
    # a piece of a left-out candidate is not a fragment of it
    assert fragments(masks, np.array([False, True, True, True]), 0.9).tolist() == [False] * 4


def test_grounding_leaves_fragments_out_when_asked():
    """Candidate 3 is a piece of candidate 2 (the red circle at the right, read the same): "the
    smallest circle" picks the piece unless fragments are left out."""
    emb = F.normalize(torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.1], [0.1, 0.0, 0.0, 0.0, 1.0],
                                    [1.0, 0.0, 0.0, 0.0, 0.2], [1.0, 0.0, 0.0, 0.0, 0.2]]), dim=-1)
    boxes = np.array([[0, 40, 20, 60], [50, 0, 100, 100], [60, 40, 90, 70], [70, 50, 75, 55]],
                     float)
    masks = np.zeros((4, 100, 100), bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        masks[k, y0:y1, x0:x1] = True
    masks[1, 40:70, 60:90] = False  # the background around the circle
    feats = ProposalFeatures([_FakeCLIP()], [emb[None]],
                             Proposals(boxes, masks=masks, source="automatic"), (100, 100),
                             "ips", {}, member_embeddings=[emb[None]])
    plain = ground_features(feats, "the smallest circle", GroundingOptions(fragment_min_inside=0))
    assert plain.index == 3 and plain.objects == [True, False, True, True]
    res = ground_features(feats, "the smallest circle", GroundingOptions(fragment_min_inside=0.9))
    assert res.index == 0 and res.objects == [True, False, True, False]
    assert any("left out as fragments" in n for n in res.notes)
    with pytest.raises(InputError, match="fragment_min_inside"):
        GroundingOptions(fragment_min_inside=2).checked()
