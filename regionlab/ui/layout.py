"""The Blocks layout: image and regions on top, one tab per task below, hidden API endpoints.

Built by :func:`build_app`; no module-level state: everything a user changes lives in their
session's ``gr.State``.
"""

from __future__ import annotations

import html

import gradio as gr

from . import examples, handlers, texts
from .adapters import ui_errors
from .api import Api, register
from .components import raw_image
from .features import probe
from .files import Scratch
from .handlers import CLICK_MODES, INCLUDE, MY_REGIONS, PROPOSALS, Handlers
from .options import AppOptions, model_choices
from .session import Session

#: The Grounding tab's "Try" expressions (tests/test_grounding_examples.py checks the answers
#: on every example scene).
GROUNDING_EXAMPLES = ("the red star", "the red shape on the right",
                      "the shape above the blue circle", "the biggest shape")

CSS = """
.rl-legend {list-style: none; padding-left: 0; margin: 0}
.rl-legend li {margin: 2px 0}
.rl-swatch {display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.4em;
            border-radius: 2px; vertical-align: middle}
.rl-notice {border-left: 4px solid #f59e0b; padding: 4px 10px; background: #fffbeb;
            color: #78350f}
.rl-missing {color: #b45309}
#rl-canvas img {cursor: crosshair}
#rl-generated img {image-rendering: pixelated}  /* small generated images: crisp, not blurred */
/* one region per row (the handler sets the columns); tiles at most 240 px wide */
#rl-generated .grid-container {max-width: calc(var(--grid-cols) * 240px)}
#rl-generated .caption-label {white-space: normal; max-width: calc(100% - 12px); opacity: 1}
"""


def theme():
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="amber")


def _missing(*features: str) -> str:
    """A visible note for each feature this build does not have (empty when all exist)."""
    notes = []
    for f in features:
        ok, why = probe(f)
        if not ok:
            notes.append(f"<p class='rl-missing'>⚠ <b>{f}</b>: {why}</p>")
    return "".join(notes)


def _devices() -> list[str]:
    import torch

    devs = ["cpu"]
    if torch.cuda.is_available():
        devs.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devs.append("mps")
    return devs


def _default_device(options: AppOptions, devices: list[str]) -> str:
    from ..models import resolve_device

    try:
        dev = options.device or resolve_device(None).type
    except Exception:
        dev = "cpu"
    return dev if dev in devices else "cpu"


def _defaults(options: AppOptions) -> dict:
    from ..models.clip import REAL_DEFAULTS, SHAPES_DEFAULTS

    return SHAPES_DEFAULTS if options.clip.startswith("shapes") else REAL_DEFAULTS


def new_session() -> Session:
    """A fresh session for every page load or API client."""
    return Session()


