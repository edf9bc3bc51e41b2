"""Pictures of the app (pure image functions, no server): heatmaps carry a colour scale, the
loss chart's tick labels never overlap, region overlays keep the objects' colours."""

from __future__ import annotations

import numpy as np
import pytest

from regionlab import viz
from regionlab.ui.draw import overlay_regions


def _near(pixels: np.ndarray, rgb, tol: float = 40) -> np.ndarray:
    return np.abs(pixels.astype(np.float32) - np.asarray(rgb, np.float32)).max(-1) <= tol


def test_heatmaps_get_a_colour_scale_from_low_to_high():
    img = np.full((200, 300, 3), 90, np.uint8)
    out = viz.with_colourbar(img, "jet")
    assert out.shape[1] == 300 and out.shape[0] > 200 + 30
    assert np.array_equal(out[:200], img)  # the heatmap itself is untouched
    b = out[200:].astype(int)
    red = (b[..., 0] > 150) & (b[..., 2] < 80)
    blue = (b[..., 2] > 150) & (b[..., 0] < 80)
    # high (red in jet) on the right, low (blue) on the left, over tens of columns each
    assert red[:, 225:].any(0).sum() > 20 and not red[:, :75].any()
    assert blue[:, :75].any(0).sum() > 20 and not blue[:, 225:].any()
    assert (b.reshape(-1, 3) < 60).all(1).sum() > 30  # dark text: ticks and words
    assert viz.colourbar(448).shape[1] == 448
    with pytest.raises(ValueError, match="64 px"):
        viz.colourbar(10)


@pytest.mark.parametrize("n", [10, 37, 300, 2000])
def test_loss_chart_ticks_are_integers_and_never_overlap(n):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = viz._line_figure(np.exp(-np.arange(n) / 50), "iteration", "loss", 520, 260, 1,
                           "#4f46e5")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    labels = [t for t in ax.get_xticklabels() if t.get_text() and lo <= t.get_position()[0] <= hi]
    boxes = sorted((t.get_window_extent() for t in labels), key=lambda b: b.x0)
    assert len(boxes) >= 2 or n < 3
    for a, b in zip(boxes, boxes[1:]):
        assert a.x1 + 4 <= b.x0, (n, [t.get_text() for t in labels])
    img = viz.line_chart(np.linspace(1, 0, n))
    assert img.shape == (260, 520, 3) and img.dtype == np.uint8


def test_region_overlays_keep_the_objects_colours():
    img = np.full((120, 160, 3), 200, np.uint8)
    img[30:90, 40:100] = (30, 60, 220)  # a blue square
    mask = np.zeros((120, 160), bool)
    mask[30:90, 40:100] = True
    green = (60, 180, 75)
    out = overlay_regions(img, [mask], [green], highlight=0)
    inner = np.zeros_like(mask)
    inner[40:80, 50:90] = True  # well inside the outline
    assert np.array_equal(out[inner], img[inner])  # the object keeps its colour
    assert _near(out, green, 10).sum() > 150  # the outline is there, in the region's colour
    assert _near(out, (255, 255, 255), 10).sum() > 150  # on a white halo
    far = np.ones_like(mask)
    far[20:100, 30:110] = False
    assert np.array_equal(out[far], img[far])
    tinted = overlay_regions(img, [mask], [green], alpha=0.3)
    assert not np.array_equal(tinted[inner], img[inner])  # a tint only when asked for


def test_embedding_view_shows_heatmaps_with_scale_and_a_loss_picture():
    from regionlab.ui.handlers import embedding_view
    from regionlab.ui.session import Session

    s = Session()
    s.set_image(np.full((64, 80, 3), 120, np.uint8), "t")
    mask = np.zeros((64, 80), bool)
    mask[10:30, 20:50] = True
    s.add_region(mask, "brush")
    ramp = np.tile(np.linspace(0, 1, 80, dtype=np.float32), (64, 1))[None]
    s.results["invert"] = {
        "names": ["region 1"], "masks": mask[None], "maps": ramp, "initial_maps": ramp,
        "history": [np.zeros((1, 16, 16), np.float16)] * 3, "history_iterations": [0, 5, 9],
        "losses": list(np.linspace(0.9, 0.4, 40)), "top": [[{"label": "x", "score": 0.9}]]}
    before, _, it_map, after, loss, _, _ = embedding_view(s, "region 1")
    for pic in (before, after, it_map.value if hasattr(it_map, "value") else it_map):
        assert pic is not None
    assert before.shape[1] == 80 and before.shape[0] > 64 and after.shape == before.shape
    assert isinstance(loss, np.ndarray) and loss.ndim == 3


def test_label_overlays_use_a_light_tint_and_an_outline_in_the_class_colour():
    img = np.full((100, 100, 3), 170, np.uint8)
    img[20:80, 20:80] = (220, 30, 40)  # a red object labelled with a green class colour
    lm = np.zeros((100, 100), np.int32)
    lm[20:80, 20:80] = 1
    green = np.array([[44, 160, 44]], np.uint8)
    out = viz.label_map_overlay(img, lm, green).astype(int)
    r, g, b = out[50, 50]
    assert r > 2 * g and r > 2 * b  # still reads as red (it was olive at alpha 0.55)
    assert (out[20, 20:80] == green[0]).all()  # the outline carries the class colour
    assert np.array_equal(out[lm == 0], img[lm == 0].astype(int))
    masks = viz.overlay_masks(img, lm[None] > 0, green).astype(int)
    assert masks[50, 50, 0] > 2 * masks[50, 50, 1]
