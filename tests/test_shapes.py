import numpy as np
import pytest

from regionlab.shapes.scenes import RenderOptions, generate_scenes, render_scene
from regionlab.shapes.tokenizer import ShapesTokenizer
from regionlab.shapes.vocab import CLASSES


def test_vocabulary_is_fixed():
    assert len(CLASSES) == 30 and CLASSES[0] == "red circle" and "purple cross" in CLASSES


def test_scenes_are_deterministic_and_consistent():
    a = generate_scenes("test", 5, seed=3)
    b = generate_scenes("test", 5, seed=3)
    for sa, sb in zip(a, b):
        assert np.array_equal(sa.image, sb.image)
        assert [o.label for o in sa.objects] == [o.label for o in sb.objects]
    for s in a:
        assert s.image.dtype == np.uint8 and s.image.shape == (64, 64, 3)
        assert 1 <= len(s.objects) <= 4
        union = np.zeros(s.image.shape[:2], int)
        for o in s.objects:
            x0, y0, x1, y1 = o.box
            assert o.mask[y0:y1, x0:x1].sum() == o.mask.sum() > 0
            union += o.mask
        assert union.max() <= 1  # non-overlapping


def test_splits_differ():
    a = generate_scenes("train", 3)
    b = generate_scenes("test", 3)
    assert not np.array_equal(a[0].image, b[0].image)


@pytest.mark.parametrize("size", [16, 37, 200])
def test_any_size(size):
    s = render_scene(7, RenderOptions(size=size))
    assert s.image.shape == (size, size, 3)
    assert all(o.mask.shape == (size, size) for o in s.objects)


def test_fixed_objects_and_caption():
    s = render_scene(1, objects=[("orange", "star"), ("red", "circle")])
    assert sorted(o.label for o in s.objects) == ["orange star", "red circle"]
    assert "an orange star" in s.caption() and "a red circle" in s.caption()


def test_tokenizer_eot_is_argmax():
    tok = ShapesTokenizer(16)
    ids = tok(["a photo of a red circle.", "zebra"])
    assert ids.shape == (2, 16)
    assert ids[0].argmax() == (ids[0] > 0).sum() - 1  # EOT has the highest id
    assert ids[1, 1] == tok.unk_token_id
