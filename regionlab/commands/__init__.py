"""Subcommands of the ``regionlab`` CLI (see ``regionlab.cli`` for the shared conventions)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def add_model_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="CLIP name or ARCH@SOURCE (default: REGIONLAB_CLIP or shapes-clip)")


def save_mask_png(mask: np.ndarray, path: Path) -> str:
    """Write a boolean mask as a 0/255 greyscale PNG; returns the path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return str(path)


def as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
