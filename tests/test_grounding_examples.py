"""What the app's Grounding tab answers on its own example scenes (issue 26).

Every example scene, the default options, with the tab's default candidates (automatic
proposals: right when the chosen box has IoU > 0.5 with the object's) and with the objects'
own boxes: the tab's "Try" expressions and biggest/smallest/leftmost/rightmost of each shape
present must pick the object that geometry says (expressions with no clear answer -- a near
tie, or no such object -- are skipped, and the test checks that enough remain).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from regionlab.tasks.reclip import (
    box_iou,
    embed_proposals,
    ground_features,
    make_proposals,
    proposals_from_boxes,
)
from regionlab.ui import examples

MARGIN = 3.0  # px between centres
RATIO = 1.3  # between areas


def _clear_extreme(values: np.ndarray, largest: bool, ratio: bool) -> int | None:
    order = np.argsort(-values if largest else values)
    if len(values) == 1:
        return int(order[0])
    a, b = values[order[0]], values[order[1]]
    if ratio:
        ok = (a >= RATIO * b) if largest else (b >= RATIO * a)
    else:
        ok = abs(a - b) > MARGIN
    return int(order[0]) if ok else None


def expected_answers(scene) -> dict[str, int]:
    """Expression -> the index of the object it refers to, from the scene's geometry."""
    objs = scene.objects
    boxes = np.asarray([o.box for o in objs], dtype=float)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    out: dict[str, int] = {}

    def pick(text: str, idx: list[int], values: np.ndarray, largest: bool, ratio: bool) -> None:
        k = _clear_extreme(values[idx], largest, ratio) if idx else None
        if k is not None:
            out[text] = idx[k]

    everything = list(range(len(objs)))
    labels = [o.label for o in objs]
    if labels.count("red star") == 1:
        out["the red star"] = labels.index("red star")
    pick("the red shape on the right", [i for i, o in enumerate(objs) if o.colour == "red"],
         cx, True, False)
    if labels.count("blue circle") == 1:
        b = labels.index("blue circle")
        above = [i for i in everything if i != b and cy[b] - cy[i] > MARGIN]
        unclear = [i for i in everything if i != b and abs(cy[b] - cy[i]) <= MARGIN]
        if len(above) == 1 and not unclear:
            out["the shape above the blue circle"] = above[0]
    pick("the biggest shape", everything, area, True, True)
    pick("the smallest shape", everything, area, False, True)
    for shape in sorted({o.shape for o in objs}):
        idx = [i for i, o in enumerate(objs) if o.shape == shape]  # one: it is every extreme
        pick(f"the biggest {shape}", idx, area, True, True)
        pick(f"the smallest {shape}", idx, area, False, True)
        pick(f"the leftmost {shape}", idx, cx, False, False)
        pick(f"the rightmost {shape}", idx, cx, True, False)
    return out


@pytest.fixture(scope="module")
def clip(bundled_clip):
    return bundled_clip


def test_try_expressions_are_the_ones_checked():
    """The expressions checked below include every "Try" example of the Grounding tab."""
    from regionlab.ui.layout import GROUNDING_EXAMPLES

    assert set(GROUNDING_EXAMPLES) <= GROUNDING_EXAMPLES_CHECKED


def _grounded(clip, keep, candidates: str = "objects") -> tuple[list[str], int]:
    wrong, checked = [], 0
    for seed in examples.SCENE_SEEDS:
        sc = examples.scene(seed)
        boxes = np.asarray([o.box for o in sc.objects], dtype=float)
        props = (proposals_from_boxes(boxes, sc.image.shape[:2], "ground-truth")
                 if candidates == "objects" else make_proposals(sc.image, None))
        feats = embed_proposals(sc.image, props, "ips", [clip])
        for text, target in expected_answers(sc).items():
            if not keep(text):
                continue
            res = ground_features(feats, text)
            checked += 1
            iou = box_iou(props.boxes[res.index:res.index + 1], boxes[target:target + 1])[0, 0]
            if iou <= 0.5:
                wrong.append(f"scene {seed}, {candidates}: {text!r} -> box "
                             f"{props.boxes[res.index].astype(int).tolist()}, expected the "
                             f"{sc.objects[target].label}")
    return wrong, checked


def _generic(text: str) -> bool:
    return "shape" in text or text in GROUNDING_EXAMPLES_CHECKED


GROUNDING_EXAMPLES_CHECKED = {"the red star", "the red shape on the right",
                              "the shape above the blue circle", "the biggest shape"}


@pytest.mark.parametrize("candidates", ["automatic", "objects"])
def test_try_expressions_and_generic_superlatives_are_right_on_every_scene(clip, candidates):
    """The Try expressions and biggest/smallest/leftmost/rightmost shape: all right (14 of 14
    when written, with either candidates; the reference combination got 7). With automatic
    proposals this needs the background left out of them (it was "the biggest shape")."""
    wrong, checked = _grounded(clip, _generic, candidates)
    assert checked >= 12, checked
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("candidates", ["automatic", "objects"])
def test_superlatives_of_each_shape_are_right_on_every_scene(clip, candidates):
    """"The biggest circle", "the leftmost star" ... on every scene: 70 of 70 with either
    candidates since the membership reads each candidate's masked crop beside its IPS views
    (63 of 70 with the IPS views alone: on scenes 19 and 30 another shape's box crop read the
    asked shape only 1.9-3.0 logits worse than its own, inside the contrast tolerance)."""
    wrong, checked = _grounded(clip, lambda t: not _generic(t), candidates)
    assert checked >= 60, checked
    assert not wrong, "\n".join(wrong)


