"""Segmentation: interactive masks from clicks/boxes and class-agnostic mask proposals.

SAM (``segment-anything``) when a checkpoint is available; a classical offline fallback
(colour region growing + GrabCut + boundary unmixing) through the same interface otherwise.

>>> seg = make_segmenter()             # per session; SAM if weights are here, else classical
>>> seg.set_image(image)
>>> result = seg.predict(points=[(120, 80, 1)], box=None, multimask=True)
>>> proposals = generate_proposals(image, "auto", max_proposals=30)
"""

from .interactive import (
    CLASSICAL,
    ClassicalSegmenter,
    SamSegmenter,
    Segmenter,
    SegmentResult,
    default_segmenter_name,
    list_segmenters,
    make_segmenter,
    segment,
)
from .proposals import Proposal, generate_proposals

__all__ = [
    "CLASSICAL", "ClassicalSegmenter", "Proposal", "SamSegmenter", "SegmentResult", "Segmenter",
    "default_segmenter_name", "generate_proposals", "list_segmenters", "make_segmenter",
    "segment",
]
