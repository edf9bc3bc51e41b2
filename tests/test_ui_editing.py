"""Region editing and vocabulary choice in the app, on the pure functions under the UI (no
server): Exclude clicks, undo, the once-per-session notice, custom classes."""

from __future__ import annotations

import numpy as np
import pytest

from regionlab.errors import InputError
from regionlab.segment.interactive import exclude_only
from regionlab.ui import handlers
from regionlab.ui.handlers import BOX, EXCLUDE, INCLUDE, click_at, on_undo
from regionlab.ui.options import AppOptions
from regionlab.ui.session import UNDO_DEPTH, Session

OPTS = AppOptions()


def _scene_session(seed: int = 24) -> tuple[Session, object]:
    from regionlab.ui.examples import scene

    sc = scene(seed)
    s = Session()
    s.set_image(sc.image, f"scene {seed}")
    return s, sc


def _points_inside(mask: np.ndarray, n: int, seed: int = 0) -> list[tuple[int, int]]:
    ys, xs = np.nonzero(mask)
    pick = np.random.default_rng(seed).choice(len(xs), n, replace=False)
    return [(int(xs[k]), int(ys[k])) for k in pick]


def test_an_exclude_click_never_grows_the_region():
    """Include at an object's centre, then Exclude somewhere on the same object (classical
    engine, as without SAM weights). Before the fix most such clicks grew the region (GrabCut
    seeded by the previous mask): here 5 of 12, e.g. the purple triangle 10731 -> 10900 px."""
    s, sc = _scene_session(24)
    checked = 0
    for obj in sc.objects:
        handlers.on_new_region(s)
        click_at(s, *(int(v) for v in obj.center), INCLUDE, "classical", OPTS)
        first = s.active_region().mask.copy()
        for x, y in _points_inside(obj.mask, 2):
            try:
                click_at(s, x, y, EXCLUDE, "classical", OPTS)
            except InputError:  # "would leave the region empty": allowed, nothing changes
                continue
            after = s.active_region().mask
            grown = int((after & ~first).sum())
            assert grown == 0, (obj.label, int(first.sum()), int(after.sum()), (x, y))
            on_undo(s)  # back to the Include click alone
            assert np.array_equal(s.active_region().mask, first)
            checked += 1
    assert checked >= 6


def test_exclude_only_clips_mask_and_logits():
    prev = np.zeros((40, 60), bool)
    prev[10:30, 10:40] = True
    new = np.zeros((40, 60), bool)
    new[5:35, 20:55] = True  # grew to the right and up/down, lost the left part
    mask, logits = exclude_only(prev, new)
    assert logits is None and np.array_equal(mask, prev & new)
    # classical-style logits: the working copy of the image (same aspect, here half size)
    lg = np.where(new[::2, ::2], 4.0, -4.0).astype(np.float32)
    mask, cut = exclude_only(prev, new, lg)
    assert cut.shape == lg.shape and not ((cut > 0) & ~mask[::2, ::2]).any()
    assert (cut > 0).sum() == mask[::2, ::2].sum()
    # SAM-style logits: a square covering the image from its top-left corner (padded below)
    sam = np.full((64, 64), 3.0, np.float32)
    mask, cut = exclude_only(prev, new, sam)
    on = cut > 0
    assert not on[int(40 * 64 / 60) + 1:].any()  # the padding below the image is cut
    assert on[int(20 * 64 / 60), int(30 * 64 / 60)]  # inside both masks: kept
    assert not on[int(20 * 64 / 60), int(50 * 64 / 60)]  # the grown part: cut
    with pytest.raises(InputError, match="shapes differ"):
        exclude_only(prev, new[:10])


