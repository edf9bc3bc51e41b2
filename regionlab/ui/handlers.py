"""Event adapters of the interactive UI.

Each handler takes the session (``gr.State``) and component values, calls the plain functions
of :mod:`regionlab.ui.service`, updates the session and returns what to show. Handlers hold no
state of their own; the :class:`Session` object is per browser tab.
"""

from __future__ import annotations

import html
import re
import time

import gradio as gr
import numpy as np
import pandas as pd

from ..errors import InputError, ModelUnavailableError
from ..inputs import load_image
from ..segment.interactive import exclude_only
from . import examples, service
from .adapters import progress_fn, safe_vocab
from .draw import (
    box_mask,
    draw_labelled_boxes,
    draw_marker,
    draw_points,
    heatmap,
    mask_outline,
    overlay_regions,
)
from .export import build_zip
from .files import Scratch
from .options import AppOptions, check_model
from .session import Session

INCLUDE, EXCLUDE, BOX = "Include (+)", "Exclude (-)", "Box (2 clicks)"
CLICK_MODES = (INCLUDE, EXCLUDE, BOX)
PROPOSALS, MY_REGIONS = "Automatic proposals", "My regions"
AUTO_CANDIDATES = "ground_candidates"  # Session.image_cache key


# ------------------------------------------------------------------------------ drawing


def canvas(s: Session) -> np.ndarray | None:
    """The image with every region, the active region's clicks and a pending box corner."""
    if s.image is None:
        return None
    out = overlay_regions(s.image, [r.mask for r in s.regions], [r.colour for r in s.regions],
                          highlight=s.active)
    region = s.active_region()
    if region is not None and region.points:
        out = draw_points(out, region.points)
    if s.pending_corner is not None:
        out = draw_marker(out, *s.pending_corner)
    return out


def legend_html(s: Session) -> str:
    if not s.regions:
        return "<p class='rl-empty'>No regions yet.</p>"
    rows = []
    for i, r in enumerate(s.regions):
        colour = "#{:02x}{:02x}{:02x}".format(*r.colour)
        mark = " <b>(active)</b>" if i == s.active else ""
        rows.append(f"<li><span class='rl-swatch' style='background:{colour}'></span>"
                    f"{html.escape(r.name)} <small>{r.source}, {r.area} px</small>{mark}</li>")
    return "<ul class='rl-legend'>" + "".join(rows) + "</ul>"


def region_view(s: Session):
    """(state, canvas, active-region dropdown, legend) after any change of the regions."""
    active = s.active_region()
    dd = gr.Dropdown(choices=s.names(), value=active.name if active else None)
    return s, canvas(s), dd, legend_html(s)


def _editor_value(s: Session):
    if s.image is None:
        return None
    return {"background": s.image, "layers": [], "composite": s.image}


def editor_value(s: Session):
    """The brush editor showing the session's image (sent when the Brush tab opens)."""
    return _editor_value(s or Session())


# ------------------------------------------------------------------------- image & regions


def on_image_input(image, s: Session):
    """Upload / paste / clear on the canvas."""
    s = s or Session()
    if image is None:
        s = Session()
        return (*region_view(s), None)
    s.set_image(load_image(image), "upload")
    return (*region_view(s), _editor_value(s))


def on_example(key: str, s: Session):
    """Load an example by key (``scene:<seed>`` or ``photo:<name>``) with its prepared masks."""
    s = s or Session()
    ex = examples.load_example(key)
    s.set_image(ex.image, ex.name)
    for name, mask in ex.regions:
        s.add_region(mask, "example", name=name)
    s.active = 0 if s.regions else None
    return (*region_view(s), _editor_value(s))


def photo_notice(image_name: str, clip: str) -> str | None:
    """The notice for an image the bundled CLIP was not made for (anything but a ShapesWorld
    scene), or None."""
    if not str(clip or "").startswith("shapes") or str(image_name).startswith("ShapesWorld"):
        return None
    return ("The bundled CLIP knows only ShapesWorld's coloured shapes: on photos and other "
            "pictures its classes, captions, labels and groundings are guesses. Load real CLIP "
            "weights in Settings (e.g. ViT-B-16@openai from the Hugging Face cache, or "
            "ARCH@/path/to/weights.pt); see README 'Real weights'.")


def on_photo_notice(s: Session, clip: str) -> Session:
    """Shows :func:`photo_notice` once per session (after a new image)."""
    if s is None or s.image is None:
        return s
    text = photo_notice(getattr(s, "image_name", ""), clip)
    if s.first_notice(text):
        gr.Info(text, duration=15)
    return s


def on_gallery_select(s: Session, evt: gr.SelectData):
    items = examples.gallery()
    if not 0 <= int(evt.index) < len(items):
        raise InputError("no such example")
    return on_example(items[int(evt.index)][0], s)


def on_scene_seed(seed, s: Session):
    return on_example(f"scene:{int(seed) if seed is not None else -1}", s)


