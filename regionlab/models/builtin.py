"""Registers the built-in model specs (imported lazily by the registry)."""

from __future__ import annotations

from .clip import REAL_CLIPS, open_clip_spec, shapes_spec
from .registry import _SPECS, register_model

if "shapes-clip" not in _SPECS:
    register_model(shapes_spec("shapes-clip"))
    for _arch, _tag in REAL_CLIPS:
        register_model(open_clip_spec(_arch, _tag))
