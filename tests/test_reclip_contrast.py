"""Contrastive membership in grounding (regionlab.tasks.reclip_contrast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from regionlab.tasks.reclip import GroundingOptions, ProposalFeatures, Proposals, ground_features
from regionlab.tasks.reclip_contrast import deficits, penalised, variants, word_groups

GROUPS = (("red", "blue"), ("circle", "square", "star"))


def test_variants_swap_one_known_word_at_a_time():
    v = variants("the red circle", GROUPS)
    assert v == ["the blue circle", "the red square", "the red star"]
    assert variants("The Circle on the left", GROUPS) == ["the square on the left",
                                                          "the star on the left"]
    assert variants("the shape", GROUPS) == []
    assert variants("the circled area", GROUPS) == []  # whole words only


def test_deficits_and_penalty():
    d = deficits(np.array([5.0, 2.0, 1.0]), np.array([[3.0, 1.0], [4.0, 0.0], [0.5, 0.9]]))
    assert d == pytest.approx([2.0, -2.0, 0.1])
    assert penalised(np.array([5.0, 2.0, 1.0]), d, 3.0) == pytest.approx([5.0, -4.0, 1.0])
    assert np.all(np.isinf(deficits(np.zeros(2), np.zeros((2, 0)))))


def test_relative_gap_penalises_a_doubtful_reader_when_a_clear_one_exists():
    """Example scene 30, "the smallest star": the red star reads "star" by 7.7 logits, the red
    cross prefers "cross" by 2.9 -- inside the tolerance of 3 but 10.6 below the star."""
    d = np.array([7.7, -2.9, -3.3, -7.6])
    lg = np.zeros(4)
    assert penalised(lg, d, 1.0, 3.0) == pytest.approx([0.0, 0.0, -0.3, -4.6])
    assert penalised(lg, d, 1.0, 3.0, gap=10.0) == pytest.approx([0.0, -0.6, -1.0, -5.3])
    # the best reader is taken among kept proposals only
    keep = np.array([False, True, True, True])
    assert penalised(lg, d, 1.0, 3.0, gap=10.0, keep=keep) == pytest.approx([0.0, 0.0, -0.3,
                                                                             -4.6])
    assert penalised(lg, d, 1.0, 3.0, gap=np.inf) == pytest.approx(penalised(lg, d, 1.0, 3.0))


def test_answer_reading_and_doubt_warning():
    from regionlab.tasks.reclip import (
        ANSWER_DOUBT_DEFICIT,
        answer_doubt_warning,
        candidate_readings,
    )

    contrast = {"a photo of the circle": (np.array([3.0, -ANSWER_DOUBT_DEFICIT - 0.3, -1.0]),
                                          ["the square", "the square", "the star"])}
    every = candidate_readings(contrast, "a photo of the circle", "the circle")
    sure, doubt, slight = ({"phrase": "the circle", **r} for r in every)
    assert sure == {"phrase": "the circle", "deficit": 3.0, "reads_as": "the circle"}
    assert answer_doubt_warning(sure, 0) is None
    assert doubt["reads_as"] == "the square"
    msg = answer_doubt_warning(doubt, 1)
    assert "candidate 1" in msg and "'the square'" in msg and "'the circle'" in msg
    assert "reads as" not in msg  # no readings given: no alternative named
    named = answer_doubt_warning(doubt, 1, every)
    assert named.endswith("; candidate 0 reads as 'the circle' (by 3.0 logits)")
    # a dropped candidate (area prior) is not offered
    assert "reads as" not in answer_doubt_warning(doubt, 1, every,
                                                  keep=np.array([False, True, True]))
    assert slight["reads_as"] == "the star"
    assert (answer_doubt_warning(slight, 2) is None) == (ANSWER_DOUBT_DEFICIT >= 1.0)
    assert candidate_readings({}, "a photo of the circle", "the circle") is None


class _TextCLIP:
    """Texts map to fixed unit vectors: "circle" along x, "square" along y."""

    name = "text-fake"
    logit_scale = 10.5

    def __init__(self, groups=(("circle", "square"),)):
        self.word_groups = groups

    def encode_texts(self, texts):
        vec = {"circle": [1.0, 0.0, 0.0], "square": [0.0, 1.0, 0.0]}
        return torch.tensor([next(v for w, v in vec.items() if w in t) for t in texts])


def _features(clip) -> ProposalFeatures:
    # two circles (small at the left, medium) and one big square that the text "the circle"
    # ranks within the margin of the circles (7.4 logits behind) but that prefers "the square"
    # by 7.4 logits when read, beyond the tolerance
    emb = F.normalize(torch.tensor([[1.0, 0.1, 0.0], [0.3, 1.0, 0.0], [1.0, 0.1, 0.0]]), dim=-1)
    boxes = np.array([[0, 40, 10, 50], [40, 0, 100, 60], [20, 30, 45, 55]], float)
    return ProposalFeatures([clip], [emb[None]], Proposals(boxes, source="ground-truth"),
                            (100, 100), "ips", {})


def test_contrast_keeps_a_look_alike_of_another_class_out():
    feats = _features(_TextCLIP())
    off = ground_features(feats, "the biggest circle", GroundingOptions(contrast=0.0))
    on = ground_features(feats, "the biggest circle", GroundingOptions())
    assert off.index == 1  # the square is within the margin and the biggest
    assert on.index == 2   # the medium circle


def test_models_without_word_groups_are_unchanged():
    feats = _features(_TextCLIP(groups=()))
    assert word_groups(feats.clips) == ()
    a = ground_features(feats, "the biggest circle", GroundingOptions(contrast=0.0))
    b = ground_features(feats, "the biggest circle", GroundingOptions(contrast=4.0))
    assert a.probs == b.probs


def test_bundled_clip_declares_its_colours_and_shapes(bundled_clip):
    groups = word_groups([bundled_clip])
    assert ("circle", "square", "triangle", "star", "cross") in groups
    assert any("red" in g for g in groups)


def test_contrast_option_is_checked():
    from regionlab.errors import InputError

    with pytest.raises(InputError, match="contrast"):
        GroundingOptions(contrast=-1.0).checked()
    assert GroundingOptions(combine="reference").effective_contrast == 0.0
    with pytest.raises(InputError, match="contrast_gap"):
        GroundingOptions(contrast_gap=-1.0).checked()
    with pytest.raises(InputError, match="contrast_gap"):
        GroundingOptions(contrast_gap=float("nan")).checked()
    assert GroundingOptions(contrast_gap=float("inf")).checked().effective_contrast_gap == np.inf


def test_no_match_warning_fires_only_when_every_candidate_prefers_a_variant():
    from regionlab.tasks.reclip import NO_MATCH_DEFICIT, no_match_warning

    far = -NO_MATCH_DEFICIT - 1.0
    contrast = {"a photo of the red star": (np.array([far, far - 2.0]),
                                            ["the purple star", "the red cross"])}
    msg = no_match_warning(contrast, "a photo of the red star", "the red star")
    assert "no candidate looks like 'the red star'" in msg and "'the purple star'" in msg
    assert "candidate 0" in msg
    near = {"a photo of the red star": (np.array([far, -NO_MATCH_DEFICIT + 0.5]), ["x", "y"])}
    assert no_match_warning(near, "a photo of the red star", "the red star") is None
    # a dropped candidate (area prior) does not count as a match
    kept = no_match_warning(near, "a photo of the red star", "the red star",
                            keep=np.array([True, False]))
    assert kept is not None and "candidate 0" in kept
    assert no_match_warning({}, "a photo of the red star", "the red star") is None


def _example_scene_features(seed: int, clip):
    """An app example scene and its objects' boxes embedded as grounding candidates."""
    from regionlab.tasks.reclip import embed_proposals, proposals_from_boxes
    from regionlab.ui import examples

    sc = examples.scene(seed)
    boxes = np.asarray([o.box for o in sc.objects], float)
    return sc, embed_proposals(sc.image, proposals_from_boxes(boxes, sc.image.shape[:2], "gt"),
                               "ips", [clip])


