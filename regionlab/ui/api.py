"""Named API endpoints: segment, propose, invert, retrieve, compare, ground, label, caption,
generate.

Stateless: every call brings its image and masks (PNG files) and gets files back (masks and
heatmaps as PNG, embeddings as .npy) plus a JSON summary. They run the same plain functions as
the interactive UI, on the same concurrency group. Call them with ``gradio_client``::

    from gradio_client import Client, handle_file
    c = Client("http://127.0.0.1:7860/")
    masks, info = c.predict(handle_file("scene.png"), [[120, 64, 1]], None, True,
                            api_name="/segment")
"""

from __future__ import annotations

import json

import gradio as gr
import numpy as np

from ..config import LIMITS
from ..errors import InputError
from ..inputs import load_image, load_masks
from . import service
from .adapters import safe_vocab, ui_errors
from .components import raw_image
from .draw import heatmap
from .files import Scratch, image_to_png_bytes, mask_to_png_bytes, npy_bytes
from .handlers import grounding_view, labelling_view, seen_caption
from .options import AppOptions


def _image(image) -> np.ndarray:
    if image is None:
        raise InputError("no image given")
    return load_image(image)


def _masks(files, image: np.ndarray, required: bool = True) -> np.ndarray | None:
    files = [f for f in (files or []) if f]
    if not files:
        if required:
            raise InputError("no masks given: send at least one PNG mask")
        return None
    return load_masks(files, image.shape[:2])