def test_undo_takes_back_clicks_one_by_one():
    s, sc = _scene_session(24)
    star = next(o for o in sc.objects if o.label == "red star")
    other = next(o for o in sc.objects if o.label != "red star")
    with pytest.raises(InputError, match="nothing to undo"):
        on_undo(s)
    click_at(s, *(int(v) for v in star.center), INCLUDE, "classical", OPTS)
    one = s.active_region().mask.copy()
    click_at(s, *(int(v) for v in other.center), INCLUDE, "classical", OPTS)  # refines region 1
    two = s.active_region().mask.copy()
    assert s.names() == ["region 1"] and two.sum() > one.sum()
    s.results["invert"] = {"stale": True}
    _, _, dd, legend = on_undo(s)
    assert np.array_equal(s.active_region().mask, one) and s.active_region().points == [
        (*(int(v) for v in star.center), 1)]
    assert "invert" not in s.results  # results of the undone regions are dropped
    assert "region 1" in legend
    on_undo(s)
    assert s.regions == [] and s.active is None
    with pytest.raises(InputError, match="nothing to undo"):
        on_undo(s)
    # a box's first corner is a click too
    handlers.on_new_region(s)
    click_at(s, 5, 5, BOX, "classical", OPTS)
    assert s.pending_corner == (5, 5)
    on_undo(s)
    assert s.pending_corner is None


def test_undo_refuses_after_other_changes_and_is_bounded():
    s = Session()
    s.set_image(np.zeros((20, 30, 3), np.uint8), "t")
    for k in range(UNDO_DEPTH + 3):  # clicks as click_at records them
        before = s.begin_click()
        m = np.zeros((20, 30), bool)
        m[k % 20, :] = True
        s.add_region(m, "click", points=[(0, k % 20, 1)])
        s.end_click(before)
    assert len(s.undo_stack) == UNDO_DEPTH
    s.undo()
    assert len(s.regions) == UNDO_DEPTH + 2
    s.rename(s.names()[0], "renamed")
    with pytest.raises(InputError, match="changed in another way"):
        s.undo()
    assert s.names()[0] == "renamed"  # nothing was taken back
    s.set_image(np.zeros((20, 30, 3), np.uint8), "new")
    assert not s.can_undo()


def test_the_no_sam_notice_is_shown_once_per_session(monkeypatch):
    from regionlab.segment.interactive import default_segmenter_name

    name, notice = default_segmenter_name()
    if not notice:
        pytest.skip(f"a SAM is available here ({name}): no fallback notice")
    shown: list[str] = []
    monkeypatch.setattr(handlers.gr, "Info", lambda msg, *a, **k: shown.append(msg))
    from regionlab.ui.examples import scene

    s = Session()
    for seed in (24, 14, 24):  # a new image each time: a new segmenter, the same notice
        sc = scene(seed)
        s.set_image(sc.image, f"scene {seed}")
        click_at(s, *(int(v) for v in sc.objects[0].center), INCLUDE, "", OPTS)
    assert shown == [notice]
    other = Session()  # another session is told too
    other.set_image(sc.image, "x")
    click_at(other, *(int(v) for v in sc.objects[0].center), INCLUDE, "", OPTS)
    assert shown == [notice, notice]


def test_typed_custom_classes_win_over_the_vocabulary_dropdown():
    from regionlab.ui.handlers import (
        custom_after_choice,
        vocab_choice_for,
        vocab_label,
        vocab_of,
    )

    assert vocab_of("shapes", "red star, blue circle") == ["red star", "blue circle"]
    assert vocab_of("custom", "red star, blue circle") == ["red star", "blue circle"]
    assert vocab_of("coco", "  ") == "coco" and vocab_of("voc", None) == "voc"
    with pytest.raises(InputError, match="no custom classes"):
        vocab_of("custom", "")
    assert vocab_label("shapes") == "shapes (built-in)"
    assert vocab_label(["red star", "blue circle"]) == "custom: red star, blue circle"
    assert vocab_label([f"c{i}" for i in range(12)]).endswith("(12 classes)")
    # the dropdown follows the text box, and a built-in choice empties the box
    assert vocab_choice_for("red star", "shapes", "shapes") == "custom"
    assert vocab_choice_for("", "custom", "shapes") == "shapes"
    assert vocab_choice_for("", "coco", "shapes") == "coco"
    assert custom_after_choice("coco", "red star") == ""
    assert custom_after_choice("custom", "red star") == "red star"
