"""Generators: a CLIP image (or region) embedding -> images, through a diffusion decoder.

Every generator reads the embeddings of one specific CLIP (``LoadedGenerator.clip``):
- ``stable-unclip-h``: Stable unCLIP 2.1 (``StableUnCLIPImg2ImgPipeline``, ``image_embeds``),
  reads OpenCLIP ViT-H/14 (LAION-2B) embeddings, 768 px.
- ``stable-unclip-l``: the "small" Stable unCLIP 2.1, reads OpenAI ViT-L/14 embeddings.
- ``kandinsky-2.2``: Kandinsky 2.2's decoder (``KandinskyV22Pipeline``, ``image_embeds``),
  reads OpenCLIP ViT-bigG/14 embeddings, 512 px.
- ``shapes-generator``: a small pixel-space diffusion model trained here on ShapesWorld,
  conditioned on the bundled ``shapes-clip`` embedding, 64 px; it draws the embedded object's
  class in a canonical pose (centred, upright: ``regionlab.shapes.views.canonical_view``),
  not the region's position or rotation.

Loaded generators are read-only: each call builds its own scheduler, so concurrent calls do
not interfere. ``generate(embedding, n, seed, steps, guidance, progress)`` returns PIL images.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..config import LIMITS
from ..errors import InputError, ModelUnavailableError, ResourceError
from ..inputs import check_number
from .decoder_clip import as_embeddings
from .registry import ModelSpec, register_adhoc

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
SHAPES_GENERATOR = ASSETS / "shapes_generator.safetensors"
Progress = Callable[[int, int], None]  # progress(step done, total steps)


# ------------------------------------------------------------------ the common interface


@dataclass
class LoadedGenerator:
    """A loaded, read-only generator. ``clip``: the CLIP whose embeddings it reads;
    ``defaults``: ``steps``, ``guidance`` and ``size`` used when a call leaves them unset."""

    name: str
    clip: str
    embed_dim: int
    device: torch.device
    dtype: torch.dtype
    defaults: dict = field(default_factory=dict)

    def generate(self, embedding, n: int = 1, seed: int = 0, steps: int | None = None,
                 guidance: float | None = None, progress: Progress | None = None,
                 negative_embedding=None) -> list[Image.Image]:
        """``n`` images decoded from ONE embedding (D,) or (1, D), reproducible by ``seed``.

        ``steps``: denoising steps (1..LIMITS.max_steps); ``guidance``: classifier-free guidance
        scale (0..LIMITS.max_guidance; <= 1 disables it); ``progress(step, total)`` is called
        after each denoising step; ``negative_embedding``: the unconditional embedding where the
        decoder uses one (Kandinsky; default zeros).
        """
        who = f"generator {self.name!r}"
        emb, _ = as_embeddings(embedding, self.embed_dim, who, self.clip, max_rows=1)
        n = check_number(n, "n (number of images)", 1, LIMITS.max_images_generated, integer=True)
        seed = check_number(seed, "seed", 0, 2**63 - 1, integer=True)
        steps = check_number(self.defaults.get("steps", 20) if steps is None else steps,
                             "steps", 1, LIMITS.max_steps, integer=True)
        guidance = check_number(self.defaults.get("guidance", 1.0) if guidance is None
                                else guidance, "guidance", 0.0, LIMITS.max_guidance)
        neg = None
        if negative_embedding is not None:
            neg, _ = as_embeddings(negative_embedding, self.embed_dim, who + " (negative)",
                                   self.clip, max_rows=1)
        if progress is not None and not callable(progress):
            raise InputError("progress must be a callable progress(step, total)")
        try:
            return self._generate(emb, n, seed, steps, float(guidance), progress, neg)
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
            raise ResourceError(f"{who} ran out of memory generating {n} images "
                                f"({type(exc).__name__}); generate fewer images per call") from None

    def _generate(self, emb, n, seed, steps, guidance, progress, neg) -> list[Image.Image]:
        raise NotImplementedError


def _fresh_pipeline(pipe):
    """A shallow copy of a diffusers pipeline with its own scheduler (schedulers hold state)."""
    comps = dict(pipe.components)
    comps["scheduler"] = type(pipe.scheduler).from_config(pipe.scheduler.config)
    fresh = type(pipe)(**comps)
    fresh.set_progress_bar_config(disable=True)
    return fresh


@dataclass
class PipelineGenerator(LoadedGenerator):
    """A diffusers unCLIP-style decoder that accepts precomputed ``image_embeds``."""

    pipe: object = None
    family: str = "stable-unclip"  # or "kandinsky-2.2"

    @property
    def needs_negative(self) -> bool:
        return self.family == "kandinsky-2.2"

    def _generate(self, emb, n, seed, steps, guidance, progress, neg) -> list[Image.Image]:
        pipe = _fresh_pipeline(self.pipe)
        gen = torch.Generator("cpu").manual_seed(seed)
        emb = emb.to(self.device, self.dtype)
        size = self.defaults.get("size")
        common = dict(num_inference_steps=steps, guidance_scale=guidance, generator=gen,
                      num_images_per_prompt=n, output_type="pil")
        if size:
            common.update(height=size, width=size)
        with torch.no_grad():
            if self.family == "stable-unclip":
                cb = (lambda i, _t, _lat: progress(i + 1, steps)) if progress else None
                out = pipe(image_embeds=emb, prompt="", noise_level=0, callback=cb, **common)
            elif self.family == "kandinsky-2.2":
                neg = torch.zeros_like(emb) if neg is None else neg.to(self.device, self.dtype)

                def cb(_pipe, i, _t, kwargs):
                    if progress:
                        progress(i + 1, steps)
                    return kwargs

                out = pipe(image_embeds=emb, negative_image_embeds=neg, callback_on_step_end=cb,
                           **common)
            else:
                raise ValueError(f"unknown pipeline family {self.family!r}")
        return [im.convert("RGB") for im in out.images]


# ------------------------------------------------------------------ the ShapesWorld generator


class ShapesDiffusion(nn.Module):
    """A small conditional denoiser for 64 x 64 RGB images.

    The image is folded 2 x 2 into channels (pixel unshuffle: 3 x 64 x 64 -> 12 x 32 x 32), a
    diffusers ``UNet2DModel`` predicts the noise at 32 x 32, and the result is unfolded back.
    The unit CLIP embedding goes through an MLP to the UNet's time-embedding width and enters
    every ResNet block through the class-embedding path (scale-shift normalisation). A learned
    ``null`` embedding stands for "no condition" (classifier-free guidance).
    """

    def __init__(self, embed_dim: int = 96, image_size: int = 64, fold: int = 2,
                 channels: tuple[int, ...] = (64, 128, 128), layers_per_block: int = 1,
                 attention: bool = True):
        super().__init__()
        from diffusers import UNet2DModel

        self.config = {"embed_dim": embed_dim, "image_size": image_size, "fold": fold,
                       "channels": list(channels), "layers_per_block": layers_per_block,
                       "attention": attention}
        temb = channels[0] * 4
        down = ["DownBlock2D"] * len(channels)
        up = ["UpBlock2D"] * len(channels)
        if attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        c = 3 * fold * fold
        self.unet = UNet2DModel(
            sample_size=image_size // fold, in_channels=c, out_channels=c,
            block_out_channels=tuple(channels), layers_per_block=layers_per_block,
            down_block_types=tuple(down), up_block_types=tuple(up), class_embed_type="identity",
            resnet_time_scale_shift="scale_shift", norm_num_groups=min(32, channels[0] // 2),
            attention_head_dim=32, add_attention=attention)
        self.cond = nn.Sequential(nn.Linear(embed_dim, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.null = nn.Parameter(torch.zeros(embed_dim))
        self.fold = fold
        # a residual full-resolution refinement of the unfolded output (zero-initialised, so it
        # starts as the identity); it lets neighbouring sub-pixels agree (no 2 x 2 checkerboard)
        self.refine = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.SiLU(),
                                    nn.Conv2d(16, 3, 3, padding=1))
        nn.init.zeros_(self.refine[2].weight)
        nn.init.zeros_(self.refine[2].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor | None,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """The model output (v-prediction, see ``SCHEDULER_CONFIG``) for noisy images ``x``
        (B, 3, H, W) at timesteps ``t``; ``emb``
        (B, D) unit embeddings (None: unconditional); ``drop`` (B,) bool: rows to make
        unconditional (training)."""
        b = x.shape[0]
        cond = self.null.expand(b, -1) if emb is None else emb
        if drop is not None:
            cond = torch.where(drop[:, None], self.null.expand(b, -1), cond)
        h = F.pixel_unshuffle(x, self.fold)
        if t.ndim == 0:
            t = t.expand(b)
        out = F.pixel_shuffle(self.unet(h, t, class_labels=self.cond(cond.to(x.dtype))).sample,
                              self.fold)
        return out + self.refine(out)


# v-prediction: with the cosine schedule the last timestep has alpha_bar ~ 2e-9, where an
# epsilon-predicting model's implied clean image (x - sqrt(1 - a) eps) / sqrt(a) explodes.
SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
                    "prediction_type": "v_prediction", "clip_sample": False}


def training_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SCHEDULER_CONFIG)


def sampling_scheduler(config: dict | None = None):
    """DPM-Solver++ (2M) with the predicted clean image clipped to [-1, 1] (pixel space)."""
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler.from_config(config or SCHEDULER_CONFIG, thresholding=True,
                                                   sample_max_value=1.0)


@torch.no_grad()
def sample_shapes(model: ShapesDiffusion, emb: torch.Tensor, seed: int, steps: int,
                  guidance: float, progress: Progress | None = None,
                  scheduler_config: dict | None = None) -> torch.Tensor:
    """Images in [-1, 1], (B, 3, S, S), one per row of the unit embeddings ``emb`` (B, D)."""
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    size = model.config["image_size"]
    sched = sampling_scheduler(scheduler_config)
    sched.set_timesteps(steps, device=dev)
    gen = torch.Generator("cpu").manual_seed(seed)
    x = torch.randn(emb.shape[0], 3, size, size, generator=gen).to(dev, dtype)
    x = x * sched.init_noise_sigma
    emb = emb.to(dev, dtype)
    guided = guidance > 1.0
    for i, t in enumerate(sched.timesteps):
        xin = sched.scale_model_input(x, t)
        if guided:
            both = model(torch.cat([xin, xin]), t, torch.cat([model.null.expand_as(emb), emb]))
            uncond, cond = both.chunk(2)
            eps = uncond + guidance * (cond - uncond)
        else:
            eps = model(xin, t, emb)
        x = sched.step(eps, t, x).prev_sample
        if progress:
            progress(i + 1, steps)
    return x.clamp(-1, 1)


def to_pil(x: torch.Tensor) -> list[Image.Image]:
    arr = ((x.float().cpu().permute(0, 2, 3, 1).numpy() + 1) * 127.5).round()
    return [Image.fromarray(a) for a in np.clip(arr, 0, 255).astype(np.uint8)]


@dataclass
class ShapesGenerator(LoadedGenerator):
    model: ShapesDiffusion = None
    scheduler_config: dict = field(default_factory=lambda: dict(SCHEDULER_CONFIG))

    def _generate(self, emb, n, seed, steps, guidance, progress, neg) -> list[Image.Image]:
        unit = F.normalize(emb, dim=-1).expand(n, -1)
        x = sample_shapes(self.model, unit, seed, steps, guidance, progress,
                          self.scheduler_config)
        return to_pil(x)


def save_shapes_generator(model: ShapesDiffusion, path: Path, clip: str,
                          metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", "regionlab_generator": json.dumps(
        {"model": model.config, "scheduler": SCHEDULER_CONFIG, "clip": clip})}
    meta.update({k: json.dumps(v) for k, v in (metadata or {}).items()})
    save_file(state, str(path), metadata=meta)


def read_shapes_generator(path: Path) -> tuple[ShapesDiffusion, dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
    if "regionlab_generator" not in meta:
        raise ModelUnavailableError(f"{path} is not a RegionLab generator (no config metadata)")
    config = json.loads(meta["regionlab_generator"])
    mc = dict(config["model"])
    mc["channels"] = tuple(mc["channels"])
    model = ShapesDiffusion(**mc)
    model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return model, config


# ------------------------------------------------------------------ specs and loaders

# name -> (pipeline family, hub repo, CLIP it reads, embedding dim, defaults)
PIPELINES = {
    "stable-unclip-h": ("stable-unclip", "stabilityai/stable-diffusion-2-1-unclip",
                        "ViT-H-14@laion2b_s32b_b79k", 1024,
                        {"steps": 20, "guidance": 10.0}),
    "stable-unclip-l": ("stable-unclip", "stabilityai/stable-diffusion-2-1-unclip-small",
                        "ViT-L-14@openai", 768, {"steps": 20, "guidance": 10.0}),
    "kandinsky-2.2": ("kandinsky-2.2", "kandinsky-community/kandinsky-2-2-decoder",
                      "ViT-bigG-14@laion2b_s39b_b160k", 1280,
                      {"steps": 50, "guidance": 4.0, "size": 512}),
}
_PIPELINE_CLASSES = {"stable-unclip": "StableUnCLIPImg2ImgPipeline",
                     "kandinsky-2.2": "KandinskyV22Pipeline"}


def _is_dir(source: str) -> bool:
    return Path(source).expanduser().is_dir()


def _pipeline_available(spec: ModelSpec) -> tuple[bool, str]:
    source = spec.source
    if _is_dir(source):
        ok = (Path(source).expanduser() / "model_index.json").is_file()
        if not ok:
            return False, f"no model_index.json in {source}"
        return True, f"local folder {source}"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False, "huggingface_hub is not installed"
    hit = try_to_load_from_cache(source, "model_index.json")
    if isinstance(hit, str):
        return True, f"in the Hugging Face cache ({source})"
    return False, f"not in the Hugging Face cache; download with `hf download {source}`"


def _load_pipeline(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> PipelineGenerator:
    import diffusers

    family = spec.extra["family"]
    cls = getattr(diffusers, _PIPELINE_CLASSES[family])
    source = str(Path(spec.source).expanduser()) if _is_dir(spec.source) else spec.source
    try:
        with warnings.catch_warnings():  # newer diffusers renamed torch_dtype to dtype
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = cls.from_pretrained(source, torch_dtype=dtype, local_files_only=True)
    except Exception as exc:
        raise ModelUnavailableError(
            f"cannot load generator {spec.name!r} from {spec.source}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}. {spec.how_to_get}") from None
    return pipeline_generator(spec.name, pipe, family, spec.extra["clip"], spec.extra["embed_dim"],
                              device, dtype, spec.extra["defaults"])


def pipeline_generator(name: str, pipe, family: str, clip: str, embed_dim: int,
                       device, dtype, defaults: dict | None = None) -> PipelineGenerator:
    """Wrap an already built diffusers pipeline (also used by tests with tiny components).
    The pipeline keeps the dtype it was loaded in (``from_pretrained(torch_dtype=...)``)."""
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    dtype = getattr(pipe.unet, "dtype", dtype)
    return PipelineGenerator(name, clip, embed_dim, torch.device(device), dtype,
                             dict(defaults or {}), pipe=pipe, family=family)


def pipeline_spec(name: str, source: str | None = None) -> ModelSpec:
    family, repo, clip, dim, defaults = PIPELINES[name]
    source = source or repo
    return ModelSpec(
        name=name, kind="generator", source=source, loader=_load_pipeline,
        availability=_pipeline_available, arch=_PIPELINE_CLASSES[family],
        description=f"{_PIPELINE_CLASSES[family]} ({repo}); reads {clip} embeddings",
        how_to_get=(f"Download it while online with `hf download {repo}`, or pass a local "
                    f"folder: --generator {name}@/path/to/folder."),
        extra={"family": family, "clip": clip, "embed_dim": dim, "defaults": defaults},
    )


def _shapes_available(spec: ModelSpec) -> tuple[bool, str]:
    path = Path(spec.extra["path"])
    return (True, f"bundled file {path.name}") if path.is_file() else (
        False, f"bundled weights missing: {path}")


def _load_shapes(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> ShapesGenerator:
    path = Path(spec.extra["path"])
    if not path.is_file():
        raise ModelUnavailableError(f"generator {spec.name!r}: weights not found at {path}. "
                                    f"{spec.how_to_get}")
    model, config = read_shapes_generator(path)
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return ShapesGenerator(spec.name, config["clip"], model.config["embed_dim"], device, dtype,
                           {"steps": 20, "guidance": 2.0, "size": model.config["image_size"]},
                           model=model, scheduler_config=config["scheduler"])


def shapes_generator_spec(name: str = "shapes-generator") -> ModelSpec:
    path = Path(os.environ.get("REGIONLAB_SHAPES_GENERATOR", SHAPES_GENERATOR))
    return ModelSpec(
        name=name, kind="generator", source=f"bundled:{path}", loader=_load_shapes,
        availability=_shapes_available, arch="ShapesDiffusion-64",
        description="ShapesWorld 64 px diffusion decoder trained here; reads shapes-clip",
        how_to_get="Retrain with `python -m regionlab.training.train_generator`.",
        extra={"path": str(path), "clip": "shapes-clip", "embed_dim": 96},
    )


def adhoc_generator(arch: str, source: str) -> ModelSpec:
    """``stable-unclip-h@/folder``, ``kandinsky-2.2@/folder`` or ``shapes@/file.safetensors``."""
    if arch in PIPELINES:
        spec = pipeline_spec(arch, source)
        return ModelSpec(**{**spec.__dict__, "name": f"{arch}@{source}"})
    if arch == "shapes":
        spec = shapes_generator_spec(f"shapes@{source}")
        return ModelSpec(**{**spec.__dict__, "source": source,
                            "extra": {**spec.extra, "path": source}})
    raise ModelUnavailableError(
        f"unknown generator architecture {arch!r}; expected one of "
        f"{', '.join([*PIPELINES, 'shapes'])} (as ARCH@/path)")


def builtin_generator_specs() -> list[ModelSpec]:
    return [shapes_generator_spec(), *(pipeline_spec(n) for n in PIPELINES)]


register_adhoc("generator", adhoc_generator)
