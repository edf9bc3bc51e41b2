"""What the app's Generate panel draws on its own example scenes (issue 28).

Every object of every example scene, as the panel does it: the MaskInversion embedding of the
object's mask, two images from the bundled generator (default steps and guidance), and the
class the bundled CLIP sees in each. Measured (2026-12-06): 34 of 46 images of the right class,
44 of 46 of the right colour (gen_canon4: 37 and 45); the generator shipped before the canonical
targets (generator9) drew the class in 9 of 46 (colour 42) and fails the floor, which is the
measured rate less a margin for other machines (README "Where generation fails").
"""

from __future__ import annotations

import numpy as np
import pytest

from regionlab.models.generator import SHAPES_GENERATOR
from regionlab.shapes.model import WEIGHTS as SHAPES_CLIP
from regionlab.ui import examples

pytestmark = pytest.mark.skipif(not (SHAPES_CLIP.is_file() and SHAPES_GENERATOR.is_file()),
                                reason="bundled CLIP / generator not here")


@pytest.fixture(scope="module")
def drawn():
    """(object label, [class seen in each generated image]) for every example object."""
    from regionlab.tasks.generate import GenerateOptions, generate_regions, load_generator

    gen = load_generator("shapes-generator", "cpu")
    out = []
    for seed in examples.SCENE_SEEDS:
        sc = examples.scene(seed)
        masks = np.stack([o.mask for o in sc.objects])
        res = generate_regions(sc.image, masks, generator=gen, method="maskinversion",
                               options=GenerateOptions(n=2, seed=0), vocab="shapes")
        out += [(o.label, [s["label"] for s in seen]) for o, seen in zip(sc.objects, res.seen)]
    return out


def test_generated_images_keep_the_colour_of_every_example_region(drawn):
    colour = [lab.split()[0] == s.split()[0] for lab, seen in drawn for s in seen]
    assert np.mean(colour) >= 0.93, drawn


def test_generated_images_draw_the_class_of_most_example_regions(drawn):
    right = [lab == s for lab, seen in drawn for s in seen]
    assert len(right) >= 40
    assert np.mean(right) >= FLOOR, (np.mean(right), drawn)


FLOOR = 0.7
