"""Registers the built-in model specs (imported lazily by the registry)."""

from __future__ import annotations

from .clip import REAL_CLIPS, open_clip_spec, shapes_spec
from .registry import _SPECS, register_model

if "shapes-clip" not in _SPECS:
    register_model(shapes_spec("shapes-clip"))
    for _arch, _tag in REAL_CLIPS:
        register_model(open_clip_spec(_arch, _tag))

# Segment Anything (issue 5): ViT-B/L/H from local/env/hub checkpoints, plus a tiny random SAM
# for tests (hidden from user-facing lists via extra["testing"]).
from .sam import builtin_sam_specs  # noqa: E402

for _spec in builtin_sam_specs():
    if _spec.name not in _SPECS:
        register_model(_spec)

# OVSeg mask-adapted CLIP ViT-L/14 (issue 7): available when REGIONLAB_OVSEG_CHECKPOINT points at
# a user-supplied OVSeg checkpoint; other paths register via ovseg_clip.register_ovseg_checkpoint.
from .ovseg_clip import SPEC_NAME as _OVSEG_NAME  # noqa: E402
from .ovseg_clip import ovseg_spec  # noqa: E402

if _OVSEG_NAME not in _SPECS:
    register_model(ovseg_spec())

# Captioners and generators (issue 8): the bundled ShapesWorld decoders, user-supplied CLIPCap
# checkpoints, and diffusers unCLIP-style decoders (Stable unCLIP H/L, Kandinsky 2.2).
from .captioner import builtin_captioner_specs  # noqa: E402
from .generator import builtin_generator_specs  # noqa: E402

for _spec in [*builtin_captioner_specs(), *builtin_generator_specs()]:
    if _spec.name not in _SPECS:
        register_model(_spec)