def on_click(s: Session, mode: str, sam: str | None, options: AppOptions, evt: gr.SelectData):
    """A click on the canvas; ``evt.index`` is (x, y) in the image's natural pixels."""
    if evt.index is None or len(evt.index) < 2:
        raise InputError("click inside the image")
    return click_at(s, evt.index[0], evt.index[1], mode, sam, options)


def click_at(s: Session, x, y, mode: str, sam: str | None, options: AppOptions):
    """A click at pixel (x, y): refine the active region (Include / Exclude), start a new one,
    or place a corner of a box (two clicks)."""
    from ..inputs import check_number

    s = s or Session()
    image = s.require_image()
    h, w = image.shape[:2]
    x = int(round(check_number(x, "click x", 0, w - 1)))
    y = int(round(check_number(y, "click y", 0, h - 1)))
    if mode not in CLICK_MODES:
        raise InputError(f"unknown click mode {mode!r}; choose from {list(CLICK_MODES)}")
    sam = check_model("sam", sam, options)
    key = (sam, s.image_name, image.shape)
    segmenter = s.segmenter if s.segmenter_key == key else None
    t0 = time.perf_counter()
    before = s.begin_click()
    if mode == BOX:
        if s.pending_corner is None:
            s.pending_corner = (x, y)
            s.end_click(before)
            return region_view(s)
        (x0, y0), s.pending_corner = s.pending_corner, None
        box = (min(x0, x), min(y0, y), max(x0, x) + 1, max(y0, y) + 1)
        out = service.segment(image, sam=sam, box=box, multimask=True, segmenter=segmenter)
        mask = out.masks[0] if out.masks[0].any() else box_mask(box, (h, w))
        s.add_region(mask, "box", box=box, logits=out.logits)
    else:
        label = 0 if mode == EXCLUDE else 1
        region = s.active_region()
        if region is None or region.source not in ("click", "box"):
            if not label:
                raise InputError("start a region with an Include click first")
            points = [(x, y, 1)]
            out = service.segment(image, sam=sam, points=points, multimask=True,
                                  segmenter=segmenter)
            if not out.masks[0].any():
                raise InputError(f"the segmenter found no region at ({x}, {y})")
            s.add_region(out.masks[0], "click", points=points, logits=out.logits)
        else:
            points = [*region.points, (x, y, label)]
            out = service.segment(image, sam=sam, points=points, box=region.box,
                                  multimask=False, prev_logits=region.logits,
                                  segmenter=segmenter)
            mask, logits = out.masks[0], out.logits
            if not label:  # an Exclude click only removes pixels, never adds any
                mask, logits = exclude_only(region.mask, mask, logits)
            if not mask.any():
                raise InputError("this click would leave the region empty; click elsewhere")
            s.update_region(s.active, mask, points, logits)
    s.end_click(before)
    if s.first_notice(out.notice):  # once per session, not per image
        gr.Info(out.notice)
    area = int(s.regions[s.active].mask.sum()) if s.active is not None else 0
    if 0 < area < 0.001 * h * w:
        gr.Warning(f"The region has only {area} px: click elsewhere on the object, use a box, "
                   f"or paint it in the Brush tab.")
    s.segmenter, s.segmenter_key = out.segmenter, key
    s.timings["segment_s"] = round(time.perf_counter() - t0, 4)
    s.timings["segment_backend"] = out.backend
    return region_view(s)


def on_undo(s: Session):
    """Take back the latest click on the image (see :meth:`Session.undo`)."""
    s = s or Session()
    s.undo()
    return region_view(s)


def on_new_region(s: Session):
    s = s or Session()
    s.active, s.pending_corner = None, None
    return region_view(s)


def on_select_region(name, s: Session):
    s = s or Session()
    if name:
        s.select(name)
    return s, canvas(s), legend_html(s)


def on_rename(name, new_name, s: Session):
    s = s or Session()
    if not name:
        raise InputError("select a region to rename")
    s.rename(name, new_name)
    return (*region_view(s), "")


def on_delete(name, s: Session):
    s = s or Session()
    if not name:
        raise InputError("select a region to delete")
    s.delete(name)
    return region_view(s)


def on_clear(s: Session):
    s = s or Session()
    s.clear_regions()
    return region_view(s)


DUPLICATE_IOU = 0.7


def new_regions(candidates: list[np.ndarray], existing, iou: float = DUPLICATE_IOU) -> list[int]:
    """Indices of the candidate masks that overlap no existing mask (nor an earlier candidate)
    with a mask IoU above ``iou``: "Add proposals" twice adds nothing the second time."""
    from ..segment.proposals import mask_iou_matrix

    have = [np.asarray(m, bool) for m in (existing if existing is not None else [])]
    keep: list[int] = []
    for i, m in enumerate(candidates):
        others = have + [candidates[k] for k in keep]
        if others:
            ious = mask_iou_matrix(np.stack([np.asarray(m, bool), *others]))[0, 1:]
            if (ious > iou).any():
                continue
        keep.append(i)
    return keep


