"""The bundled ShapesWorld CLIP: an open_clip ``CLIP`` with a small ViT and a word tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .tokenizer import ShapesTokenizer

ARCH_NAME = "ShapesCLIP-ViT-T-8"
ASSETS = Path(__file__).resolve().parents[2] / "assets"
WEIGHTS = ASSETS / "models" / "shapes_clip.safetensors"
CONTEXT_LENGTH = 24

# An open_clip model config (the format of open_clip's model_configs/*.json).
CONFIG: dict = {
    "embed_dim": 96,
    "quick_gelu": False,
    "vision_cfg": {
        "image_size": 64,
        "layers": 4,
        "width": 192,
        "head_width": 32,
        "patch_size": 8,
        "mlp_ratio": 4.0,
    },
    "text_cfg": {
        "context_length": CONTEXT_LENGTH,
        "vocab_size": ShapesTokenizer().vocab_size,
        "width": 128,
        "heads": 4,
        "layers": 3,
    },
}


def register_with_open_clip() -> None:
    """Add the config to open_clip's registry so ``open_clip.create_model(ARCH_NAME)`` works."""
    import open_clip
    from open_clip import factory

    if ARCH_NAME not in open_clip.list_models():
        factory._MODEL_CONFIGS[ARCH_NAME] = json.loads(json.dumps(CONFIG))


def build_model() -> torch.nn.Module:
    """A randomly initialised ShapesWorld CLIP, created by open_clip's own factory."""
    import open_clip

    register_with_open_clip()
    return open_clip.create_model(ARCH_NAME, pretrained=None)


def tokenizer() -> ShapesTokenizer:
    return ShapesTokenizer(CONTEXT_LENGTH)
