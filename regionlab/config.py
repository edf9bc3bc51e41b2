"""Limits applied at the boundary of every public function (UI, API and CLI share them)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_image_pixels: int = 50_000_000  # larger images are refused (decompression bombs)
    max_side: int = 2048  # larger images are downscaled (longest side) before processing
    # masks/regions (and embeddings) per call; MaskInversion runs them 4 at a time, so its
    # memory stays flat in the count (the paper's setting is 100 masks)
    max_masks: int = 128
    max_points: int = 64  # clicks per region
    max_iterations: int = 500
    min_lr: float = 1e-5
    max_lr: float = 10.0
    max_alpha: float = 100.0
    min_resolution: int = 32
    max_resolution: int = 1024
    max_text_chars: int = 500
    max_classes: int = 2000
    max_class_chars: int = 100
    max_images_generated: int = 8
    max_steps: int = 200
    max_guidance: float = 30.0
    max_proposals: int = 200  # automatic proposals, and candidate boxes for grounding
    max_top_k: int = 100
    max_sessions: int = 200  # app sessions whose state is kept in memory (least recent dropped)


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return default


LIMITS = Limits(max_masks=_int_env("REGIONLAB_MAX_MASKS", Limits.max_masks),
                max_sessions=_int_env("REGIONLAB_MAX_SESSIONS", Limits.max_sessions))