def test_app_example_scene_says_when_nothing_fits(bundled_clip):
    """Example scene 38 has a purple star and a green star but no red one: grounding still
    answers, and says that nothing looks like a red star; asking for what is there stays
    silent."""
    sc, feats = _example_scene_features(38, bundled_clip)
    assert "red star" not in [o.label for o in sc.objects]
    missing = ground_features(feats, "the red star")
    assert any("no candidate looks like 'the red star'" in w for w in missing.warnings)
    for o in sc.objects:
        res = ground_features(feats, f"the {o.label}")
        assert not any("no candidate" in w for w in res.warnings), o.label


def test_missing_anchor_is_named_too(bundled_clip):
    """"the shape above the blue circle" on a scene without a blue circle (example scene 30)
    names the anchor that nothing fits."""
    sc, feats = _example_scene_features(30, bundled_clip)
    assert "blue circle" not in [o.label for o in sc.objects]
    res = ground_features(feats, "the shape above the blue circle")
    assert any("no candidate looks like 'the blue circle'" in w for w in res.warnings)
    red = ground_features(feats, "the shape above the red cross")
    assert not any("no candidate" in w for w in red.warnings)


def test_phrase_deficits_reads_each_proposal_against_the_variants():
    from regionlab.tasks.reclip_contrast import phrase_deficits

    feats = _features(_TextCLIP())
    d, preferred = phrase_deficits(feats, "the circle", feats.clips[0].word_groups, scale=None)
    assert d[0] > 0 and d[2] > 0 and d[1] < -3  # the square's crop prefers "the square"
    assert preferred[1] == "the square"
    assert phrase_deficits(feats, "the shape", feats.clips[0].word_groups) is None