def on_proposals(s: Session, max_regions, sam: str | None, clip: str | None = None,
                 device: str | None = None, options: AppOptions | None = None,
                 progress=gr.Progress()):
    """"Add proposals": automatic proposals that are objects (with the bundled CLIP, those
    that read as one of its classes) and duplicate no region the user has."""
    s = s or Session()
    image = s.require_image()
    progress(0.1, desc="finding proposals")
    t0 = time.perf_counter()
    if options is not None:  # only registered names: no user string may name a file
        sam = check_model("sam", sam, options) if sam else sam
        clip = check_model("clip", clip, options) if clip else clip
    out = service.propose(image, method=sam or None, max_regions=int(max_regions or 8),
                          clip=clip or None, device=device or None)
    if out.notice:
        gr.Info(out.notice)
    props = out.regions
    if not props:
        raise InputError("no proposals found on this image")
    new = new_regions([p["mask"] for p in props], [r.mask for r in s.regions])
    if not new:
        raise InputError(f"all {len(props)} proposals duplicate regions you already have "
                         f"(mask IoU above {DUPLICATE_IOU})")
    for i in new:
        s.add_region(props[i]["mask"], "proposal", box=props[i]["box"])
    s.timings["proposals_s"] = round(time.perf_counter() - t0, 4)
    return region_view(s)


def on_brush(editor, s: Session):
    """Every painted layer of the editor becomes one region."""
    s = s or Session()
    image = s.require_image()
    layers = (editor or {}).get("layers") or []
    added = 0
    for layer in layers:
        if layer is None:
            continue
        arr = np.asarray(layer)
        mask = arr[..., 3] > 0 if arr.ndim == 3 and arr.shape[2] == 4 else arr.any(-1) \
            if arr.ndim == 3 else arr > 0
        if mask.shape != image.shape[:2]:
            from ..inputs import load_mask

            mask = load_mask(mask, size=image.shape[:2])
        if mask.any():
            s.add_region(mask, "brush")
            added += 1
    if not added:
        raise InputError("nothing painted: paint on a layer in the editor first")
    return (*region_view(s), _editor_value(s))


# --------------------------------------------------------------------- region embedding


CUSTOM = "custom"


def vocab_choices(clip: str) -> list[tuple[str, str]]:
    """(label, value) of the Vocabulary dropdown: built-in vocabularies whose class names the
    CLIP cannot represent are marked (the bundled CLIP's tokenizer is known without loading
    it; real CLIPs spell every word)."""
    from ..tasks.vocabularies import BUILTIN

    out = []
    for name in sorted(BUILTIN, key=lambda n: n != "shapes"):  # ShapesWorld's own first
        classes, label = BUILTIN[name], name
        if str(clip or "").startswith("shapes"):
            from ..shapes.tokenizer import ShapesTokenizer

            if ShapesTokenizer().unknown_words(list(classes)):
                label = f"{name} (words unknown to the bundled CLIP: scores meaningless)"
        out.append((label, name))
    return [*out, (CUSTOM, CUSTOM)]


def vocab_dropdown(clip: str, current: str):
    """The Vocabulary dropdown for a CLIP, keeping the current choice."""
    return gr.Dropdown(choices=vocab_choices(clip), value=current)


def vocab_of(choice: str, custom: str):
    """The vocabulary to rank classes in: the typed custom classes whenever there are any
    (whatever the Vocabulary dropdown says), else the dropdown's built-in vocabulary."""
    if custom is not None and not isinstance(custom, str):
        raise InputError(f"custom classes must be text, got {type(custom).__name__}")
    if custom and custom.strip():
        return safe_vocab(custom)
    if choice == CUSTOM:
        raise InputError("Vocabulary is 'custom' but no custom classes are typed: type "
                         "comma-separated classes, or choose a built-in vocabulary")
    return safe_vocab(choice)


def vocab_label(vocab) -> str:
    """Which vocabulary was used, for the status line: 'shapes (built-in)' or
    'custom: red star, blue circle'."""
    if isinstance(vocab, str):
        return f"{vocab} (built-in)"
    shown = ", ".join(vocab[:8]) + (f", ... ({len(vocab)} classes)" if len(vocab) > 8 else "")
    return f"custom: {shown}"


def vocab_choice_for(custom: str, choice: str, default: str):
    """The Vocabulary dropdown after the user typed custom classes: 'custom' while there are
    any, back to ``default`` when the box is emptied (else unchanged)."""
    if custom and custom.strip():
        return CUSTOM
    return default if choice == CUSTOM else choice


def custom_after_choice(choice: str, custom: str) -> str:
    """The custom-classes box after the user picked a vocabulary: a built-in choice empties
    it (typed classes would otherwise win over that choice), 'custom' keeps it."""
    return custom if choice == CUSTOM else ""


