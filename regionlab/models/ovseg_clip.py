"""OVSeg's mask-adapted CLIP (optional; needs a user-supplied OVSeg checkpoint).

OVSeg fine-tunes an OpenAI ViT-L/14 CLIP on masked crops and learns "mask prompt" tokens
(depth 3): in the image tower, every patch token whose 14 x 14 patch holds no foreground pixel
is REPLACED by a learned token (one per grid position and depth) before the positional
embedding is added, and again after blocks 1 and 2. A patch is foreground if any of its
pixels is. With a vanilla CLIP this module is not used (plain masked crops).

Weights: the OVSeg detectron2 checkpoint (e.g. ``ovseg_swinbase_vitL14_ft_mpt.pth``) holds the
whole CLIP under ``clip_adapter.clip_model.*`` (OpenAI key layout) and the prompts under
``clip_adapter.clip_model.visual.mask_embedding`` (depth, grid*grid, width) = (3, 256, 1024).
Only those keys are used. Files are read with ``torch.load(weights_only=True)`` (or as
safetensors); a pickle that needs arbitrary Python objects is refused with instructions.

    from regionlab.models.ovseg_clip import register_ovseg_checkpoint
    name = register_ovseg_checkpoint("/path/ovseg_swinbase_vitL14_ft_mpt.pth")
    clip = regionlab.models.load_clip(name)   # a MaskAdaptedCLIP
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ModelUnavailableError
from .clip import OPENAI_MEAN, OPENAI_STD, REAL_DEFAULTS, LoadedCLIP
from .registry import ModelSpec, register_model

PREFIX = "clip_adapter.clip_model."
MASK_KEY = "visual.mask_embedding"
ENV_VAR = "REGIONLAB_OVSEG_CHECKPOINT"
SPEC_NAME = "ovseg-ViT-L-14"

_CONVERT_HINT = (
    "If you trust the file, convert it once to safetensors and pass that instead:\n"
    "  python -c \"import torch; from safetensors.torch import save_file; "
    "sd = torch.load('IN.pth', map_location='cpu', weights_only=False); sd = sd.get('model', sd); "
    "save_file({k: v.float().contiguous() for k, v in sd.items() "
    "if k.startswith('clip_adapter.clip_model.')}, 'ovseg_clip.safetensors')\""
)


@dataclass
class MaskAdaptedCLIP(LoadedCLIP):
    """A :class:`LoadedCLIP` with OVSeg mask prompts (``mask_embedding``: (depth, G, C), G the
    number of patch tokens at ``image_size``, or 1 to share one token over all positions)."""

    mask_embedding: torch.Tensor | None = None

    @property
    def prompt_depth(self) -> int:
        return 0 if self.mask_embedding is None else int(self.mask_embedding.shape[0])

    @torch.no_grad()
    def encode_masked(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Mask-prompted image embeddings (B, D), unnormalised.

        images: normalised (B, 3, S, S) at the native ``image_size``; masks: (B, S, S)
        foreground (bool or {0, 1}). Without prompts this is the plain forward.
        """
        return mask_prompted_forward(self.visual, images, masks, self.mask_embedding)