def _json_list(value, what: str):
    """A list given as JSON text or already decoded by gradio."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InputError(f"{what} is not valid JSON: {exc.msg}") from None
    if not isinstance(value, list):
        raise InputError(f"{what} must be a JSON list, got {type(value).__name__}")
    return value


class Api:
    """Endpoint functions bound to the app's options and scratch folder."""

    def __init__(self, options: AppOptions, scratch: Scratch):
        self.options = options
        self.scratch = scratch

    def _write_masks(self, masks, stem: str = "mask") -> list[str]:
        folder = self.scratch.folder()
        return [self.scratch.write(f"{stem}_{i:02d}.png", mask_to_png_bytes(m), folder)
                for i, m in enumerate(masks)]

    def segment(self, image, points, box, multimask: bool):
        """Masks (PNG, best first) for clicks ``[[x, y, label], ...]`` (label 1 include, 0
        exclude) and/or a box ``[x0, y0, x1, y1]``, in the image's pixels."""
        img = _image(image)
        out = service.segment(img, sam=self.options.sam, points=_json_list(points, "points"),
                              box=_json_list(box, "box"), multimask=bool(multimask))
        info = {"scores": out.scores, "backend": out.backend, "seconds": round(out.seconds, 4),
                "areas": [int(m.sum()) for m in out.masks]}
        return self._write_masks(out.masks), info

    def propose(self, image, max_regions):
        """Class-agnostic region proposals (PNG masks, best first) with boxes and scores."""
        img = _image(image)
        props = service.propose(img, max_regions=max_regions).regions
        info = {"boxes": [list(p["box"]) for p in props],
                "scores": [p["score"] for p in props]}
        return self._write_masks([p["mask"] for p in props], "proposal"), info

    def invert(self, image, masks, iterations, lr, alpha, resolution, engine,
               progress=gr.Progress()):
        """MaskInversion: region embeddings (.npy, P x D), final heatmaps (PNG) and a summary
        (losses, engine, settings, timings). Blank settings use the model's defaults."""
        img = _image(image)
        mk = _masks(masks, img)

        def report(frac, what):
            progress(frac, desc=what)

        out = service.invert(img, mk, clip=self.options.clip, device=self.options.device,
                             iterations=iterations, lr=lr, alpha=alpha, resolution=resolution,
                             engine=engine or "auto", progress=report)
        folder = self.scratch.folder()
        emb = self.scratch.write("embeddings.npy", npy_bytes(out.embeddings), folder)
        maps = [self.scratch.write(f"heatmap_{i:02d}.png", image_to_png_bytes(heatmap(m, img)),
                                   folder) for i, m in enumerate(out.maps)]
        info = {"shape": list(out.embeddings.shape), "losses": out.losses, "engine": out.engine,
                "settings": out.settings, "timings": out.timings, "clip": self.options.clip}
        return emb, maps, info

    def retrieve(self, embeddings, vocab, templates, top_k):
        """Top-k classes of ``vocab`` (shapes, voc, coco or 'a, b, c') per embedding row of an
        .npy file."""
        if not embeddings:
            raise InputError("no embeddings file given (.npy, P x D)")
        with open(embeddings, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                raise InputError("the embeddings file is not a .npy array (NumPy format, as "
                                 "written by numpy.save or returned by /invert)")
        try:
            emb = np.load(embeddings, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read the embeddings file as .npy: {exc}") from None
        if emb.ndim not in (1, 2) or emb.size == 0:
            raise InputError(f"embeddings must be a (P, D) array, got shape {emb.shape}")
        if emb.ndim == 2 and emb.shape[0] > LIMITS.max_masks:
            raise InputError(f"{emb.shape[0]} embeddings given; the limit is "
                             f"{LIMITS.max_masks} per call")
        if not np.issubdtype(emb.dtype, np.number) or np.iscomplexobj(emb):
            raise InputError(f"embeddings must be real numbers, got dtype {emb.dtype}")
        vocab = safe_vocab(vocab)
        top = service.retrieve(emb, vocab, clip=self.options.clip,
                               device=self.options.device, templates=templates or "single",
                               top_k=top_k or 5)
        warnings = service.vocab_warnings(vocab, clip=self.options.clip,
                                          device=self.options.device)
        return {"top": top, "clip": self.options.clip, "warnings": warnings}

    def compare(self, image, masks, vocab, methods):
        """Top-1 class of each mask under each region-embedding method."""
        img = _image(image)
        mk = _masks(masks, img)
        methods = _json_list(methods, "methods") or list(service.METHODS)
        return service.compare(img, mk, clip=self.options.clip, device=self.options.device,
                               methods=methods, vocab=safe_vocab(vocab))

    def ground(self, image, expression, boxes):
        """ReCLIP: the box an expression refers to, among ``boxes`` ([[x0, y0, x1, y1], ...])
        or automatic proposals when empty."""
        img = _image(image)
        bx = _json_list(boxes, "boxes")
        if bx is not None and len(bx) > LIMITS.max_proposals:
            raise InputError(f"{len(bx)} boxes given; the limit is {LIMITS.max_proposals}")
        if bx is not None:
            bx = [service.check_box(b, img.shape[:2]) for b in bx]
            if not bx:
                bx = None
        res = service.ground(img, expression, boxes=bx, clip=self.options.clip,
                             device=self.options.device)
        view = grounding_view(img, res)
        return view["image"], view["json"]

    def label(self, image, classes, masks):
        """OVSeg-style labelling: a label map (PNG, 0 = unlabelled, k = k-th class), an overlay
        and per-mask top classes. Masks are optional (automatic proposals)."""
        img = _image(image)
        mk = _masks(masks, img, required=False)
        res = service.label(img, classes, masks=mk, clip=self.options.clip,
                            device=self.options.device)
        view = labelling_view(img, res)
        lm = np.asarray(res.label_map)
        path = self.scratch.write("label_map.png", image_to_png_bytes(
            lm.astype(np.uint16 if lm.max() > 255 else np.uint8)))
        return path, view["overlay"], view["json"]

    def caption(self, image, masks):
        """A localized caption per mask (MaskInversion region embedding -> caption decoder)."""
        img = _image(image)
        captions = service.caption(img, _masks(masks, img), captioner=self.options.captioner,
                                   device=self.options.device)
        return {"captions": captions}

    def generate(self, image, masks, n, seed, steps, vocab=None, progress=gr.Progress()):
        """``n`` images per mask generated from its region embedding, and the class the
        generator's CLIP sees in each among ``vocab`` (a built-in name or comma-separated
        classes; blank: ``shapes`` for the bundled CLIP, ``coco`` for real ones). The gallery
        holds the images only, mask by mask; ``seen[p][k]`` is ``{"label", "score"}``."""
        img = _image(image)

        def report(frac, what):
            progress(frac, desc=what)

        vocab = safe_vocab(vocab) if isinstance(vocab, str) and vocab.strip() else None
        res = service.generate(img, _masks(masks, img), generator=self.options.generator,
                               device=self.options.device, n=n, seed=seed,
                               steps=steps or None, vocab=vocab, progress=report)
        flat = [(im, seen_caption(f"region {p + 1}", k, res.seen[p][k]))
                for p, row in enumerate(res.images) for k, im in enumerate(row)]
        return flat, {"images_per_region": [len(r) for r in res.images], "seed": seed,
                      "steps": steps, "seen": res.seen, "vocab": res.vocab,
                      "clip": res.clip, "generator": res.generator}


def register(api: Api, concurrency_limit: int) -> None:
    """Hidden components and one event per endpoint, inside the current Blocks."""
    model = {"concurrency_id": "model", "concurrency_limit": concurrency_limit}
    with gr.Column(visible=False):
        image = raw_image(label="image", format="png")
        masks = gr.File(file_count="multiple", file_types=[".png"], type="filepath",
                        label="masks (PNG)")
        points = gr.JSON(label="points [[x, y, label], ...]")
        box = gr.JSON(label="box [x0, y0, x1, y1]")
        multimask = gr.Checkbox(True, label="multimask")
        out_masks = gr.File(file_count="multiple", label="masks (PNG)")
        info = gr.JSON(label="result")
        max_regions = gr.Number(12, label="max proposals", precision=0)
        iterations = gr.Number(None, label="iterations (blank: model default)", precision=0)
        lr = gr.Number(None, label="lr (blank: model default)")
        alpha = gr.Number(None, label="alpha (blank: model default)")
        resolution = gr.Number(None, label="resolution (blank: model default)", precision=0)
        engine = gr.Dropdown(["auto", "autograd", "factorized"], value="auto", label="engine")
        emb_file = gr.File(label="embeddings (.npy)", type="filepath")
        heatmaps = gr.File(file_count="multiple", label="heatmaps (PNG)")
        vocab = gr.Textbox("shapes", label="vocabulary")
        templates = gr.Dropdown(["single", "vild", "imagenet"], value="single",
                                label="templates")
        top_k = gr.Number(5, label="top k", precision=0)
        methods = gr.JSON(label="methods")
        expression = gr.Textbox(label="expression")
        boxes = gr.JSON(label="boxes [[x0, y0, x1, y1], ...]")
        overlay = gr.Image(type="numpy", format="png", label="overlay")
        classes = gr.Textbox(label="classes (comma-separated)")
        label_map = gr.File(label="label map (PNG)")
        n = gr.Number(2, label="n images", precision=0)
        seed = gr.Number(0, label="seed", precision=0)
        steps = gr.Number(20, label="steps", precision=0)
        gallery = gr.Gallery(format="png", label="generated")
        gen_vocab = gr.Textbox("", label="vocabulary for the seen classes (blank: the "
                                         "generator CLIP's default)")
        trigger = gr.Button(visible=False)

    endpoints = [
        ("segment", api.segment, [image, points, box, multimask], [out_masks, info]),
        ("propose", api.propose, [image, max_regions], [out_masks, info]),
        ("invert", api.invert, [image, masks, iterations, lr, alpha, resolution, engine],
         [emb_file, heatmaps, info]),
        ("retrieve", api.retrieve, [emb_file, vocab, templates, top_k], [info]),
        ("compare", api.compare, [image, masks, vocab, methods], [info]),
        ("ground", api.ground, [image, expression, boxes], [overlay, info]),
        ("label", api.label, [image, classes, masks], [label_map, overlay, info]),
        ("caption", api.caption, [image, masks], [info]),
        ("generate", api.generate, [image, masks, n, seed, steps, gen_vocab], [gallery, info]),
    ]
    for name, fn, inputs, outputs in endpoints:
        trigger.click(ui_errors(fn), inputs, outputs, api_name=name, api_visibility="public",
                      **model)