def _ground_args(tmp_path, seed: int, expression: str) -> list[str]:
    """``regionlab ground --json`` arguments for an example scene with its objects' boxes."""
    import json

    from PIL import Image

    from regionlab.ui import examples

    sc = examples.scene(seed)
    Image.fromarray(sc.image).save(tmp_path / "scene.png")
    (tmp_path / "boxes.json").write_text(json.dumps([list(map(float, o.box))
                                                     for o in sc.objects]))
    return ["ground", str(tmp_path / "scene.png"), expression, "--boxes",
            str(tmp_path / "boxes.json"), "--json"]


def test_cli_reports_the_answer_reading_and_checks_the_gap(tmp_path, capsys):
    """``regionlab ground --json`` carries how the answer reads the head phrase; a negative
    ``--contrast-gap`` is refused with the option's name."""
    import json

    from regionlab import cli

    args = _ground_args(tmp_path, 19, "the purple circle")
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer_reading"]["reads_as"] == "the purple circle"
    assert out["answer_reading"]["deficit"] > 0
    assert cli.main([*args, "--contrast-gap", "-1"]) != 0
    assert "contrast_gap" in capsys.readouterr().err


def test_membership_option_is_checked_and_needs_its_embeddings():
    from regionlab.errors import InputError

    with pytest.raises(InputError, match="membership"):
        GroundingOptions(membership="crop").checked()
    feats = _features(_TextCLIP())  # embedded without masked crops
    assert feats.for_membership("views") is feats
    with pytest.raises(InputError, match="masked-crop embeddings"):
        ground_features(feats, "the biggest circle", GroundingOptions(membership="masked-crop"))


def test_membership_reads_the_masked_crops_when_asked():
    """The scoring views put the big square within the margin and reading "circle" (no
    penalty); its masked crop reads "square": only the masked-crop membership keeps it out."""
    feats = _features(_TextCLIP())
    looks = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [1.0, 0.1, 0.0]]),
                        dim=-1)[None]
    feats.embeddings = [looks]  # every view reads "circle"
    feats.member_embeddings = [F.normalize(torch.tensor(
        [[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [1.0, 0.1, 0.0]]), dim=-1)[None]]
    views = ground_features(feats, "the biggest circle", GroundingOptions(membership="views"))
    masked = ground_features(feats, "the biggest circle",
                             GroundingOptions(membership="masked-crop"))
    both = feats.for_membership("both")
    assert both.embeddings[0].shape[0] == 2 and both._text_cache is feats._text_cache
    assert views.index == 1 and masked.index == 2


def test_membership_masks_use_proposal_masks_or_segment_each_box():
    from regionlab.tasks.reclip import proposals_from_boxes, proposals_from_masks
    from regionlab.tasks.reclip_contrast import membership_masks
    from regionlab.ui import examples

    sc = examples.scene(19)
    img = np.asarray(sc.image)[..., :3]
    gt = np.stack([o.mask for o in sc.objects]).astype(bool)
    own, source = membership_masks(img, proposals_from_masks(gt, img.shape[:2]))
    assert source == "proposal masks" and np.array_equal(own, gt)
    boxes = np.array([o.box for o in sc.objects], float)
    boxes = np.vstack([boxes, [[0, 0, 30, 30]]])  # plain background: no object inside
    props = proposals_from_boxes(boxes, img.shape[:2])
    seg, source = membership_masks(img, props)
    assert source == "classical box segmentation"
    inside = props.box_masks(img.shape)
    assert not (seg & ~inside).any() and seg.any(axis=(1, 2)).all()
    iou = (seg[:4] & gt).sum((1, 2)) / (seg[:4] | gt).sum((1, 2))
    assert iou.min() > 0.9  # flat shapes on a gradient: the box segmenter finds them


def test_models_without_word_groups_compute_no_masked_crops():
    from regionlab.tasks.reclip import embed_proposals, proposals_from_boxes

    class _ImageCLIP(_TextCLIP):
        def encode_images(self, images, batch=64):
            return torch.ones(len(images), 3)

    img = np.zeros((40, 40, 3), np.uint8)
    props = proposals_from_boxes(np.array([[0, 0, 20, 20], [10, 10, 40, 40]], float),
                                 img.shape[:2])
    opts = GroundingOptions(membership="both")
    plain = embed_proposals(img, props, "ips", [_ImageCLIP(groups=())], opts)
    assert plain.member_embeddings is None and "membership_masks_s" not in plain.timing


def test_cli_membership_option_reaches_grounding(tmp_path, capsys):
    """``regionlab ground --membership views`` reads the IPS views only (no box segmentation);
    the default also segments each box for its masked crop."""
    import json

    from regionlab import cli

    args = _ground_args(tmp_path, 30, "the biggest triangle")
    assert cli.main(args) == 0
    default = json.loads(capsys.readouterr().out)
    assert cli.main([*args, "--membership", "views"]) == 0
    views = json.loads(capsys.readouterr().out)
    assert "membership_masks_s" in default["timing"]
    assert "membership_masks_s" not in views["timing"]
    assert any("classical box segmenter" in n for n in default["notes"])
    assert not any("classical box segmenter" in n for n in views["notes"])
    assert default["index"] == 3  # the green triangle