def patch_foreground(masks: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, S, S) masks -> (B, G, 1) float: 1 where any pixel of the patch is foreground."""
    m = (masks.float() > 0).float()[:, None]
    return F.max_pool2d(m, kernel_size=patch, stride=patch).flatten(1)[..., None]


def mask_prompted_forward(visual, images: torch.Tensor, masks: torch.Tensor | None,
                          prompts: torch.Tensor | None) -> torch.Tensor:
    """OVSeg's mask-prompted forward of an open_clip VisionTransformer (layout-independent).

    Background patch tokens are replaced by ``prompts[0]`` after the patch embedding (before
    the positional embedding), and by ``prompts[i]`` after block i for i = 1..depth-1.
    """
    from ..explain.vit import encode_image_tokens, grid_size, run_blocks

    x = visual.conv1(images.to(visual.conv1.weight.dtype))
    b, c = x.shape[:2]
    x = x.reshape(b, c, -1).permute(0, 2, 1)  # (B, G, C)
    gh, gw = grid_size(visual, images.shape[-2], images.shape[-1])
    use = prompts is not None and masks is not None and prompts.shape[0] > 0
    if use:
        if tuple(visual.grid_size) != (gh, gw):
            raise ValueError(f"mask prompts need the native input size "
                             f"{visual.grid_size[0] * (images.shape[-1] // gw)} px")
        fg = patch_foreground(masks.to(x.device), images.shape[-1] // gw).to(x.dtype)
        pr = prompts.to(x.dtype).to(x.device)
        if pr.shape[1] == 1:
            pr = pr.expand(-1, gh * gw, -1)
        x = x * fg + pr[0][None] * (1 - fg)
    cls = visual.class_embedding.to(x.dtype).expand(b, 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x)
    blocks = list(visual.transformer.resblocks)
    for i, blk in enumerate(blocks):
        x = run_blocks(visual, x, [blk])
        if use and i + 1 < pr.shape[0]:
            x = torch.cat([x[:, :1], x[:, 1:] * fg + pr[i + 1][None] * (1 - fg)], dim=1)
    return encode_image_tokens(visual, x).float()


# ----------------------------------------------------------------------------- loading


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file, loaded safely (safetensors or weights_only pickle)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelUnavailableError(f"OVSeg checkpoint not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailableError(
            f"cannot load the OVSeg checkpoint {p} safely: it is not a plain tensor checkpoint "
            f"(torch.load(weights_only=True) refused it: {first}). RegionLab never unpickles "
            f"arbitrary objects from user files. {_CONVERT_HINT}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelUnavailableError(f"OVSeg checkpoint {p} holds a {type(obj).__name__}, "
                                    f"not a state dict")
    return {k: v for k, v in obj.items() if torch.is_tensor(v)}


def extract_clip_state(state: dict[str, torch.Tensor], source: str = "checkpoint"
                       ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """(OpenAI-layout CLIP state dict, mask_embedding or None) from an OVSeg state dict.

    Accepts keys under ``clip_adapter.clip_model.`` (OVSeg), or a bare CLIP state dict
    (optionally ``module.``-prefixed, as written by OVSeg's CLIP fine-tuning).
    """
    keys = [k.removeprefix("module.") for k in state]
    vals = list(state.values())
    if any(k.startswith(PREFIX) for k in keys):
        sd = {k[len(PREFIX):]: v for k, v in zip(keys, vals) if k.startswith(PREFIX)}
    else:
        sd = dict(zip(keys, vals))
    if "visual.proj" not in sd or "visual.conv1.weight" not in sd:
        raise ModelUnavailableError(
            f"{source} has no CLIP ViT image tower (expected keys {PREFIX}visual.conv1.weight "
            f"and {PREFIX}visual.proj); is this an OVSeg checkpoint with a ViT CLIP?")
    prompts = sd.pop(MASK_KEY, None)
    sd = {k: v.float() for k, v in sd.items()}
    return sd, None if prompts is None else prompts.float()


def build_mask_adapted_clip(state: dict[str, torch.Tensor], name: str, device=None,
                            dtype: torch.dtype = torch.float32, source: str = "checkpoint"
                            ) -> MaskAdaptedCLIP:
    """A :class:`MaskAdaptedCLIP` from an OVSeg (or bare OpenAI-layout) state dict."""
    from open_clip.model import build_model_from_openai_state_dict
    from open_clip.tokenizer import SimpleTokenizer

    sd, prompts = extract_clip_state(state, source)
    try:
        model = build_model_from_openai_state_dict(dict(sd), quick_gelu=True, cast_dtype=None)
        model = model.float()
        model.load_state_dict(sd)  # again in fp32: the builder rounds weights through fp16
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ModelUnavailableError(
            f"{source}: the CLIP weights do not form an OpenAI-layout CLIP "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    dev = torch.device(device) if device is not None else torch.device("cpu")
    model = model.float().to(device=dev, dtype=dtype).eval().requires_grad_(False)
    visual = model.visual
    g = int(visual.grid_size[0] * visual.grid_size[1])
    width = int(visual.conv1.weight.shape[0])
    if prompts is not None:
        if prompts.ndim != 3 or prompts.shape[1] not in (1, g) or prompts.shape[2] != width:
            raise ModelUnavailableError(
                f"{source}: mask_embedding has shape {tuple(prompts.shape)}; expected "
                f"(depth, {g}, {width}) for this image tower")
        if prompts.shape[0] > len(visual.transformer.resblocks):
            raise ModelUnavailableError(f"{source}: mask prompt depth {prompts.shape[0]} exceeds "
                                        f"the number of blocks")
        prompts = prompts.to(device=dev, dtype=dtype)
    size = visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    tok = SimpleTokenizer(context_length=model.context_length)
    return MaskAdaptedCLIP(name, model, tok, size, OPENAI_MEAN, OPENAI_STD, dev, dtype,
                           dict(REAL_DEFAULTS), mask_embedding=prompts)


def _available(spec: ModelSpec) -> tuple[bool, str]:
    path = spec.extra.get("path")
    if not path:
        return False, f"no OVSeg checkpoint given (set {ENV_VAR} or use --ovseg-checkpoint)"
    p = Path(path).expanduser()
    return (True, f"local file {p}") if p.is_file() else (False, f"file not found: {p}")


def _load(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> MaskAdaptedCLIP:
    path = spec.extra.get("path")
    if not path:
        raise ModelUnavailableError(
            f"model {spec.name!r}: no OVSeg checkpoint configured. Download OVSeg's "
            f"ovseg_swinbase_vitL14_ft_mpt.pth (github.com/facebookresearch/ov-seg, CC BY-NC) "
            f"and set {ENV_VAR}=/path/to/it, or pass --ovseg-checkpoint PATH.")
    return build_mask_adapted_clip(read_checkpoint(path), spec.name, device, dtype,
                                   source=str(path))


def ovseg_spec(path: str | Path | None = None, name: str | None = None) -> ModelSpec:
    """A clip-kind spec for an OVSeg checkpoint (default path: ``REGIONLAB_OVSEG_CHECKPOINT``)."""
    p = str(path) if path is not None else os.environ.get(ENV_VAR, "")
    return ModelSpec(
        name=name or (SPEC_NAME if path is None else f"ovseg@{p}"), kind="clip",
        source=p or f"${ENV_VAR}", loader=_load, availability=_available, arch="ViT-L-14",
        description="OVSeg mask-adapted CLIP ViT-L/14 with mask prompts (user checkpoint)",
        how_to_get=f"set {ENV_VAR} to OVSeg's ovseg_swinbase_vitL14_ft_mpt.pth",
        extra={"path": p},
    )


def register_ovseg_checkpoint(path: str | Path) -> str:
    """Register a user's OVSeg checkpoint as a clip model; returns its name for ``load_clip``."""
    spec = ovseg_spec(Path(path).expanduser().resolve())
    register_model(spec, overwrite=True)
    return spec.name
