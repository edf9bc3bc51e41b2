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


@pytest.mark.xfail(strict=True, reason=(
    "'the biggest circle' etc. are right 63 of 70 times with the objects' boxes (60 before the "
    "relative membership gap, 47 before the contrastive membership): on scenes 19 and 30 "
    "another shape's crop prefers its own name to the asked one by only 1.9-3.0 logits, "
    "inside the contrast tolerance of 3 that validation scenes of the OpenCV renderer need "
    "(35% of true members there prefer a one-word variant, by up to 2.7 logits), and reads "
    "the asked shape at most 5.3 logits worse than the true member, inside the gap of 10 "
    "(smaller gaps cost 2-6 points on validation). A CLIP that reads shapes more surely on "
    "every renderer is the fix (issue 27); the app warns on 5 of the 7 misses (below)"))
@pytest.mark.parametrize("candidates", ["automatic", "objects"])
def test_superlatives_of_each_shape_are_right_on_every_scene(clip, candidates):
    """"The biggest circle", "the leftmost star" ... on every scene."""
    wrong, checked = _grounded(clip, lambda t: not _generic(t), candidates)
    assert checked >= 60, checked
    assert not wrong, "\n".join(wrong)


def test_superlatives_of_each_shape_mostly_right(clip):
    """What the strict xfail above records, kept from getting worse: at least 63 of 70."""
    wrong, checked = _grounded(clip, lambda t: not _generic(t))
    assert checked >= 60 and checked - len(wrong) >= 63, (checked, wrong)


def test_wrong_answers_say_so_and_right_ones_stay_quiet(clip):
    """When the answer is wrong on an example scene, the model mostly knows it: the chosen
    candidate reads the asked shape as another (``answer_reading``) and the result warns
    (5 of the 7 misses when written; the other two read it 1.95 logits worse, inside the
    threshold of 2 chosen on validation scenes); no right answer is warned (0 of 77). The
    warning names the candidate that reads as the asked shape: the object meant, every time
    (5 of 5 when written)."""
    warned_wrong, wrong, warned_right, named = 0, 0, [], []
    for seed in examples.SCENE_SEEDS:
        sc = examples.scene(seed)
        boxes = np.asarray([o.box for o in sc.objects], dtype=float)
        feats = embed_proposals(sc.image, proposals_from_boxes(boxes, sc.image.shape[:2],
                                                               "ground-truth"), "ips", [clip])
        for text, target in expected_answers(sc).items():
            res = ground_features(feats, text)
            if res.index != target:
                wrong += 1
                warned_wrong += any("looks more like" in w for w in res.warnings)
                # the warning points at the object meant when it names an alternative
                named += [(i, target) for w in res.warnings
                          for i in re.findall(r"; candidate (\d+) reads as", w)]
            elif res.warnings:
                warned_right.append((seed, text, res.warnings))
    assert not warned_right, warned_right
    assert warned_wrong >= 5 and warned_wrong >= wrong - 2, (warned_wrong, wrong)
    assert len(named) >= 4 and all(int(i) == t for i, t in named), named


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
