"""The three ShapesWorld renderers by name, for benchmarks and exports.

- ``pil``: the first renderer (:func:`regionlab.shapes.scenes.render_scene`), what the bundled
  models were first trained on;
- ``cv``: the second (:mod:`regionlab.shapes.render_cv`, OpenCV); the CLIP trains on it from
  stage 11 on (domain randomisation) and grounding's defaults are tuned on its validation
  scenes too (from the contrastive membership on); the decoders and the classical segmenter
  never see it;
- ``mpl``: the third (:mod:`regionlab.shapes.render_mpl`, matplotlib Agg), never trained or
  tuned on: the shift set of issue 27.
"""

from __future__ import annotations

from .scenes import RenderOptions, Scene, render_scene

RENDERERS = ("pil", "cv", "mpl")


def render(renderer: str, key: tuple, options: RenderOptions = RenderOptions(),
           objects: list[tuple[str, str]] | None = None,
           n_objects: tuple[int, int] | None = None) -> Scene:
    """Scene ``key`` of ``renderer`` at ``options.size``; ``objects`` fixes the objects,
    ``n_objects`` (inclusive) their number (the cv/mpl default: 1-6; pil: ``options``)."""
    if renderer == "pil":
        if n_objects:
            from dataclasses import replace

            options = replace(options, min_objects=n_objects[0], max_objects=n_objects[1])
        return render_scene(key, options, objects=objects)
    if renderer == "cv":
        from .render_cv import render_scene_cv as draw
    elif renderer == "mpl":
        from .render_mpl import render_scene_mpl as draw
    else:
        raise ValueError(f"unknown renderer {renderer!r}; expected one of {RENDERERS}")
    return draw(key, options.size, objects=objects, n_objects=n_objects or (1, 6))
