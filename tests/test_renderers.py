"""The three ShapesWorld renderers and the CLIP's domain randomisation (issue 27 item 1)."""

import numpy as np
import pytest

from regionlab.shapes.renderers import RENDERERS, render
from regionlab.shapes.scenes import RenderOptions
from regionlab.shapes.vocab import CLASSES
from regionlab.training import domain, train_clip


@pytest.mark.parametrize("renderer", RENDERERS)
def test_every_renderer_is_deterministic_with_exact_disjoint_masks(renderer):
    for i in range(6):
        a, b = render(renderer, (2, 0, i)), render(renderer, (2, 0, i))
        assert np.array_equal(a.image, b.image)
        assert a.image.dtype == np.uint8 and a.image.shape == (64, 64, 3)
        assert a.objects, "every scene has an object"
        cover = np.zeros((64, 64), int)
        for ob in a.objects:
            assert ob.label in CLASSES and ob.mask.any()
            ys, xs = np.nonzero(ob.mask)
            assert ob.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            cover += ob.mask
        assert cover.max() == 1, "objects do not overlap"


@pytest.mark.parametrize("renderer", RENDERERS)
def test_renderers_draw_the_objects_asked_for_in_their_colour(renderer):
    wanted = [("red", "circle"), ("blue", "square"), ("yellow", "star")]
    s = render(renderer, (2, 0, 99), RenderOptions(size=96), objects=wanted)
    assert [(o.colour, o.shape) for o in s.objects] == wanted
    hue_of = {"red": 0, "blue": 2, "yellow": None}
    for ob in s.objects:
        mean = s.image[ob.mask].astype(float).mean(0)
        if hue_of[ob.colour] is not None:  # the dominant channel is the colour's
            assert int(np.argmax(mean)) == hue_of[ob.colour], (renderer, ob.label, mean)
        else:  # yellow: red and green high, blue low
            assert min(mean[0], mean[1]) > mean[2] + 40, (renderer, mean)


def test_the_renderers_draw_differently():
    images = [render(r, (2, 0, 5), objects=[("green", "cross")]).image for r in RENDERERS]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i].astype(int) - images[j]).mean() > 5


def test_unknown_renderer_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown renderer 'svg'"):
        render("svg", (0,))


def test_photometric_corruption_is_deterministic_and_keeps_the_image_format():
    img = render("pil", (2, 0, 1)).image
    outs = [domain.photometric(img, np.random.default_rng(s)) for s in (3, 3, 4)]
    assert np.array_equal(outs[0], outs[1])
    assert outs[0].dtype == np.uint8 and outs[0].shape == img.shape
    changed = [not np.array_equal(domain.photometric(img, np.random.default_rng(s)), img)
               for s in range(10)]
    assert sum(changed) >= 8


def test_domain_randomised_batches_mix_renderers_and_keep_their_shapes():
    args = (3, 7, 6, 6, 3, True, 0.45, 0, 0.05)
    plain = train_clip.make_batch(*args)
    mixed = train_clip.make_batch(*args, domain_mix=1.0, augment=1.0)
    again = train_clip.make_batch(*args, domain_mix=1.0, augment=1.0)
    assert np.array_equal(mixed["multi"].numpy(), again["multi"].numpy())
    assert mixed["multi"].shape == plain["multi"].shape
    assert mixed["cls"].shape[1:] == plain["cls"].shape[1:]
    assert not np.allclose(mixed["multi"].numpy(), plain["multi"].numpy())
    assert len(mixed["obj_cls"]) == mixed["obj_frac"].shape[0] > 0
    # every object's grid fraction is its own mask: a non-empty share of the image
    assert (mixed["obj_frac"].sum(-1) >= 0.25).all()


def test_training_rejects_bad_shares(tmp_path):
    with pytest.raises(SystemExit):
        train_clip.main(["--steps", "1", "--domain-mix", "1.5", "--out", str(tmp_path / "x")])