def _warnings_on_examples(clip, options=None) -> tuple[int, int, list, list]:
    """(wrong answers, wrong ones warned, right ones warned, (named candidate, target))."""
    warned_wrong, wrong, warned_right, named = 0, 0, [], []
    for seed in examples.SCENE_SEEDS:
        sc = examples.scene(seed)
        boxes = np.asarray([o.box for o in sc.objects], dtype=float)
        feats = embed_proposals(sc.image, proposals_from_boxes(boxes, sc.image.shape[:2],
                                                               "ground-truth"), "ips", [clip],
                                options)
        for text, target in expected_answers(sc).items():
            res = ground_features(feats, text, options)
            if res.index != target:
                wrong += 1
                warned_wrong += any("looks more like" in w for w in res.warnings)
                named += [(int(i), target) for w in res.warnings
                          for i in re.findall(r"; candidate (\d+) reads as", w)]
            elif res.warnings:
                warned_right.append((seed, text, res.warnings))
    return wrong, warned_wrong, warned_right, named


def test_right_answers_stay_quiet(clip):
    """Every example expression is right with the default options (above); none is warned."""
    wrong, _, warned_right, _ = _warnings_on_examples(clip)
    assert wrong == 0 and not warned_right, warned_right


def test_wrong_answers_say_so_and_name_the_object_meant(clip):
    """The doubt warning on real misses: with the membership reading the IPS views alone
    (the options before the masked crop: tolerance 3, gap 10) 7 per-shape superlatives are
    wrong on scenes 19 and 30; the chosen candidate reads the asked shape as another, so each
    is warned, and the candidate the warning offers instead is the object meant (7 of 7 when
    written)."""
    from regionlab.tasks.reclip import GroundingOptions

    before = GroundingOptions(membership="views", contrast_tolerance=3.0, contrast_gap=10.0)
    wrong, warned_wrong, _, named = _warnings_on_examples(clip, before)
    assert wrong >= 5 and warned_wrong >= wrong - 1, (wrong, warned_wrong)
    assert len(named) >= wrong - 2 and all(i == t for i, t in named), named


def test_biggest_and_smallest_differ_on_every_scene(clip):
    """The issue's first symptom: both picked the same (smallest) object on 5 of 6 scenes."""
    for seed in examples.SCENE_SEEDS:
        sc = examples.scene(seed)
        boxes = np.asarray([o.box for o in sc.objects], dtype=float)
        props = proposals_from_boxes(boxes, sc.image.shape[:2], "ground-truth")
        feats = embed_proposals(sc.image, props, "ips", [clip])
        big = ground_features(feats, "the biggest shape").index
        small = ground_features(feats, "the smallest shape").index
        assert big != small, seed


def test_app_grounds_among_the_users_region_masks(clip):
    """The Grounding tab's "My regions" hands the regions' masks to grounding (not only their
    boxes), so the membership reads each region's own mask."""
    from regionlab.ui.handlers import MY_REGIONS, on_ground
    from regionlab.ui.options import AppOptions
    from regionlab.ui.session import Session

    sc = examples.scene(19)
    s = Session()
    s.set_image(sc.image, "scene 19")
    for o in sc.objects:
        s.add_region(np.asarray(o.mask, bool), "click")
    labels = [o.label for o in sc.objects]
    for text, meant in (("the biggest circle", "purple circle"),
                        ("the smallest square", "orange square")):
        s, _, _, _, summary, _ = on_ground(s, text, MY_REGIONS, "shapes-clip", "",
                                           AppOptions(), progress=lambda *a, **k: None)
        res = s.results["ground"]
        assert res["proposal_source"] == "masks", res["proposal_source"]
        assert labels[res["index"]] == meant, (text, summary)


def test_app_reuses_automatic_candidates_while_the_image_stays(clip, monkeypatch):
    """Automatic proposals cost seconds per scene (classical engine): the Grounding tab computes
    and embeds them once per image, and a new image computes them again."""
    from regionlab.tasks import reclip
    from regionlab.ui.handlers import PROPOSALS, on_ground
    from regionlab.ui.options import AppOptions
    from regionlab.ui.session import Session

    calls, embeds = [], []
    real, real_embed = reclip.automatic_proposals, reclip.embed_proposals
    monkeypatch.setattr(reclip, "automatic_proposals",
                        lambda image, **kw: calls.append(1) or real(image, **kw))
    monkeypatch.setattr(reclip, "embed_proposals",
                        lambda *a, **kw: embeds.append(1) or real_embed(*a, **kw))
    s = Session()
    answers = []
    for seed, text in ((24, "the biggest triangle"), (24, "the red star"),
                       (24, "the biggest triangle"), (14, "the biggest shape")):
        if s.image_name != f"scene {seed}":
            s.set_image(examples.scene(seed).image, f"scene {seed}")
        s, *_ = on_ground(s, text, PROPOSALS, "shapes-clip", "", AppOptions(),
                          progress=lambda *a, **k: None)
        answers.append(s.results["ground"]["index"])
        assert s.results["ground"]["proposal_source"] == "automatic"
    assert len(calls) == 2, calls  # once per image
    assert len(embeds) == 2, embeds  # and embedded once: the next expression encodes text only
    assert answers[0] == answers[2]
