"""Segment Anything (SAM) models: ViT-B/L/H checkpoints and a tiny random SAM for tests.

Weights are looked up, in order, in: the spec's environment variable (``REGIONLAB_SAM_VIT_B``,
``REGIONLAB_SAM_VIT_L``, ``REGIONLAB_SAM_VIT_H``), then the Hugging Face hub cache
(``ybelkada/segment-anything``, files ``checkpoints/sam_vit_*.pth``). ``REGIONLAB_SAM_CHECKPOINT``
names one checkpoint of any size (spec ``sam``; the architecture is read from the weights), and
ad-hoc names ``vit_b@/path/to/sam_vit_b.pth`` work like the CLIP ones. Checkpoints are read with
``torch.load(weights_only=True)`` (or safetensors); nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from ..errors import ModelUnavailableError
from .registry import ModelSpec, register_adhoc

HUB_REPO = "ybelkada/segment-anything"
CHECKPOINT_ENV = "REGIONLAB_SAM_CHECKPOINT"
# arch -> (encoder width, depth, heads, global attention blocks, official file name)
ARCHS: dict[str, tuple[int, int, int, tuple[int, ...], str]] = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11), "sam_vit_b_01ec64.pth"),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23), "sam_vit_l_0b3195.pth"),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31), "sam_vit_h_4b8939.pth"),
}
# the tiny random SAM: same modules, small widths, 128 px input (8 x 8 embedding, 32 px logits)
TINY = {"embed_dim": 32, "depth": 2, "heads": 2, "global_attn": (1,), "image_size": 128,
        "prompt_dim": 32, "window": 4, "mlp_dim": 64, "seed": 0}


@dataclass
class LoadedSAM:
    """A loaded, read-only SAM. Sessions wrap it in their own ``SamPredictor``."""

    name: str
    model: torch.nn.Module  # segment_anything.modeling.Sam
    arch: str
    device: torch.device
    dtype: torch.dtype

    @property
    def image_size(self) -> int:
        """The encoder's square input side (images are resized so their longest side is this)."""
        return int(self.model.image_encoder.img_size)

    @property
    def low_res_size(self) -> int:
        """Side of the low-resolution mask logits (256 for the real models)."""
        return int(self.model.prompt_encoder.mask_input_size[0])


def build_sam_model(
    arch: str = "vit_b", image_size: int = 1024, embed_dim: int | None = None,
    depth: int | None = None, heads: int | None = None, global_attn: tuple[int, ...] | None = None,
    prompt_dim: int = 256, window: int = 14, mlp_dim: int = 2048,
) -> torch.nn.Module:
    """A SAM with random weights from ``segment_anything.modeling`` (eval mode).

    ``arch`` gives the encoder size of the official models; the keyword arguments override it
    (used for the tiny test model).
    """
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    if arch not in ARCHS and None in (embed_dim, depth, heads, global_attn):
        raise ModelUnavailableError(f"unknown SAM architecture {arch!r}; expected one of "
                                    f"{tuple(ARCHS)}")
    width, n_blocks, n_heads, glob, _ = ARCHS.get(arch, (0, 0, 0, (), ""))
    patch = 16
    grid = image_size // patch
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=depth or n_blocks, embed_dim=embed_dim or width, img_size=image_size,
            mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=heads or n_heads, patch_size=patch, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=tuple(global_attn if global_attn is not None else glob),
            window_size=window, out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size), mask_in_chans=16 if prompt_dim >= 64 else 4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=mlp_dim,
                                          num_heads=8 if prompt_dim >= 64 else 2),
            transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=prompt_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def build_tiny_sam() -> torch.nn.Module:
    """The tiny randomly initialised SAM (deterministic: seeded, independent of global RNG)."""
    cfg = dict(TINY)
    seed = cfg.pop("seed")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_sam_model("tiny", **cfg)


def infer_arch(state: dict) -> str:
    """The official architecture of a SAM state dict, from its patch-embedding width."""
    w = state.get("image_encoder.patch_embed.proj.weight")
    if w is None:
        raise ModelUnavailableError("not a segment-anything checkpoint (no "
                                    "image_encoder.patch_embed.proj.weight)")
    for arch, (width, *_rest) in ARCHS.items():
        if w.shape[0] == width:
            return arch
    raise ModelUnavailableError(f"SAM checkpoint has encoder width {w.shape[0]}; expected one of "
                                f"{[a[0] for a in ARCHS.values()]}")