def loss_chart(losses: list[float]) -> np.ndarray:
    """The loss curve as a picture (matplotlib: integer iteration ticks that never overlap)."""
    from ..viz import line_chart

    return line_chart(losses, xlabel="iteration", ylabel="loss")


def heat_view(values: np.ndarray, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A LeGrad map over the image, the region's outline, and the colour scale on its right
    (maps are scaled to [0, 1] per map)."""
    from ..viz import with_colourbar

    return with_colourbar(mask_outline(heatmap(values, image), mask),
                          label="relevance (scaled per map)")


def top_text(top: dict | None) -> str:
    """``"red star (0.93)"``; a region without any class the model can represent: says so."""
    if not top or top.get("label") is None:
        return "(no class the model can represent)"
    return f"{top['label']} ({float(top['score']):.2f})"


def _topk_frame(top: list[dict]) -> pd.DataFrame:
    return pd.DataFrame({"class": [t["label"] for t in top],
                         "probability": [float(t["score"]) for t in top]})


def embedding_view(s: Session, region_name: str | None):
    """(before, iteration slider, iteration map, after, loss plot, top-k plot, top-k table)
    for one region of the latest MaskInversion run."""
    inv = s.results.get("invert")
    if inv is None:
        return (None, gr.Slider(value=0, maximum=1), None, None, None, None, None)
    names = inv["names"]
    r = names.index(region_name) if region_name in names else 0
    mask = inv["masks"][r]
    before = heat_view(inv["initial_maps"][r], s.image, mask)
    after = heat_view(inv["maps"][r], s.image, mask)
    n_hist = len(inv["history"])
    last = max(n_hist - 1, 0)
    it_map = None
    if n_hist:
        it_map = heat_view(np.asarray(inv["history"][last][r], np.float32), s.image, mask)
    top = inv["top"][r]
    table = pd.DataFrame({"rank": range(1, len(top) + 1), "class": [t["label"] for t in top],
                          "probability": [round(float(t["score"]), 4) for t in top]})
    if it_map is not None:
        it_map = gr.Image(it_map, label=f"After {inv['history_iterations'][last]} of "
                                        f"{len(inv['losses'])} steps")
    slider = gr.Slider(value=last, minimum=0, maximum=max(last, 1), step=1,
                       label="Replay the optimisation (recorded steps)")
    return (before, slider, it_map, after,
            loss_chart(inv["losses"]), _topk_frame(top), table)


def on_invert(s: Session, clip: str, device: str, engine: str, iterations, lr, alpha,
              resolution, vocab_choice: str, custom: str, templates: str, top_k,
              options: AppOptions, progress=gr.Progress()):
    s = s or Session()
    image = s.require_image()
    masks = s.masks()
    clip = check_model("clip", clip, options)
    vocab = vocab_of(vocab_choice, custom)
    report = progress_fn(progress)
    out = service.invert(image, masks, clip=clip, device=device or None, iterations=iterations,
                         lr=lr, alpha=alpha, resolution=resolution, engine=engine,
                         cache=s.results.get("invert_cache"), progress=report)
    report(0.97, "ranking classes")
    t0 = time.perf_counter()
    top = service.retrieve(out.embeddings, vocab, clip=clip, device=device or None,
                           templates=templates, top_k=int(top_k))
    s.results["invert_cache"] = out.cache
    s.results["invert"] = {
        "names": s.names(), "masks": masks, "embeddings": out.embeddings, "maps": out.maps,
        "initial_maps": out.initial_maps, "history": out.history,
        "history_iterations": out.history_iterations, "losses": out.losses,
        "engine": out.engine, "settings": out.settings, "top": top, "clip": clip,
        "vocab": vocab if isinstance(vocab, str) else list(vocab), "templates": templates,
    }
    s.timings.update({f"invert_{k}": round(v, 4) for k, v in out.timings.items()})
    s.timings["retrieve_s"] = round(time.perf_counter() - t0, 4)
    names = s.names()
    summary = "; ".join(f"**{html.escape(n)}** → {top_text(t[0] if t else None)}"
                        for n, t in zip(names, top))
    status = f"MaskInversion ({out.engine}, {len(out.losses)} iterations, " \
             f"{out.timings.get('total_s', 0):.2f} s): {summary}  \n" \
             f"Vocabulary: {html.escape(vocab_label(vocab))}"
    for w in service.vocab_warnings(vocab, clip=clip, device=device or None):
        status += f"  \n**Warning:** {html.escape(w)}"
    crop = service.compare(image, masks, clip=clip, device=device or None,
                           methods=["masked-crop"], vocab=vocab, templates=templates)
    bundled = service.load_clip(clip, device or None).name == "shapes-clip"
    for n in crosscheck_notes(names, top, [r["masked-crop"] for r in crop["rows"]],
                              CROSSCHECK_MEASURED if bundled else None):
        status += f"  \n**Note:** {html.escape(n)}"
    view = embedding_view(s, names[0])
    dd = gr.Dropdown(choices=names, value=names[0])
    return (s, dd, *view, status, s.timings)


#: With the bundled CLIP, when MaskInversion and the masked crop name different classes for a
#: region, how often the masked crop is right: held-out scenes of our renderer (81 of 451
#: regions disagree) and of the matplotlib renderer nothing is trained on (115 of 460)
#: (``python benchmarks/retrieval_calibration.py``, maskinversion_vs_masked_crop).
CROSSCHECK_MEASURED = {"ours": 0.98, "shift": 0.76}


def crosscheck_notes(names: list[str], top: list[list[dict]], crop: list[dict],
                     rates: dict | None = None) -> list[str]:
    """One note per region whose MaskInversion top class differs from its masked crop's
    (``crop``: the masked crop's top-1 ``{"label", "score"}`` per region); ``rates``
    (:data:`CROSSCHECK_MEASURED`, for the bundled CLIP) are quoted."""
    out = []
    for name, t, c in zip(names, top, crop):
        mi = t[0] if t else None
        if mi is None or c.get("label") is None or mi["label"] == c["label"]:
            continue
        note = (f"{name}: MaskInversion reads it as {mi['label']!r} ({float(mi['score']):.2f}), "
                f"the masked crop as {c['label']!r} ({float(c['score']):.2f})")
        if rates:
            note += (f"; when the two disagree on held-out scenes the masked crop is right "
                     f"{rates['ours']:.0%} of the time ({rates['shift']:.0%} on a renderer the "
                     f"model never saw)")
        out.append(note + ".")
    return out


def on_view_region(name, s: Session):
    return embedding_view(s or Session(), name)


def on_iteration(frame, name, s: Session):
    """The map at one recorded step of the optimisation (slider position ``frame``)."""
    s = s or Session()
    inv = s.results.get("invert")
    if inv is None or not inv["history"]:
        return None
    r = inv["names"].index(name) if name in inv["names"] else 0
    k = int(min(max(frame or 0, 0), len(inv["history"]) - 1))
    m = np.asarray(inv["history"][k][r], np.float32)
    label = f"After {inv['history_iterations'][k]} of {len(inv['losses'])} steps"
    return gr.Image(heat_view(m, s.image, inv["masks"][r]), label=label)


def on_compare(s: Session, clip: str, device: str, vocab_choice: str, custom: str,
               templates: str, options: AppOptions, progress=gr.Progress()):
    s = s or Session()
    image = s.require_image()
    masks = s.masks()
    clip = check_model("clip", clip, options)
    inv = s.results.get("invert")
    inverted = inv["embeddings"] if inv is not None and inv["names"] == s.names() and \
        inv["clip"] == clip else None
    t0 = time.perf_counter()
    vocab = vocab_of(vocab_choice, custom)
    res = service.compare(image, masks, clip=clip, device=device or None,
                          vocab=vocab, templates=templates,
                          inverted=inverted, progress=progress_fn(progress))
    s.results["compare"] = res
    s.timings["compare_s"] = round(time.perf_counter() - t0, 4)
    rows = []
    for name, row in zip(s.names(), res["rows"]):
        rows.append([name] + [top_text(row[m]) for m in res["methods"]])
    warn = service.vocab_warnings(vocab, clip=clip, device=device or None)
    table = gr.Dataframe(pd.DataFrame(rows, columns=["region", *res["methods"]]),
                         label=f"Top-1 class per method · vocabulary {vocab_label(vocab)}"
                               + (" · WARNING: the model does not know these class names"
                                  if warn else ""))
    for w in warn:
        gr.Warning(w)
    return s, table, s.timings


def on_caption(s: Session, captioner: str, device: str, options: AppOptions,
               progress=gr.Progress()):
    s = s or Session()
    image, masks = s.require_image(), s.masks()
    captioner = check_model("captioner", captioner, options)
    progress(0.1, desc="captioning (MaskInversion + caption decoder)")
    t0 = time.perf_counter()
    captions = service.caption(image, masks, captioner=captioner, device=device or None)
    s.results["caption"] = dict(zip(s.names(), captions))
    s.timings["caption_s"] = round(time.perf_counter() - t0, 4)
    from ..tasks.caption import DEFAULT_CAPTIONER

    bundled = (captioner or DEFAULT_CAPTIONER) == DEFAULT_CAPTIONER  # the rates were measured
    notes = caption_disagreements(s.names(), masks, captions, s.results.get("invert"),
                                  DISAGREEMENT_MEASURED if bundled else None)
    text = "\n".join(f"{n}: {c}" for n, c in zip(s.names(), captions))
    return s, text + "".join(f"\n\nNote: {n}" for n in notes), s.timings


#: On held-out ShapesWorld scenes of our renderer at the app's 448 px, when a MaskInversion
#: caption and retrieval's top class disagree (55 of 527 objects), how often each is right
#: (``python benchmarks/caption_agreement.py``, set pil448; at 64 px: 44% and 52% of 48).
DISAGREEMENT_RATES = "retrieval was right {r:.0%} of the time and the caption {c:.0%}"
DISAGREEMENT_MEASURED = {"retrieval_right": 0.31, "caption_right": 0.62}


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def caption_disagreements(names: list[str], masks, captions: list[str],
                          invert: dict | None, rates: dict | None = None) -> list[str]:
    """One note per region whose caption names another class of the Region tab's vocabulary
    than that tab's top class for the same region (last MaskInversion run, same masks);
    ``rates`` (:data:`DISAGREEMENT_MEASURED`, for the bundled captioner) are quoted."""
    from ..tasks.vocabularies import resolve_vocab

    if (not invert or list(invert.get("names", [])) != list(names)
            or not np.array_equal(np.asarray(invert.get("masks")), np.asarray(masks))):
        return []
    classes = resolve_vocab(invert["vocab"])
    why = ("" if rates is None else " (on held-out scenes, when the two "
           "disagree, " + DISAGREEMENT_RATES.format(r=rates["retrieval_right"],
                                                     c=rates["caption_right"]) + ")")
    out = []
    for name, caption, top in zip(names, captions, invert["top"]):
        text = f" {_words(caption)} "
        named = [c for c in classes if f" {_words(c)} " in text]
        if not top:
            continue
        best = top[0]["label"]
        if named and best.lower() not in (c.lower() for c in named):
            out.append(f"{name}: the caption names {named[0]!r}, the Region tab's top class "
                       f"is {best!r} ({float(top[0]['score']):.2f}): the model is unsure "
                       f"which{why}.")
    return out


def on_generate(s: Session, generator: str, device: str, n, seed, steps,
                options: AppOptions, progress=gr.Progress(), vocab_choice: str | None = None,
                custom: str = "", templates: str = "single"):
    """Images generated from each region, shown per region as one gallery row: the region,
    then its images, each captioned with the class the generator's CLIP sees in it among the
    Region tab's vocabulary (none chosen: the CLIP's default vocabulary)."""
    s = s or Session()
    image, masks = s.require_image(), s.masks()
    generator = check_model("generator", generator, options)
    vocab = vocab_of(vocab_choice, custom) if vocab_choice or (custom or "").strip() else None
    t0 = time.perf_counter()
    res = service.generate(image, masks, generator=generator, device=device or None,
                           n=n, seed=seed, steps=steps, vocab=vocab, templates=templates,
                           progress=progress_fn(progress))
    s.timings["generate_s"] = round(time.perf_counter() - t0, 4)
    s.results["generate"] = {"regions": s.names(), **res.to_json()}
    view = generation_view(image, [r.mask for r in s.regions], s.names(),
                           [r.colour for r in s.regions], res)
    warn = service.vocab_warnings(res.vocab, clip=res.clip, device=device or None)
    for w in warn:
        gr.Warning(w)
    gallery = gr.Gallery(view["items"], columns=view["columns"], label=view["label"],
                         format="png")
    return s, gallery, s.timings


def seen_caption(name: str, k: int, seen: dict | None) -> str:
    """'region 1 · generated 2: red star (0.91)' (k counts from 0)."""
    what = f"{name} · generated {k + 1}"
    return what if seen is None else f"{what}: {seen['label']} ({float(seen['score']):.2f})"


def generation_view(image: np.ndarray, masks, names: list[str], colours, res) -> dict:
    """Gallery items of a generation result, one row per region: the region (cropped to its
    box, the outside dimmed, outlined in its colour), then its images captioned with the class
    the CLIP sees in each; the number of columns that keeps one region per row; a label."""
    from ..viz import region_view

    items = []
    n = max((len(row) for row in res.images), default=0)
    for p, (name, mask, colour, row) in enumerate(zip(names, masks, colours, res.images)):
        side = max((max(im.shape[:2]) for im in row), default=128)
        items.append((region_view(image, mask, colour, size=int(np.clip(side, 128, 512))),
                      f"{name} · the region"))
        seen = res.seen[p] if res.seen is not None else [None] * len(row)
        items += [(im, seen_caption(name, k, c)) for k, (im, c) in enumerate(zip(row, seen))]
    label = f"Each row: a region, then its {n} generated image{'s' * (n != 1)}"
    if res.seen is not None:
        label += (f"; under each, the class {res.clip} sees in it "
                  f"(vocabulary {vocab_label(res.vocab)})")
    return {"items": items, "columns": n + 1, "label": label}


# ------------------------------------------------------------------- grounding, labelling


def on_ground(s: Session, expression: str, source: str, clip: str, device: str,
              options: AppOptions, combine: str = "tree", temperature=None, margin=None,
              contrast=None, progress=gr.Progress()):
    s = s or Session()
    image = s.require_image()
    clip = check_model("clip", clip, options)
    masks = np.stack([r.mask for r in s.regions]) if source == MY_REGIONS and s.regions else None
    if source == MY_REGIONS and masks is None:
        raise InputError("no regions yet: make some, or choose automatic proposals")
    progress(0.1, desc="grounding")
    t0 = time.perf_counter()
    cached = s.image_cache.get(AUTO_CANDIDATES) if source == PROPOSALS else None
    res = service.ground(image, expression, masks=masks, clip=clip, device=device or None,
                         combine=combine, temperature=temperature, margin=margin,
                         contrast=contrast, candidates=cached,
                         cache=s.image_cache if source == PROPOSALS else None)
    if source == PROPOSALS and cached is None and res.proposals.source == "automatic":
        s.image_cache[AUTO_CANDIDATES] = res.proposals  # the next expression reuses them
    view = grounding_view(image, res)
    s.results["ground"] = view["json"]
    s.results["ground_overlay"] = view["image"]
    s.timings["ground_s"] = round(time.perf_counter() - t0, 4)
    return s, view["image"], view["table"], view["tree"], view["summary"], s.timings


def grounding_defaults(combine: str) -> tuple[float, float, float]:
    """(temperature, margin, contrast) a combination uses by default (shown in the Grounding
    tab)."""
    from ..tasks.reclip import GroundingOptions

    opts = GroundingOptions(combine=combine).checked()
    return opts.effective_temperature, opts.effective_margin, opts.effective_contrast


def grounding_view(image: np.ndarray, res) -> dict:
    """Drawing, probability table, parse tree and a one-line summary of a grounding result."""
    d = res.to_dict()
    informed = d.get("informed", True)
    boxes, probs = d["boxes"], d["probs"]
    chosen = [int(i) for i in d["indices"]] if informed else []
    objects = d.get("objects")  # automatic candidates the objectness filter left out: not drawn
    order = chosen + [i for i in np.argsort(probs)[::-1].tolist()
                      if i not in chosen and (objects is None or objects[i])]
    bold = max(2, round(max(image.shape[:2]) / 120))
    out = draw_labelled_boxes(
        image, [boxes[i] for i in order], [f"{i}: {probs[i]:.2f}" for i in order],
        [(255, 215, 0) if i in chosen else (170, 170, 170) for i in order],
        [bold if i in chosen else max(1, bold // 2) for i in order])
    table = pd.DataFrame({"proposal": list(range(len(boxes))),
                          "box": [str([round(v) for v in b]) for b in boxes],
                          "probability": [round(p, 4) for p in probs],
                          "CLIP only (IPS)": [round(p, 4) for p in d["ips_probs"]]})
    readings, reading = d.get("candidate_readings"), d.get("answer_reading")
    if readings and reading:
        table["reads as"] = [
            f"{r['reads_as']} ({r['deficit']:+.1f})" for r in readings]
    if objects is not None:
        table["object?"] = ["yes" if o else "left out (see the note)" for o in objects]
    table = table[[c for c in table.columns if c != "box"] + ["box"]]  # the box last: widest
    table = table.sort_values("probability", ascending=False, kind="stable")
    how = (f"the parse tree decided ({res.combine} combination)" if d["used_tree"]
           else "no spatial keyword: CLIP's isolated proposal scores alone")
    which = ", ".join(f"**{i}** (p = {probs[i]:.2f})" for i in chosen)
    summary = (f"Chosen proposal {which} (yellow); {how}." if informed else
               "**No answer:** the model knows no word of the expression, so no proposal is "
               "chosen (grey: every candidate, with its arbitrary probability).")
    for w in d.get("warnings") or []:
        summary = f"**Warning:** {html.escape(str(w))}\n\n" + summary
    if d["notes"]:
        summary += " " + " ".join(f"_{html.escape(str(n))}_" for n in d["notes"])
    tree = res.tree.describe() if res.tree is not None else "(parser off: IPS alone)"
    if d["node_probs"]:
        tree += "\n\nper entity (IPS -> after its relations/superlatives):"
        for eid, v in d["node_probs"].items():
            best_ips, best_p = int(np.argmax(v["ips"])), int(np.argmax(v["p"]))
            tree += (f"\n[{eid}] {v['text'] or '(any object)'}: IPS best {best_ips}, "
                     f"final best {best_p} (p = {max(v['p']):.2f})")
    return {"image": out, "table": table, "tree": tree, "summary": summary, "json": d}


def on_label(s: Session, classes: str, source: str, clip: str, device: str,
             options: AppOptions, progress=gr.Progress()):
    s = s or Session()
    image = s.require_image()
    clip = check_model("clip", clip, options)
    masks = s.masks() if source == MY_REGIONS else None
    progress(0.1, desc="labelling")
    t0 = time.perf_counter()
    res = service.label(image, classes, masks=masks, clip=clip, device=device or None)
    view = labelling_view(image, res)
    s.results["label"] = view["json"]
    s.results["label_overlay"] = view["overlay"]
    s.timings["label_s"] = round(time.perf_counter() - t0, 4)
    if view["notice"]:
        gr.Info(view["notice"])
    for w in res.warnings:
        gr.Warning(w)
    annotated = gr.AnnotatedImage(view["annotated"], color_map=view["colours"])
    return s, annotated, view["table"], s.timings


def labelling_view(image: np.ndarray, res) -> dict:
    """AnnotatedImage value, per-mask top-k table and JSON of a labelling result."""
    rows = []
    for i, region in enumerate(res.regions):
        rows.append([i, region.label or "(unlabelled)"]
                    + [f"{t['label']} ({float(t['score']):.2f})" for t in region.top[:3]])
    width = max((len(r) for r in rows), default=2)
    table = pd.DataFrame([r + [""] * (width - len(r)) for r in rows],
                         columns=["mask", "label"] + [f"top {k}" for k in range(1, width - 1)])
    overlay = res.overlay if res.overlay is not None else image
    return {"annotated": (image, res.annotations), "colours": dict(res.colours),
            "table": table, "json": res.to_dict(), "overlay": np.asarray(overlay),
            "notice": res.notice}


# ------------------------------------------------------------------- export & settings


def on_export(s: Session, settings: dict, scratch: Scratch):
    s = s or Session()
    data = build_zip(s, settings)
    return scratch.write("regionlab_export.zip", data)


def models_markdown() -> str:
    """A table of every registered model with its availability and the reason."""
    from ..models import get_spec, list_models

    lines = ["| kind | model | available | why |", "|---|---|---|---|"]
    for info in list_models():
        if get_spec(info.name).extra.get("testing"):
            continue
        lines.append(f"| {info.kind} | `{info.name}` | {'yes' if info.available else 'no'} | "
                     f"{info.reason.replace('|', '/')} |")
    return "\n".join(lines)


def clip_defaults(clip: str, device: str | None, options: AppOptions):
    """The tuned MaskInversion defaults of a CLIP, for the Settings sliders."""
    name = check_model("clip", clip, options)
    try:
        d = service.load_clip(name, device or None).defaults
    except ModelUnavailableError:  # "Not available": the current values stay
        raise
    except Exception as exc:  # a bad device name and the like keep the current values too
        raise InputError(str(exc)) from None
    return (gr.Number(value=d["mi_iterations"]), gr.Number(value=d["mi_lr"]),
            gr.Number(value=d["mi_alpha"]), gr.Number(value=d["mi_resolution"]))


class Handlers:
    """The handlers that need the app's options or scratch folder, as bound methods (gradio
    reads their signatures and type hints: ``gr.SelectData``, ``gr.Progress``)."""

    def __init__(self, options: AppOptions, scratch: Scratch):
        self.options = options
        self.scratch = scratch

    def click(self, s: Session, mode: str, sam: str | None, evt: gr.SelectData):
        return on_click(s, mode, sam, self.options, evt)

    def click_at(self, s: Session, x, y, mode: str, sam: str | None):
        return click_at(s, x, y, mode, sam, self.options)

    def invert(self, s: Session, clip, device, engine, iterations, lr, alpha, resolution,
               vocab_choice, custom, templates, top_k, progress=gr.Progress()):
        return on_invert(s, clip, device, engine, iterations, lr, alpha, resolution,
                         vocab_choice, custom, templates, top_k, self.options, progress)

    def compare(self, s: Session, clip, device, vocab_choice, custom, templates,
                progress=gr.Progress()):
        return on_compare(s, clip, device, vocab_choice, custom, templates, self.options,
                          progress)

    def caption(self, s: Session, captioner, device, progress=gr.Progress()):
        return on_caption(s, captioner, device, self.options, progress)

    def generate(self, s: Session, generator, device, n, seed, steps, vocab_choice=None,
                 custom="", templates="single", progress=gr.Progress()):
        return on_generate(s, generator, device, n, seed, steps, self.options, progress,
                           vocab_choice, custom, templates)

    def ground(self, s: Session, expression, source, clip, device, combine="tree",
               temperature=None, margin=None, contrast=None, progress=gr.Progress()):
        return on_ground(s, expression, source, clip, device, self.options, combine, temperature,
                         margin, contrast, progress)

    def label(self, s: Session, classes, source, clip, device, progress=gr.Progress()):
        return on_label(s, classes, source, clip, device, self.options, progress)

    def export(self, s: Session, clip, sam, device, engine, iterations, lr, alpha, resolution):
        settings = {"clip": clip, "sam": sam, "device": device, "engine": engine,
                    "iterations": iterations, "lr": lr, "alpha": alpha,
                    "resolution": resolution}
        return on_export(s, settings, self.scratch)

    def proposals(self, s: Session, max_regions, sam: str | None, clip=None, device=None,
                  progress=gr.Progress()):
        return on_proposals(s, max_regions, sam, clip, device, self.options, progress)

    def clip_defaults(self, clip, device):
        return clip_defaults(clip, device, self.options)
