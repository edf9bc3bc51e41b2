"""The fixed ShapesWorld vocabulary: 6 colours x 5 shapes = 30 classes "<colour> <shape>"."""

from __future__ import annotations

COLOURS: dict[str, float] = {
    # colour name -> base hue in degrees (HSV); saturation/value are jittered per object
    "red": 0.0,
    "orange": 28.0,
    "yellow": 55.0,
    "green": 125.0,
    "blue": 225.0,
    "purple": 280.0,
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
CLASSES: tuple[str, ...] = tuple(f"{c} {s}" for c in COLOUR_NAMES for s in SHAPES)


def class_name(colour: str, shape: str) -> str:
    """The class name of a colour/shape pair, e.g. ``class_name("red", "star") == "red star"``."""
    if colour not in COLOURS or shape not in SHAPES:
        raise ValueError(f"unknown ShapesWorld class: {colour!r} {shape!r}")
    return f"{colour} {shape}"
