"""CLIP models: the bundled ShapesWorld CLIP and open_clip models (tags, hf-hub ids, paths)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ModelUnavailableError
from .registry import ModelSpec, register_adhoc

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class LoadedCLIP:
    """A loaded, read-only CLIP with its tokenizer and input convention.

    ``image_size`` is the model's native square input; ``mean``/``std`` its normalisation.
    """

    name: str
    model: torch.nn.Module
    tokenizer: object
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: torch.device
    dtype: torch.dtype
    defaults: dict  # per-model tuned defaults (MaskInversion lr/iterations/alpha/resolution ...)

    @property
    def visual(self) -> torch.nn.Module:
        return self.model.visual

    @property
    def patch_size(self) -> int:
        ks = self.model.visual.conv1.kernel_size
        return ks if isinstance(ks, int) else ks[0]

    @property
    def embed_dim(self) -> int:
        return int(self.model.visual.output_dim)

    def to_tensor(self, images, size: int | None = None) -> torch.Tensor:
        """RGB uint8 arrays/PIL images -> normalised (B, 3, S, S), stretched bicubically."""
        s = size or self.image_size
        arrs = []
        for im in images:
            pil = im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im))
            if pil.size != (s, s):
                pil = pil.resize((s, s), Image.Resampling.BICUBIC)
            arrs.append(np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0)
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device, self.dtype)

    @torch.no_grad()
    def encode_images(self, images, size: int | None = None, batch: int = 64) -> torch.Tensor:
        """Global (unnormalised) embeddings of RGB images, (B, D)."""
        from ..explain.vit import embed_tokens, encode_image_tokens, run_blocks

        outs = []
        for i in range(0, len(images), batch):
            x = self.to_tensor(images[i : i + batch], size)
            tokens = run_blocks(
                self.visual, embed_tokens(self.visual, x), self.visual.transformer.resblocks
            )
            outs.append(encode_image_tokens(self.visual, tokens))
        return torch.cat(outs).float()

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch: int = 256) -> torch.Tensor:
        """Unit text embeddings, (T, D)."""
        outs = []
        for i in range(0, len(texts), batch):
            tok = self.tokenizer(texts[i : i + batch]).to(self.device)
            outs.append(F.normalize(self.model.encode_text(tok).float(), dim=-1))
        return torch.cat(outs)


# ---------------------------------------------------------------- bundled ShapesWorld CLIP

SHAPES_DEFAULTS = {
    # tuned on ShapesWorld VALIDATION scenes (benchmarks/results/shapes_mi_tuning.json)
    "mi_lr": 0.3,
    "mi_iterations": 10,
    "mi_alpha": 0.0,
    "mi_resolution": 64,
    "legrad_resolution": 64,
}
REAL_DEFAULTS = {
    # the MaskInversion paper's settings
    "mi_lr": 0.5,
    "mi_iterations": 10,
    "mi_alpha": 0.0,
    "mi_resolution": 448,
    "legrad_resolution": 448,
}


def _shapes_available(spec: ModelSpec) -> tuple[bool, str]:
    path = Path(spec.extra["path"])
    return (
        (True, f"bundled file {path.name}")
        if path.is_file()
        else (False, f"bundled weights missing: {path}")
    )


def _load_shapes(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedCLIP:
    from safetensors.torch import load_file

    from ..shapes.model import build_model, tokenizer

    path = Path(spec.extra["path"])
    if not path.is_file():
        raise ModelUnavailableError(
            f"model {spec.name!r}: bundled weights not found at {path}. Reinstall RegionLab from a "
            f"full checkout (the file ships in assets/), or retrain with "
            f"`python -m regionlab.shapes.train_clip`."
        )
    model = build_model()
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    size = model.visual.image_size[0]
    return LoadedCLIP(
        spec.name,
        model,
        tokenizer(),
        size,
        OPENAI_MEAN,
        OPENAI_STD,
        device,
        dtype,
        dict(SHAPES_DEFAULTS),
    )


def shapes_spec(name: str = "shapes-clip") -> ModelSpec:
    from ..shapes.model import WEIGHTS

    path = Path(os.environ.get("REGIONLAB_SHAPES_CLIP", WEIGHTS))
    return ModelSpec(
        name=name,
        kind="clip",
        source=f"bundled:{path}",
        loader=_load_shapes,
        availability=_shapes_available,
        arch="ShapesCLIP-ViT-T-8",
        description="ShapesWorld CLIP trained here (64 px, ViT patch 8); offline default",
        extra={"path": str(path)},
    )


# ---------------------------------------------------------------- open_clip models


def _hf_cached(repo: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        hit = try_to_load_from_cache(repo, fname)
        if isinstance(hit, str):
            return hit
    return None


def _hub_repo(arch: str, source: str) -> str | None:
    if source.startswith("hf-hub:"):
        return source[len("hf-hub:") :]
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, source)
    hub = cfg.get("hf_hub", "")
    return hub.rstrip("/") or None


def _open_clip_available(spec: ModelSpec) -> tuple[bool, str]:
    arch, source = spec.arch, spec.extra["source"]
    if source.startswith(("/", "./", "~")) or Path(source).suffix in (
        ".pt",
        ".bin",
        ".safetensors",
    ):
        p = Path(source).expanduser()
        return (True, f"local file {p}") if p.is_file() else (False, f"file not found: {p}")
    repo = _hub_repo(arch, source)
    if repo is None:
        return False, f"open_clip knows no pretrained tag {source!r} for {arch}"
    hit = _hf_cached(repo)
    if hit:
        return True, f"in the Hugging Face cache ({repo})"
    return False, f"not in the Hugging Face cache; download with `hf download {repo}`"


def _how_to(spec: ModelSpec) -> str:
    repo = None
    try:
        repo = _hub_repo(spec.arch, spec.extra["source"])
    except Exception:
        pass
    dl = (
        f"`hf download {repo}` (or `huggingface-cli download {repo}`) while online, "
        if repo
        else ""
    )
    return (
        f"To provide it: {dl}or point RegionLab at a local checkpoint with "
        f"--clip {spec.arch}@/path/to/weights.pt (or REGIONLAB_CLIP=...)."
    )


def _load_state_dict_safely(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _load_open_clip(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedCLIP:
    import open_clip

    arch, source = spec.arch, spec.extra["source"]
    try:
        local = Path(source).expanduser()
        if source.startswith("hf-hub:"):
            model, _, pre = open_clip.create_model_and_transforms(source)
            tok = open_clip.get_tokenizer(source)
        elif local.suffix in (".pt", ".bin", ".safetensors") or source.startswith(("/", ".", "~")):
            if not local.is_file():
                raise FileNotFoundError(f"no such file: {local}")
            model, _, pre = open_clip.create_model_and_transforms(arch, pretrained=None)
            model.load_state_dict(_load_state_dict_safely(local))
            tok = open_clip.get_tokenizer(arch)
        else:
            model, _, pre = open_clip.create_model_and_transforms(arch, pretrained=source)
            tok = open_clip.get_tokenizer(arch)
    except ModelUnavailableError:
        raise
    except Exception as exc:  # network errors, missing files, bad checkpoints
        raise ModelUnavailableError(
            f"cannot load CLIP model {spec.name!r} (architecture {arch}, source {source}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. {_how_to(spec)}"
        ) from None
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    mean = tuple(getattr(model.visual, "image_mean", None) or OPENAI_MEAN)
    std = tuple(getattr(model.visual, "image_std", None) or OPENAI_STD)
    return LoadedCLIP(spec.name, model, tok, size, mean, std, device, dtype, dict(REAL_DEFAULTS))


def open_clip_spec(arch: str, source: str, description: str = "") -> ModelSpec:
    import open_clip

    if arch not in open_clip.list_models() and not source.startswith("hf-hub:"):
        raise ModelUnavailableError(
            f"unknown open_clip architecture {arch!r} (see open_clip.list_models())"
        )
    return ModelSpec(
        name=f"{arch}@{source}",
        kind="clip",
        source=source,
        loader=_load_open_clip,
        availability=_open_clip_available,
        arch=arch,
        description=description or f"open_clip {arch} with weights {source}",
        extra={"source": source},
    )


register_adhoc("clip", open_clip_spec)

REAL_CLIPS = [
    ("ViT-B-32", "openai"),
    ("ViT-B-32", "laion2b_s34b_b79k"),
    ("ViT-B-16", "openai"),
    ("ViT-B-16", "laion2b_s34b_b88k"),
    ("ViT-L-14", "openai"),
    ("ViT-L-14", "laion2b_s32b_b82k"),
    ("ViT-H-14", "laion2b_s32b_b79k"),
]