def read_checkpoint(path: Path) -> dict:
    """A SAM state dict from ``.pth`` (``weights_only=True``) or ``.safetensors``."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    return state


def _hub_file(arch: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    hit = try_to_load_from_cache(HUB_REPO, f"checkpoints/{ARCHS[arch][4]}")
    return hit if isinstance(hit, str) else None


def checkpoint_path(spec: ModelSpec) -> tuple[Path | None, str]:
    """(the checkpoint to load or None, where it was looked for / found)."""
    env = spec.extra.get("env")
    explicit = spec.extra.get("path") or (os.environ.get(env) if env else None)
    if explicit:
        p = Path(explicit).expanduser()
        if spec.extra.get("path"):
            return (p, f"file {p}") if p.is_file() else (None, f"file not found: {p}")
        return (p, f"{env}={explicit}") if p.is_file() else (
            None, f"file not found: {p} (from {env})")
    if spec.arch in ARCHS:
        hit = _hub_file(spec.arch)
        if hit:
            return Path(hit), f"in the Hugging Face cache ({HUB_REPO})"
        return None, f"no {env} and not in the Hugging Face cache ({HUB_REPO})"
    return None, f"{env} is not set"


def _available(spec: ModelSpec) -> tuple[bool, str]:
    if spec.extra.get("tiny"):
        return True, "built in (random weights, for tests)"
    path, where = checkpoint_path(spec)
    return (path is not None), where


def _how_to(spec: ModelSpec) -> str:
    arch = spec.arch if spec.arch in ARCHS else "vit_b"
    fname = ARCHS[arch][4]
    return (f"To provide it: download {fname} (https://github.com/facebookresearch/segment-anything"
            f"#model-checkpoints, or `hf download {HUB_REPO} checkpoints/{fname}`) and set "
            f"{spec.extra.get('env') or CHECKPOINT_ENV}=/path/to/{fname}.")


def _load(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedSAM:
    if spec.extra.get("tiny"):
        model = build_tiny_sam()
        arch = "tiny"
    else:
        path, where = checkpoint_path(spec)
        if path is None:
            raise ModelUnavailableError(f"SAM model {spec.name!r} has no checkpoint ({where}). "
                                        f"{_how_to(spec)}")
        try:
            state = read_checkpoint(path)
            arch = infer_arch(state)
            if spec.arch in ARCHS and arch != spec.arch:
                raise ModelUnavailableError(f"{path} holds a SAM {arch}, not {spec.arch}")
            model = build_sam_model(arch)
            model.load_state_dict(state)
        except ModelUnavailableError:
            raise
        except Exception as exc:
            raise ModelUnavailableError(f"cannot load SAM model {spec.name!r} from {path}: "
                                        f"{type(exc).__name__}: {exc}") from None
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return LoadedSAM(spec.name, model, arch, device, dtype)


def sam_spec(arch: str) -> ModelSpec:
    """The registered spec ``sam-vit-b`` / ``sam-vit-l`` / ``sam-vit-h``."""
    env = f"REGIONLAB_SAM_{arch.upper()}"
    return ModelSpec(
        name=f"sam-{arch.replace('_', '-')}", kind="sam", source=f"${env} or hf-hub:{HUB_REPO}",
        loader=_load, availability=_available, arch=arch,
        description=f"Segment Anything {arch.replace('_', '-').upper()} (Meta, Apache-2.0)",
        extra={"env": env},
    )


def generic_spec() -> ModelSpec:
    """Spec ``sam``: the checkpoint named by REGIONLAB_SAM_CHECKPOINT, any size."""
    return ModelSpec(
        name="sam", kind="sam", source=f"${CHECKPOINT_ENV}", loader=_load,
        availability=_available, arch="any",
        description="Segment Anything checkpoint named by REGIONLAB_SAM_CHECKPOINT (any size)",
        extra={"env": CHECKPOINT_ENV},
    )


def tiny_spec() -> ModelSpec:
    return ModelSpec(
        name="sam-tiny-random", kind="sam", source="built-in", loader=_load,
        availability=_available, arch="tiny",
        description="tiny randomly initialised SAM (128 px input) for tests; masks are meaningless",
        extra={"tiny": True, "testing": True},
    )


def adhoc_spec(arch: str, source: str) -> ModelSpec:
    """``vit_b@/path/to/checkpoint.pth`` (``vit-b`` and ``any`` accepted too)."""
    arch = arch.lower().replace("-", "_")
    if arch not in ARCHS and arch != "any":
        raise ModelUnavailableError(f"unknown SAM architecture {arch!r}; expected one of "
                                    f"{tuple(ARCHS)} or 'any'")
    return ModelSpec(
        name=f"{arch}@{source}", kind="sam", source=source, loader=_load, availability=_available,
        arch=arch, description=f"Segment Anything {arch} from {source}", extra={"path": source},
    )


register_adhoc("sam", adhoc_spec)
SAM_SPECS = ("sam", "sam-vit-b", "sam-vit-l", "sam-vit-h", "sam-tiny-random")


def all_specs() -> list[ModelSpec]:
    return [generic_spec(), *(sam_spec(a) for a in ARCHS), tiny_spec()]


def builtin_sam_specs() -> list[ModelSpec]:
    """The specs registered from ``models/builtin.py``."""
    return all_specs()
