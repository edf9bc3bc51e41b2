"""CLIP models: the bundled ShapesWorld CLIP and open_clip models (tags, hf-hub ids, paths)."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
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
    #: groups of interchangeable words the model was trained to tell apart (the bundled
    #: CLIP's colours and shapes), used by grounding's contrastive membership; () = none
    word_groups: tuple = ()

    @property
    def visual(self) -> torch.nn.Module:
        return self.model.visual

    def unknown_words(self, texts: str | list[str]) -> list[str]:
        """Words this model's tokenizer cannot represent (the bundled CLIP's word-level
        vocabulary; open_clip's BPE tokenizers spell every word: none)."""
        fn = getattr(self.tokenizer, "unknown_words", None)
        return fn(texts) if fn is not None else []

    @property
    def is_vit(self) -> bool:
        """A ViT image tower (tokens, attention), as LeGrad and MaskInversion need; ResNet
        CLIPs (RN50, RN50x16, ...) only give global embeddings."""
        return hasattr(self.model.visual, "transformer")

    @property
    def patch_size(self) -> int:
        if not self.is_vit:
            from ..errors import ModelUnavailableError

            raise ModelUnavailableError(
                f"{self.name} has a ResNet image tower: LeGrad and MaskInversion need a ViT "
                f"CLIP (e.g. ViT-B-16@openai). ResNet CLIPs work for grounding (IPS), "
                f"labelling, classification and the crop/blur region methods.")
        ks = self.model.visual.conv1.kernel_size
        return ks if isinstance(ks, int) else ks[0]

    @property
    def logit_scale(self) -> float:
        """The model's own learnt ``exp(logit_scale)`` (100 when it has none)."""
        ls = getattr(self.model, "logit_scale", None)
        return float(ls.detach().exp()) if torch.is_tensor(ls) else 100.0

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

        outs = []
        for i in range(0, len(images), batch):
            outs.append(self.encode_tensor(self.to_tensor(images[i : i + batch], size)))
        return torch.cat(outs).float()

    @torch.no_grad()
    def encode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Global embeddings of normalised images (B, 3, S, S): the ViT token path (any S
        that the patch size divides), or the model's own forward for a ResNet tower."""
        from ..explain.vit import embed_tokens, encode_image_tokens, run_blocks

        if not self.is_vit:
            return self.model.encode_image(x).float()
        tokens = run_blocks(self.visual, embed_tokens(self.visual, x),
                            self.visual.transformer.resblocks)
        return encode_image_tokens(self.visual, tokens).float()

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
    # grounding: automatic candidates whose masked crop's best class cosine is below this are
    # left out (benchmarks/results/grounding_objectness/rule.md; val OpenCV 65.2 -> 90.4%)
    "object_min_cos": 0.42,
    # labelling: automatic proposals whose masked crop reads below this are left out
    # (benchmarks/results/grounding_objectness/labelling_rule.md; val mIoU ours 0.785 -> 0.932,
    # OpenCV 0.317 -> 0.406)
    "label_object_min_cos": 0.46,
    # grounding: kept automatic candidates lying at least this share inside a larger kept one
    # are left out as fragments (benchmarks/results/grounding_objectness/fragment_rule.md; val
    # OpenCV 90.4 -> 96.5%)
    "fragment_min_inside": 0.95,
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

    from ..shapes.model import ARCH_NAME, build_model, tokenizer
    from ..shapes.vocab import COLOUR_NAMES, SHAPES

    path = Path(spec.extra["path"])
    if not path.is_file():
        raise ModelUnavailableError(
            f"model {spec.name!r}: bundled weights not found at {path}. Reinstall RegionLab from a "
            f"full checkout (the file ships in assets/), or retrain with "
            f"`python -m regionlab.training.train_clip`."
        )
    with weights_loaded_after(ARCH_NAME):  # the trained weights are loaded just below
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
        (tuple(COLOUR_NAMES), tuple(SHAPES)),
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


WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _hf_cached(repo: str, filename: str | None = None) -> str | None:
    """The cached weights file of hub repo ``repo`` (``filename``, or open_clip's default names),
    or None. Reads the local cache only."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    names = [filename] if filename else []
    for fname in (*names, *WEIGHT_FILES):
        hit = try_to_load_from_cache(repo, fname)
        if isinstance(hit, str):
            return hit
    return None


def _hub_file(arch: str, source: str) -> tuple[str, str | None] | None:
    """(hub repo, weights file name or None for open_clip's default) of a tag or ``hf-hub:``
    source; None when open_clip knows no hub location for it."""
    if source.startswith("hf-hub:"):
        return source[len("hf-hub:") :], None
    import open_clip

    hub = open_clip.get_pretrained_cfg(arch, source).get("hf_hub", "")
    if not hub:
        return None
    repo, filename = os.path.split(hub)  # open_clip's convention: 'org/repo/' or 'org/repo/file'
    return repo, (filename or None)


def _hub_repo(arch: str, source: str) -> str | None:
    found = _hub_file(arch, source)
    return found[0] if found else None


def _is_local(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).suffix in (
        ".pt",
        ".bin",
        ".safetensors",
    )


def _cached_weights(arch: str, source: str) -> tuple[str, str | None]:
    """(what to pass open_clip so that it reads only local files, or "" when the weights are
    not in the cache; the hub repo). For ``hf-hub:`` sources the cached snapshot folder must
    hold the config and the weights (``local-dir:`` scheme)."""
    found = _hub_file(arch, source)
    if found is None:
        return "", None
    repo, filename = found
    weights = _hf_cached(repo, filename)
    if not weights:
        return "", repo
    if not source.startswith("hf-hub:"):
        return weights, repo
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return "", repo
    config = try_to_load_from_cache(repo, "open_clip_config.json")
    if isinstance(config, str) and Path(config).parent == Path(weights).parent:
        return f"local-dir:{Path(weights).parent}", repo
    return "", repo


def _open_clip_available(spec: ModelSpec) -> tuple[bool, str]:
    arch, source = spec.arch, spec.extra["source"]
    if _is_local(source):
        p = Path(source).expanduser()
        return (True, f"local file {p}") if p.is_file() else (False, f"file not found: {p}")
    repo = _hub_repo(arch, source)
    if repo is None:
        return False, f"open_clip knows no pretrained tag {source!r} for {arch}"
    local, _ = _cached_weights(arch, source)
    if local:
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


class _DropRandomInitWarning(logging.Filter):
    """Drops exactly open_clip's "No pretrained weights loaded for model 'ARCH'. Model
    initialized randomly." record for one architecture."""

    def __init__(self, arch: str):
        super().__init__()
        self.prefix = f"No pretrained weights loaded for model '{arch}'."

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith(self.prefix) and msg.endswith("Model initialized randomly."))


@contextmanager
def weights_loaded_after(arch: str):
    """Build an open_clip model whose weights are loaded right after (bundled or a local file):
    open_clip's false "initialized randomly" warning for ``arch`` is dropped, nothing else."""
    flt = _DropRandomInitWarning(arch)
    root = logging.getLogger()  # open_clip logs through the root logger (logging.warning)
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def _tag_kwargs(arch: str, source: str) -> dict:
    """What the pretrained tag says about the model beyond its weights (QuickGELU for the OpenAI
    weights, normalisation), for building from a file that open_clip does not know as the tag."""
    import open_clip

    if source.startswith("hf-hub:"):
        return {}
    cfg = open_clip.get_pretrained_cfg(arch, source)
    pre = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if cfg.get(k)}
    return {"force_quick_gelu": bool(cfg.get("quick_gelu")), "force_preprocess_cfg": pre}


def _create(spec: ModelSpec):
    """(open_clip model, tokenizer) for ``spec``, reading local files when they are there and
    asking the hub only after it answered a short probe (see ``models/hub.py``)."""
    import open_clip

    from .hub import hub_status

    arch, source = spec.arch, spec.extra["source"]
    if _is_local(source):
        local = Path(source).expanduser()
        if not local.is_file():
            raise FileNotFoundError(f"no such file: {local}")
        with weights_loaded_after(arch):
            model = open_clip.create_model(arch, pretrained=None)
        model.load_state_dict(_load_state_dict_safely(local))
        return model, open_clip.get_tokenizer(arch)
    if not source.startswith("hf-hub:") and not open_clip.get_pretrained_cfg(arch, source):
        raise ModelUnavailableError(
            f"cannot load CLIP model {spec.name!r}: open_clip knows no pretrained tag {source!r} "
            f"for {arch} (see open_clip.list_pretrained()). {_how_to(spec)}"
        )
    cached, repo = _cached_weights(arch, source)
    if cached.startswith("local-dir:"):  # an hf-hub repo, config and weights in the cache
        return open_clip.create_model(cached), open_clip.get_tokenizer(cached)
    if cached:  # a tag whose weights file is in the cache: no hub request at all
        model = open_clip.create_model(arch, pretrained=cached, **_tag_kwargs(arch, source))
        return model, open_clip.get_tokenizer(arch)
    ok, why = hub_status()
    if not ok:
        where = f"not in the Hugging Face cache ({repo})" if repo else "not cached locally"
        raise ModelUnavailableError(
            f"cannot load CLIP model {spec.name!r} (architecture {arch}, source {source}): "
            f"{where} and {why}; nothing was downloaded. {_how_to(spec)}"
        )
    if source.startswith("hf-hub:"):
        return open_clip.create_model(source), open_clip.get_tokenizer(source)
    kw = _tag_kwargs(arch, source)
    kw.pop("force_preprocess_cfg")  # open_clip applies the tag's own
    return open_clip.create_model(arch, pretrained=source, **kw), open_clip.get_tokenizer(arch)


def _load_open_clip(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedCLIP:
    arch, source = spec.arch, spec.extra["source"]
    try:
        model, tok = _create(spec)
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
