"""Region-conditioned image generation: region embedding -> images, per mask.

The region embedding (MaskInversion or a baseline) replaces the image embedding that an
unCLIP-style decoder normally receives. The decoder dictates the CLIP: by default the region
embedding is computed with the decoder's own CLIP; another CLIP is refused with a message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import LIMITS
from ..errors import InputError
from ..inputs import check_number, load_image, load_masks

DEFAULT_GENERATOR = "shapes-generator"
MAX_IMAGES_PER_CALL = 4 * LIMITS.max_images_generated  # over all regions of one call


@dataclass(frozen=True)
class GenerateOptions:
    """``n`` images per region, reproducible by ``seed``; ``steps``/``guidance``: None = the
    generator's defaults."""

    n: int = 1
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None

    def checked(self) -> GenerateOptions:
        return GenerateOptions(
            n=check_number(self.n, "n (number of images)", 1, LIMITS.max_images_generated,
                           integer=True),
            seed=check_number(self.seed, "seed", 0, 2**63 - 1, integer=True),
            steps=None if self.steps is None else check_number(
                self.steps, "steps", 1, LIMITS.max_steps, integer=True),
            guidance=None if self.guidance is None else check_number(
                self.guidance, "guidance", 0.0, LIMITS.max_guidance),
        )


@dataclass
class GenerateResult:
    """``images[p][k]``: the k-th RGB uint8 image (H, W, 3) generated for mask p;
    ``seen[p][k]``: the class ``clip`` sees in it, ``{"label", "score"}`` (see
    :func:`seen_classes`), when a vocabulary was given (else None)."""

    images: list[list[np.ndarray]]
    method: str
    generator: str
    clip: str
    options: dict
    seconds: float
    files: list[list[str]] = field(default_factory=list)
    seen: list[list[dict]] | None = None
    vocab: str | list[str] | None = None  # as given: a built-in name or the class names

    def save(self, out_dir: str | Path, prefix: str = "region") -> list[list[str]]:
        """Write ``OUT_DIR/{prefix}{p}_{k}.png``; returns (and remembers) the paths."""
        from PIL import Image

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.files = []
        for p, imgs in enumerate(self.images):
            row = []
            for k, im in enumerate(imgs):
                path = out / f"{prefix}{p}_{k}.png"
                Image.fromarray(im).save(path)
                row.append(str(path))
            self.files.append(row)
        return self.files

    def to_json(self) -> dict:
        """Everything but the pixels (sizes and saved files instead)."""
        d = {k: v for k, v in asdict(self).items() if k != "images"}
        d["sizes"] = [[list(im.shape[:2]) for im in row] for row in self.images]
        return d


def load_generator(name: str | None = None, device=None):
    """A loaded generator by name (default: ``REGIONLAB_GENERATOR`` or the bundled one)."""
    from ..models import load

    return load(name or os.environ.get("REGIONLAB_GENERATOR") or DEFAULT_GENERATOR,
                "generator", device)


@torch.no_grad()
def zero_image_embedding(clip) -> torch.Tensor:
    """The CLIP embedding of an all-zero (normalised) image: Kandinsky's unconditional input."""
    x = torch.zeros(1, 3, clip.image_size, clip.image_size, device=clip.device, dtype=clip.dtype)
    return clip.model.encode_image(x).float().cpu()


def generate_from_embedding(embedding, generator=None, options: GenerateOptions | None = None,
                            progress: Callable[[int, int], None] | None = None,
                            negative_embedding=None) -> list[np.ndarray]:
    """``options.n`` RGB uint8 images from one embedding of the generator's CLIP."""
    gen = generator if hasattr(generator, "generate") else load_generator(generator)
    o = (options or GenerateOptions()).checked()
    images = gen.generate(embedding, n=o.n, seed=o.seed, steps=o.steps, guidance=o.guidance,
                          progress=progress, negative_embedding=negative_embedding)
    return [np.asarray(im.convert("RGB")) for im in images]


def seen_classes(clip, images, vocab="shapes", templates: str = "single") -> list[dict]:
    """The class ``clip`` sees in each image: its zero-shot top-1 among ``vocab`` (a built-in
    vocabulary name or a list of class names), ``{"label", "score"}`` per image, the score being
    the softmax probability over the vocabulary at CLIP's logit scale (100), as in class
    retrieval (:func:`regionlab.tasks.retrieval.classify_images`); None where no class of
    ``vocab`` is one the model can represent. No images, no forward."""
    from .retrieval import classify_images

    images = [np.asarray(im) for im in images]
    if not images:
        return []
    tops = classify_images(images, vocab, clip=clip, templates=templates, top_k=1)
    return [top[0] if top else None for top in tops]


def generate_regions(image, masks, *, generator=None, method: str = "maskinversion", clip=None,
                     options: GenerateOptions | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     region_options: dict | None = None, vocab=None,
                     templates: str = "single") -> GenerateResult:
    """Generate ``options.n`` images for each masked region of ``image``.

    ``progress(step, total)`` counts denoising steps over all masks. See
    :func:`regionlab.tasks.caption.caption_regions` for ``method``, ``clip`` and
    ``region_options``. With a ``vocab``, ``result.seen`` holds the class the generator's
    CLIP (the one that made the region embeddings) sees in each image (:func:`seen_classes`).
    """
    from ..models.decoder_clip import resolve_decoder_clip
    from ..region.baselines import region_embeddings

    t0 = time.perf_counter()
    o = (options or GenerateOptions()).checked()
    gen = generator if hasattr(generator, "generate") else load_generator(generator)
    img = load_image(image)
    mk = load_masks(masks, img.shape[:2])
    if len(mk) * o.n > MAX_IMAGES_PER_CALL:
        raise InputError(
            f"{len(mk)} regions x {o.n} images = {len(mk) * o.n} images; the limit is "
            f"{MAX_IMAGES_PER_CALL} per call (give fewer regions or a smaller n)")
    if vocab is not None:  # a bad vocabulary is refused before any model work
        from .templates import get_templates
        from .vocabularies import resolve_vocab

        classes = resolve_vocab(vocab)
        get_templates(templates)
    model = resolve_decoder_clip("generator", gen.name, gen.clip, clip)
    emb = region_embeddings(model, img, mk, method, **(region_options or {}))
    emb = emb.detach().float().cpu()
    negative = zero_image_embedding(model) if getattr(gen, "needs_negative", False) else None
    steps = o.steps or gen.defaults.get("steps", 20)
    total = steps * len(mk)
    images = []
    for p in range(len(mk)):
        cb = None
        if progress is not None:
            def cb(i, _n, p=p):
                progress(p * steps + i, total)
        images.append(generate_from_embedding(emb[p], gen, o, cb, negative))
    seen = None
    if vocab is not None:
        flat = seen_classes(model, [im for row in images for im in row], classes, templates)
        seen, i = [], 0
        for row in images:
            seen.append(flat[i:i + len(row)])
            i += len(row)
    return GenerateResult(images, method, gen.name, model.name, asdict(o),
                          round(time.perf_counter() - t0, 4), seen=seen, vocab=vocab)