def test_partial_loss_rewards_the_objects_own_shape_and_colour_words():
    """The ``partial`` loss classifies by the shape alone and the colour alone: embeddings that
    sit on the prompts of the object's own shape and colour score far better than ones on the
    prompts of other classes'."""
    import torch
    import torch.nn.functional as F

    from regionlab.shapes.model import build_model, tokenizer
    from regionlab.shapes.vocab import COLOUR_NAMES, SHAPES

    torch.manual_seed(0)
    model, tok = build_model().eval(), tokenizer()
    labels = torch.tensor([0, 7, 13, 29])
    batch = {"template": "a photo of a {}.", "partial_noun": "object", "cls_labels": labels}
    with torch.no_grad():
        shape_txt = F.normalize(model.encode_text(tok([f"a photo of a {s}." for s in SHAPES])), -1)
        colour_txt = F.normalize(model.encode_text(
            tok([f"a photo of a {c} object." for c in COLOUR_NAMES])), -1)

        def on(lbl):
            names = [CLASSES[i].split() for i in lbl.tolist()]
            return F.normalize(shape_txt[[SHAPES.index(n[1]) for n in names]]
                               + colour_txt[[COLOUR_NAMES.index(n[0]) for n in names]], dim=-1)

        right = train_clip.partial_loss(model, tok, batch, on(labels), 50.0)
        wrong = train_clip.partial_loss(model, tok, batch, on(torch.tensor([16, 23, 4, 10])), 50.0)
    assert right < wrong / 2, (right, wrong)


def test_partial_t2i_loss_makes_each_prompt_pick_its_own_images():
    """``partial_t2i`` is the grounding direction: the shape prompt must score its own images
    above the others'. Images placed on their own class's shape and colour prompts score far
    better than the same images under shuffled labels; a batch with a shape nobody has still
    gives a finite loss (prompts without positives are skipped)."""
    import torch
    import torch.nn.functional as F

    from regionlab.shapes.model import build_model, tokenizer
    from regionlab.shapes.vocab import COLOUR_NAMES, SHAPES

    torch.manual_seed(0)
    model, tok = build_model().eval(), tokenizer()
    labels = torch.tensor([0, 7, 13, 29, 3, 20])
    with torch.no_grad():
        shape_txt = F.normalize(model.encode_text(tok([f"a photo of a {s}." for s in SHAPES])), -1)
        colour_txt = F.normalize(model.encode_text(
            tok([f"a photo of a {c} object." for c in COLOUR_NAMES])), -1)
        names = [CLASSES[i].split() for i in labels.tolist()]
        img = F.normalize(shape_txt[[SHAPES.index(n[1]) for n in names]]
                          + colour_txt[[COLOUR_NAMES.index(n[0]) for n in names]], dim=-1)
        right = train_clip.partial_t2i_loss(
            model, tok, {"template": "a photo of a {}.", "partial_noun": "object",
                         "cls_labels": labels}, img, 50.0)
        wrong = train_clip.partial_t2i_loss(
            model, tok, {"template": "a photo of a {}.", "partial_noun": "object",
                         "cls_labels": labels[[3, 0, 5, 1, 2, 4]]}, img, 50.0)
    assert torch.isfinite(right) and right < wrong / 2, (right, wrong)


def test_box_crops_are_the_objects_own_box_at_any_resolution():
    """``--box-crops`` trains on the view grounding shows the CLIP: an object's box (padded
    0-12%) cut from a 64-448 px scene and stretched to the input; the same key and stream give
    the same crop, and the label is the cut object's class (its colour dominates the crop)."""
    import cv2
    import numpy as np

    from regionlab.shapes.vocab import CLASSES, COLOURS
    from regionlab.training.domain import box_crop

    for i in range(6):
        a, la = box_crop((5, 0, 0, i), np.random.default_rng(i), i % 2 == 1, 0.0, 64)
        b, lb = box_crop((5, 0, 0, i), np.random.default_rng(i), i % 2 == 1, 0.0, 64)
        assert a.shape == (64, 64, 3) and np.array_equal(a, b) and la == lb
        hsv = cv2.cvtColor(a, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(float)
        hue = COLOURS[CLASSES[la].split()[0]] / 2  # OpenCV hues are degrees / 2
        dist = np.abs((hsv[:, 0] - hue + 90) % 180 - 90)
        near = (dist < 12) & (hsv[:, 1] > 100)
        assert near.mean() > 0.25, (CLASSES[la], near.mean())
