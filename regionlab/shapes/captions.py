"""Reading ShapesWorld captions: which colour and shape a caption names."""

from __future__ import annotations

from .vocab import COLOUR_NAMES, SHAPES


def parse_caption(text: str) -> tuple[str | None, str | None]:
    """(first colour word, first shape word) of a caption, None where absent."""
    words = text.lower().replace(".", " ").split()
    colour = next((w for w in words if w in COLOUR_NAMES), None)
    shape = next((w for w in words if w.rstrip("s") in SHAPES or w in SHAPES), None)
    if shape and shape not in SHAPES:
        shape = shape.rstrip("s")
    return colour, shape
