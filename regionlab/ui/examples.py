"""Example inputs: ShapesWorld scenes rendered by seed, and real photos that ship with
scikit-image, with region masks prepared in ``assets/examples/`` (see
``scripts/prepare_example_masks.py``)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..inputs import check_number

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "examples"
SCENE_SIZE = 448
SCENE_NAMESPACE = 7  # seeds (7, n): disjoint from the train/val/test splits (0, 1, 2)
SCENE_SEEDS = (24, 14, 30, 19, 32, 38)
PHOTOS = ("astronaut", "coffee", "chelsea")


@dataclass
class Example:
    name: str
    image: np.ndarray
    regions: list[tuple[str, np.ndarray]]  # prepared (name, mask) pairs, may be empty


def scene(seed: int):
    """The ShapesWorld scene of the app's example ``seed`` (448 px, 3-4 objects)."""
    from ..shapes.scenes import RenderOptions, render_scene

    seed = check_number(seed, "scene seed", 0, 2**31 - 1, integer=True)
    opts = RenderOptions(size=SCENE_SIZE, min_objects=3, max_objects=4)
    return render_scene((SCENE_NAMESPACE, seed), opts)


def scene_example(seed: int) -> Example:
    sc = scene(seed)
    return Example(f"ShapesWorld scene {seed}", sc.image, [])


def photos_available() -> bool:
    return importlib.util.find_spec("skimage") is not None


def photo_example(name: str) -> Example:
    """A scikit-image sample photo with its prepared masks."""
    if name not in PHOTOS:
        raise InputError(f"unknown example photo {name!r}; choose from {list(PHOTOS)}")
    if not photos_available():
        raise InputError("photo examples need scikit-image (pip install scikit-image)")
    from skimage import data

    image = np.ascontiguousarray(getattr(data, name)()[..., :3])
    regions = []
    for path in sorted(ASSETS.glob(f"{name}__*.png")):
        mask = np.asarray(Image.open(path).convert("L")) > 127
        if mask.shape == image.shape[:2] and mask.any():
            regions.append((path.stem.split("__", 1)[1].replace("_", " "), mask))
    return Example(name, image, regions)


def gallery() -> list[tuple[str, str]]:
    """(key, caption) of every example: ``scene:<seed>`` and ``photo:<name>``."""
    items = [(f"scene:{s}", f"scene {s}") for s in SCENE_SEEDS]
    if photos_available():
        items += [(f"photo:{p}", p) for p in PHOTOS]
    return items


def load_example(key: str) -> Example:
    kind, _, value = str(key).partition(":")
    if kind == "scene":
        return scene_example(int(value) if value.isdigit() else -1)
    if kind == "photo":
        return photo_example(value)
    raise InputError(f"unknown example {key!r}")


def thumbnail(example: Example, size: int = 160) -> np.ndarray:
    img = Image.fromarray(example.image)
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img)