def build_app(options: AppOptions | None = None) -> gr.Blocks:
    """The whole app for ``options`` (theme and css go to ``launch``: see :func:`launch_kwargs`)."""
    from .options import resolve_options

    options = options or resolve_options()
    scratch = Scratch(max_age=options.cache_age_s)
    h = Handlers(options, scratch)
    api = Api(options, scratch)
    model = {"concurrency_id": "model", "concurrency_limit": options.concurrency}
    quiet = {"api_visibility": "private"}
    d = _defaults(options)
    default_vocab = "shapes" if options.clip.startswith("shapes") else "coco"
    devices = _devices()
    device_value = _default_device(options, devices)

    with gr.Blocks(title="RegionLab", delete_cache=(options.cache_age_s, options.cache_age_s),
                   fill_width=True) as demo:
        state = gr.State(new_session, time_to_live=options.session_ttl_s)
        gr.Markdown(texts.INTRO)
        for notice in options.notices:
            gr.HTML(f"<div class='rl-notice'>⚠ {html.escape(notice, quote=False)}</div>")

        # ------------------------------------------------------------ image and regions
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                canvas = raw_image(label="Image: click to segment", format="png",
                                   sources=["upload", "clipboard"], interactive=True,
                                   elem_id="rl-canvas", height=520)
                with gr.Row():
                    mode = gr.Radio(list(CLICK_MODES), value=INCLUDE, label="Click mode",
                                    scale=3)
                    new_btn = gr.Button("New region", scale=1, elem_id="rl-new-region")
                    undo_btn = gr.Button("Undo click", scale=1, elem_id="rl-undo")
                    prop_btn = gr.Button("Add proposals", scale=1)
                    max_props = gr.Slider(1, 32, value=8, step=1, label="max proposals",
                                          scale=1)
                gr.HTML(_missing("segment", "proposals"))
            with gr.Column(scale=2):
                with gr.Tabs():
                    with gr.Tab("Examples"):
                        items = examples.gallery()
                        thumbs = [(examples.thumbnail(examples.load_example(k)), cap)
                                  for k, cap in items]
                        gallery = gr.Gallery(thumbs, columns=3, height=300, allow_preview=False,
                                             label="Examples (click one)", elem_id="rl-examples",
                                             format="png")
                        with gr.Row():
                            seed = gr.Number(24, label="ShapesWorld seed", precision=0,
                                             minimum=0)
                            seed_btn = gr.Button("Render scene")
                    with gr.Tab("Brush") as brush_tab:
                        editor = gr.ImageEditor(type="numpy", label="Paint one layer per region",
                                                elem_id="rl-editor",
                                                sources=[], layers=True, height=360,
                                                format="png",
                                                brush=gr.Brush(colors=["#e6194b"],
                                                               color_mode="fixed"))
                        brush_btn = gr.Button("Add painted layers as regions",
                                              elem_id="rl-brush-add")
                region_dd = gr.Dropdown([], label="Active region", interactive=True)
                legend = gr.HTML(handlers.legend_html(Session()))
                with gr.Row():
                    new_name = gr.Textbox(label="Rename to", scale=2)
                    rename_btn = gr.Button("Rename", scale=1)
                with gr.Row():
                    delete_btn = gr.Button("Delete region", variant="stop")
                    clear_btn = gr.Button("Clear all")
                with gr.Accordion("How regions work", open=False):
                    gr.Markdown(texts.REGIONS)

        # ------------------------------------------------------------------------ tabs
        with gr.Tabs(elem_id="rl-tabs"):
            with gr.Tab("Region embedding", id="embedding"):
                gr.HTML(_missing("invert", "retrieve", "baselines"))
                with gr.Accordion("How it works", open=False):
                    gr.Markdown(texts.EMBEDDING)
                with gr.Row():
                    vocab_dd = gr.Dropdown(handlers.vocab_choices(options.clip),
                                           value=default_vocab, label="Vocabulary",
                                           elem_id="rl-vocab")
                    custom = gr.Textbox(label="Custom classes (comma-separated; used when "
                                              "given)",
                                        placeholder="red star, blue circle, ...", scale=2,
                                        elem_id="rl-custom")
                    templates = gr.Dropdown(["single", "vild", "imagenet"], value="single",
                                            label="Prompt templates")
                    top_k = gr.Slider(1, 10, value=5, step=1, label="top k")
                invert_btn = gr.Button("Run MaskInversion on all regions", variant="primary",
                                       elem_id="rl-invert")
                invert_status = gr.Markdown(elem_id="rl-invert-status")
                view_dd = gr.Dropdown([], label="Show region", interactive=True)
                with gr.Row():
                    before_img = gr.Image(label="Heatmap before (global embedding)",
                                          format="png", interactive=False,
                                          elem_id="rl-heat-before")
                    with gr.Column():
                        iter_img = gr.Image(label="During optimisation", format="png",
                                            interactive=False)
                        iter_slider = gr.Slider(0, 1, value=0, step=1, label="Iteration")
                    after_img = gr.Image(label="Heatmap after (region embedding)",
                                         format="png", interactive=False,
                                         elem_id="rl-heat-after")
                with gr.Row():
                    loss_plot = gr.Image(label="Loss", format="png", interactive=False,
                                         elem_id="rl-loss", height=260)
                    topk_plot = gr.BarPlot(x="class", y="probability", label="Top classes",
                                           sort="-y", height=260, elem_id="rl-topk-plot")
                topk_table = gr.Dataframe(headers=["rank", "class", "probability"],
                                          label="Top classes", interactive=False,
                                          elem_id="rl-topk")
                with gr.Accordion("Compare region-embedding methods", open=False):
                    compare_btn = gr.Button("Compare methods (top-1 per region)",
                                            elem_id="rl-compare")
                    compare_table = gr.Dataframe(interactive=False, elem_id="rl-compare-table")
                with gr.Accordion("Localized caption", open=False):
                    gr.HTML(_missing("caption"))
                    gr.Markdown(texts.CAPTION)
                    caption_btn = gr.Button("Caption regions", elem_id="rl-caption")
                    caption_box = gr.Textbox(label="Captions", lines=3, interactive=False,
                                             elem_id="rl-captions")
                with gr.Accordion("Generate images from the region", open=False):
                    gr.HTML(_missing("generate"))
                    gr.Markdown(texts.GENERATE)
                    with gr.Row():
                        gen_n = gr.Slider(1, 8, value=2, step=1, label="images")
                        gen_seed = gr.Number(0, label="seed", precision=0, minimum=0)
                        gen_steps = gr.Slider(1, 100, value=20, step=1, label="steps")
                    gen_btn = gr.Button("Generate", elem_id="rl-generate")
                    gen_gallery = gr.Gallery(columns=4, height="auto", format="png",
                                             object_fit="contain", elem_id="rl-generated",
                                             label="Generated images (each row: a region, "
                                                   "then its images)")

            with gr.Tab("Grounding", id="grounding"):
                gr.HTML(_missing("ground"))
                with gr.Accordion("How it works", open=False):
                    gr.Markdown(texts.GROUNDING)
                with gr.Row():
                    expression = gr.Textbox(label="Referring expression",
                                            placeholder="the red shape on the right",
                                            scale=3)
                    ground_src = gr.Radio([PROPOSALS, MY_REGIONS], value=PROPOSALS,
                                          label="Candidates")
                gr.Examples([[e] for e in GROUNDING_EXAMPLES], inputs=[expression],
                            label="Try")
                with gr.Row():
                    ground_combine = gr.Radio(["tree", "calibrated", "reference"], value="tree",
                                              label="Combination", elem_id="rl-ground-combine")
                    t0, m0, c0 = handlers.grounding_defaults("tree")
                    ground_temp = gr.Number(t0, label="Temperature", minimum=0.001,
                                            maximum=1000, elem_id="rl-ground-temperature")
                    ground_margin = gr.Number(m0, label="Margin (logits)", minimum=0,
                                              maximum=1000, elem_id="rl-ground-margin")
                    ground_contrast = gr.Number(c0, label="Contrast weight", minimum=0,
                                                maximum=1000, elem_id="rl-ground-contrast")
                ground_btn = gr.Button("Ground", variant="primary", elem_id="rl-ground")
                ground_summary = gr.Markdown(elem_id="rl-ground-summary")
                with gr.Row():
                    # no label badge: it would cover the labels of boxes near the top left
                    ground_img = gr.Image(label="Proposals (chosen in yellow)", format="png",
                                          interactive=False, show_label=False,
                                          elem_id="rl-ground-image")
                    with gr.Column():
                        ground_table = gr.Dataframe(label="Per-proposal probability",
                                                    interactive=False)
                        ground_tree = gr.Textbox(label="Parse tree (entities, rules that fired)",
                                                 lines=8, interactive=False,
                                                 elem_id="rl-ground-tree")

            with gr.Tab("Labelling", id="labelling"):
                gr.HTML(_missing("label"))
                with gr.Accordion("How it works", open=False):
                    gr.Markdown(texts.LABELLING)
                with gr.Row():
                    classes = gr.Textbox(label="Classes (comma-separated)", scale=3,
                                         value="red star, blue circle, green square, "
                                               "yellow triangle, purple cross, orange circle")
                    label_src = gr.Radio([PROPOSALS, MY_REGIONS], value=MY_REGIONS,
                                         label="Masks")
                gr.Examples([["shapes"], ["red star, red triangle, blue circle, purple triangle"],
                             ["person, cup, cat, flag, rocket, helmet"]],
                            inputs=[classes], label="Class lists")
                label_btn = gr.Button("Label", variant="primary", elem_id="rl-label")
                with gr.Row():
                    annotated = gr.AnnotatedImage(label="Labelled map", show_legend=True)
                    label_table = gr.Dataframe(label="Per-mask top classes", interactive=False,
                                               elem_id="rl-label-table")

            with gr.Tab("Export", id="export"):
                gr.Markdown(texts.EXPORT)
                export_btn = gr.Button("Build zip", variant="primary", elem_id="rl-export")
                export_file = gr.File(label="Download", interactive=False, elem_id="rl-export-file")

            with gr.Tab("Settings", id="settings"):
                gr.Markdown(texts.SETTINGS)
                with gr.Row():
                    clip_dd = gr.Dropdown(model_choices("clip", options), value=options.clip,
                                          label="CLIP")
                    sam_dd = gr.Dropdown([("built-in default", "")]
                                         + model_choices("sam", options),
                                         value=options.sam or "", label="Segmenter")
                    cap_dd = gr.Dropdown([("built-in default", "")]
                                         + model_choices("captioner", options),
                                         value=options.captioner or "", label="Captioner")
                    gen_dd = gr.Dropdown([("built-in default", "")]
                                         + model_choices("generator", options),
                                         value=options.generator or "", label="Generator")
                    device_dd = gr.Dropdown(devices, value=device_value, label="Device")
                with gr.Row():
                    engine = gr.Radio(["auto", "autograd", "factorized"], value="auto",
                                      label="MaskInversion engine")
                    iterations = gr.Number(d["mi_iterations"], label="iterations", precision=0,
                                           minimum=0)
                    lr = gr.Number(d["mi_lr"], label="learning rate", minimum=0)
                    alpha = gr.Number(d["mi_alpha"], label="alpha", minimum=0)
                    resolution = gr.Number(d["mi_resolution"], label="resolution (px)",
                                           precision=0, minimum=8)
                timings = gr.JSON(label="Timings of your latest runs (seconds)")
                with gr.Accordion("Models and their availability", open=False):
                    gr.Markdown(handlers.models_markdown())

        register(api, options.concurrency)
        with gr.Column(visible=False):  # session endpoints for scripted clients (undocumented)
            click_x = gr.Number(label="x", precision=0)
            click_y = gr.Number(label="y", precision=0)
            example_key = gr.Textbox(label="example key (scene:<seed> or photo:<name>)")
            session_trigger = gr.Button(visible=False)

        # ---------------------------------------------------------------------- wiring
        regions_out = [state, canvas, region_dd, legend]
        notice = {"fn": handlers.on_photo_notice, "inputs": [state, clip_dd], "outputs": [state],
                  "queue": False, "show_progress": "hidden", **quiet}
        canvas.input(ui_errors(handlers.on_image_input), [canvas, state],
                     [*regions_out, editor], **quiet).then(**notice)
        gallery.select(ui_errors(handlers.on_gallery_select), [state], [*regions_out, editor],
                       **quiet).then(**notice)
        seed_btn.click(ui_errors(handlers.on_scene_seed), [seed, state], [*regions_out, editor],
                       **quiet).then(**notice)
        canvas.select(ui_errors(h.click), [state, mode, sam_dd], regions_out, **quiet, **model)
        # The same session actions for gradio_client (which cannot fire .select): undocumented
        # endpoints acting on the caller's own session state.
        hidden = {"api_visibility": "undocumented"}
        session_trigger.click(ui_errors(handlers.on_scene_seed), [seed, state],
                              [*regions_out, editor], api_name="session_scene", **hidden)
        session_trigger.click(ui_errors(handlers.on_example), [example_key, state],
                              [*regions_out, editor], api_name="session_example", **hidden)
        session_trigger.click(ui_errors(h.click_at), [state, click_x, click_y, mode, sam_dd],
                              regions_out, api_name="session_click", **hidden, **model)
        new_btn.click(ui_errors(handlers.on_new_region), [state], regions_out, **quiet)
        undo_btn.click(ui_errors(handlers.on_undo), [state], regions_out,
                       api_name="session_undo", **hidden)
        prop_btn.click(ui_errors(h.proposals), [state, max_props, sam_dd, clip_dd, device_dd],
                       regions_out, **quiet, **model)
        brush_tab.select(handlers.editor_value, [state], [editor], **quiet)
        brush_btn.click(ui_errors(handlers.on_brush), [editor, state], [*regions_out, editor],
                        **quiet)
        region_dd.input(ui_errors(handlers.on_select_region), [region_dd, state],
                        [state, canvas, legend], **quiet)
        rename_btn.click(ui_errors(handlers.on_rename), [region_dd, new_name, state],
                         [*regions_out, new_name], **quiet)
        delete_btn.click(ui_errors(handlers.on_delete), [region_dd, state], regions_out, **quiet)
        clear_btn.click(ui_errors(handlers.on_clear), [state], regions_out,
                        api_name="session_clear", **hidden)

        view_outputs = [before_img, iter_slider, iter_img, after_img, loss_plot, topk_plot,
                        topk_table]
        invert_btn.click(ui_errors(h.invert),
                         [state, clip_dd, device_dd, engine, iterations, lr, alpha, resolution,
                          vocab_dd, custom, templates, top_k],
                         [state, view_dd, *view_outputs, invert_status, timings],
                         api_name="session_invert", **hidden, **model)
        view_dd.input(ui_errors(handlers.on_view_region), [view_dd, state], view_outputs,
                      **quiet)
        # typed classes are used (handlers.vocab_of); the dropdown shows it, and choosing a
        # built-in vocabulary empties the box
        custom.input(lambda text, choice: handlers.vocab_choice_for(text, choice, default_vocab),
                     [custom, vocab_dd], [vocab_dd], **quiet, show_progress="hidden")
        vocab_dd.input(handlers.custom_after_choice, [vocab_dd, custom], [custom], **quiet,
                       show_progress="hidden")
        iter_slider.input(ui_errors(handlers.on_iteration), [iter_slider, view_dd, state],
                          [iter_img], **quiet, show_progress="hidden")
        compare_btn.click(ui_errors(h.compare),
                          [state, clip_dd, device_dd, vocab_dd, custom, templates],
                          [state, compare_table, timings], **quiet, **model)
        caption_btn.click(ui_errors(h.caption), [state, cap_dd, device_dd],
                          [state, caption_box, timings], **quiet, **model)
        gen_btn.click(ui_errors(h.generate),
                      [state, gen_dd, device_dd, gen_n, gen_seed, gen_steps, vocab_dd, custom,
                       templates],
                      [state, gen_gallery, timings], **quiet, **model)
        ground_combine.change(handlers.grounding_defaults, [ground_combine],
                              [ground_temp, ground_margin, ground_contrast],
                              api_visibility="private",
                              queue=False)
        ground_btn.click(ui_errors(h.ground), [state, expression, ground_src, clip_dd, device_dd,
                                               ground_combine, ground_temp, ground_margin,
                                               ground_contrast],
                         [state, ground_img, ground_table, ground_tree, ground_summary, timings],
                         **quiet, **model)
        expression.submit(ui_errors(h.ground), [state, expression, ground_src, clip_dd,
                                                device_dd, ground_combine, ground_temp,
                                                ground_margin, ground_contrast],
                          [state, ground_img, ground_table, ground_tree, ground_summary, timings],
                          **quiet, **model)
        label_btn.click(ui_errors(h.label), [state, classes, label_src, clip_dd, device_dd],
                        [state, annotated, label_table, timings], **quiet, **model)
        export_btn.click(ui_errors(h.export),
                         [state, clip_dd, sam_dd, device_dd, engine, iterations, lr, alpha,
                          resolution], [export_file], api_name="session_export", **hidden)
        # Choosing a model loads it in its own group, never on the shared model queue: a slow or
        # failing load (a model that cannot be had fails within seconds, see models/hub.py)
        # does not hold other sessions' model calls.
        loading = {"concurrency_id": "load", "concurrency_limit": 2}
        clip_dd.change(handlers.vocab_dropdown, [clip_dd, vocab_dd], [vocab_dd], **quiet,
                       queue=False, show_progress="hidden")
        clip_dd.input(ui_errors(h.clip_defaults), [clip_dd, device_dd],
                      [iterations, lr, alpha, resolution], api_name="session_clip_defaults",
                      **hidden, **loading)
    demo.queue(default_concurrency_limit=8)
    return demo


def launch_kwargs() -> dict:
    """Arguments for ``Blocks.launch`` (gradio 6: theme and css belong here). No
    ``allowed_paths``: the app serves only what its functions return (examples are sent as
    pixels), so not even ``assets/`` is exposed as files. Gradio keeps per-session state (the
    ``gr.State`` session, component values) for at most ``LIMITS.max_sessions`` sessions,
    least recently used dropped first (gradio's default is 10 000)."""
    from ..config import LIMITS

    return {"theme": theme(), "css": CSS, "state_session_capacity": LIMITS.max_sessions}
