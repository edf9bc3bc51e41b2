"""RegionLab: region-level vision-language tools (MaskInversion, ReCLIP grounding, OVSeg labels).

The public API (heavy modules are imported on first use)::

    import regionlab
    regionlab.models.list_models("clip")          # registry: what is available, and why not
    clip = regionlab.load_clip()                  # bundled shapes-clip, or REGIONLAB_CLIP
    res = regionlab.invert(clip, image, masks)    # MaskInversion region embeddings
    regionlab.retrieve(res.embeddings, "shapes", clip=clip)
    regionlab.region_embeddings(clip, image, masks, "masked-crop")
    regionlab.legrad_maps(clip, image, text_embeddings)
    regionlab.ground(image, "the red star left of the circle", proposals=boxes)
    regionlab.label(image, ["red star", "blue circle"], masks=masks)
"""

from __future__ import annotations

import importlib

from . import models
from .errors import InputError, ModelUnavailableError, RegionLabError, ResourceError

__version__ = "0.1.0"

_LAZY = {
    "load_clip": ("regionlab.models", "load_clip"),
    "invert": ("regionlab.region.maskinversion", "invert"),
    "region_embeddings": ("regionlab.region.baselines", "region_embeddings"),
    "legrad_maps": ("regionlab.explain.legrad", "legrad_maps"),
    "retrieve": ("regionlab.tasks.retrieval", "retrieve"),
    "classify_images": ("regionlab.tasks.retrieval", "classify_images"),
    "ground": ("regionlab.tasks.reclip", "ground"),
    "label": ("regionlab.tasks.ovseg", "label"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'regionlab' has no attribute {name!r}")


__all__ = ["models", "InputError", "ModelUnavailableError", "RegionLabError", "ResourceError",
           *_LAZY]
