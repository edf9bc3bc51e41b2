"""A catalogue of bad inputs across every endpoint (API, CLI and library).

Each case asserts the specific message of its rejection, then that the next valid request
still succeeds with a correct result (the server, the CLI process and the library keep going).
API cases run against one app per module (in-process on 127.0.0.1, bundled models).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

import regionlab  # noqa: E402
from regionlab.config import LIMITS  # noqa: E402
from regionlab.errors import InputError, ModelUnavailableError, RegionLabError  # noqa: E402

h = handle_file
SCENE = 24  # a red star, a red triangle, a blue circle, a purple triangle
LABELS = ["red star", "blue circle", "purple triangle"]


@dataclass
class Files:
    """Paths of the scene, its masks and every bad file of the catalogue."""

    root: Path
    scene: object
    image: str
    star: str
    masks: list[str]  # LABELS' masks, in order
    boxes: list[list[int]]  # every object's box, scene order
    star_index: int
    emb: str  # masked-crop embedding of the red star (1, 96)

    def path(self, name: str) -> str:
        return str(self.root / name)


def _save_mask(mask: np.ndarray, path: Path) -> str:
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return str(path)


def _obj(scene, label):
    return next(o for o in scene.objects if o.label == label)


def _read_mask(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 127


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    from regionlab.ui.examples import scene

    root = tmp_path_factory.mktemp("bad")
    sc = scene(SCENE)
    image = root / "scene.png"
    Image.fromarray(sc.image).save(image)
    masks = [_save_mask(_obj(sc, c).mask, root / f"m{i}.png") for i, c in enumerate(LABELS)]
    # bad images
    (root / "corrupt.png").write_bytes(b"this is not an image")
    data = image.read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "vector.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="9" '
                                     'height="9"></svg>')
    Image.new("1", (8000, 7000)).save(root / "big56.png")  # 56 MP: refused from its header
    Image.new("1", (14000, 13000)).save(root / "bomb182.png")  # PIL's decompression bomb
    # bad masks
    _save_mask(np.zeros((448, 448), bool), root / "empty_mask.png")
    _save_mask(np.ones((50, 100), bool), root / "wide_mask.png")
    (root / "corrupt_mask.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    # embeddings: good and bad
    clip = regionlab.load_clip()
    emb = regionlab.region_embeddings(clip, sc.image, [_obj(sc, "red star").mask],
                                      "masked-crop").detach().float().cpu().numpy()
    np.save(root / "emb.npy", emb)
    np.save(root / "dim50.npy", np.zeros((1, 50), np.float32))
    np.save(root / "nan.npy", np.full((1, 96), np.nan, np.float32))
    np.save(root / "cube.npy", np.zeros((2, 2, 96), np.float32))
    np.save(root / "many.npy", np.ones((LIMITS.max_masks + 1, 96), np.float32))
    np.save(root / "none.npy", np.zeros((0, 96), np.float32))
    np.save(root / "strings.npy", np.array([["a"] * 96]))
    np.save(root / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (root / "text.npy").write_text("0.1, 0.2, 0.3")
    (root / "pickle.npy").write_bytes(pickle.dumps({"evil": "payload"}))
    star = _obj(sc, "red star")
    assert star.mask[int(round(star.center[1])), int(round(star.center[0]))]
    return Files(root, sc, str(image), masks[0], masks, [list(o.box) for o in sc.objects],
                 [o.label for o in sc.objects].index("red star"), str(root / "emb.npy"))


@pytest.fixture(scope="module")
def client():
    from app_server import running_app

    with running_app() as demo:
        yield Client(demo.local_url, verbose=False)


# ------------------------------------------------------------------ valid follow-ups


def valid_segment(c: Client, f: Files) -> None:
    star = _obj(f.scene, "red star")
    x, y = (int(round(v)) for v in star.center)
    masks, info = c.predict(h(f.image), [[x, y, 1]], None, True, api_name="/segment")
    assert _iou(_read_mask(masks[0]), star.mask) > 0.9


def valid_retrieve(c: Client, f: Files) -> None:
    res = c.predict(h(f.emb), "shapes", "single", 2, api_name="/retrieve")
    assert res["top"][0][0]["label"] == "red star"


def valid_compare(c: Client, f: Files) -> None:
    res = c.predict(h(f.image), [h(f.star)], "shapes", ["masked-crop"], api_name="/compare")
    assert res["rows"][0]["masked-crop"]["label"] == "red star"


def valid_ground(c: Client, f: Files) -> None:
    _, res = c.predict(h(f.image), "the red star", f.boxes, api_name="/ground")
    assert res["index"] == f.star_index


def valid_label(c: Client, f: Files) -> None:
    _, _, res = c.predict(h(f.image), ", ".join(LABELS), [h(m) for m in f.masks],
                          api_name="/label")
    assert [r["label"] for r in res["regions"]] == LABELS


FOLLOW_UP = {"segment": valid_segment, "propose": valid_segment, "invert": valid_segment,
             "caption": valid_segment, "generate": valid_segment, "retrieve": valid_retrieve,
             "compare": valid_compare, "ground": valid_ground, "label": valid_label}


# ------------------------------------------------------------------------ API catalogue


def seg(image="image", points=((10, 10, 1),), box=None):
    return lambda f: [_img(f, image), _json(points), box, True]


def inv(masks=("star",), iterations=None, lr=None, alpha=None, resolution=None, engine="auto",
        image="image"):
    return lambda f: [_img(f, image), _masks(f, masks), iterations, lr, alpha, resolution,
                      engine]


def ret(emb="emb.npy", vocab="shapes", templates="single", top_k=3):
    return lambda f: [None if emb is None else h(f.path(emb)), vocab, templates, top_k]


def cmp(masks=("star",), vocab="shapes", methods=("masked-crop",), image="image"):
    return lambda f: [_img(f, image), _masks(f, masks), vocab, _json(methods)]


def gnd(expression="the red star", boxes="scene", image="image"):
    return lambda f: [_img(f, image), expression, f.boxes if boxes == "scene" else boxes]


def lab(classes=", ".join(LABELS), masks=("star",), image="image"):
    return lambda f: [_img(f, image), classes, _masks(f, masks)]


def cap(masks=("star",), image="image"):
    return lambda f: [_img(f, image), _masks(f, masks)]


def gen(masks=("star",), n=1, seed=0, steps=4, image="image"):
    return lambda f: [_img(f, image), _masks(f, masks), n, seed, steps]


def _img(f: Files, name):
    if name is None:
        return None
    return h(f.image if name == "image" else f.path(name))


def _masks(f: Files, names):
    return [h(f.star if m == "star" else f.path(m)) for m in names]


def _json(value):
    if isinstance(value, tuple):
        return [list(v) if isinstance(v, tuple) else v for v in value]
    return value


MANY = ", ".join(f"class {i}" for i in range(LIMITS.max_classes + 1))
API_CASES = [
    # images (decoded by regionlab.inputs.load_image behind every endpoint)
    ("image-corrupt", "segment", seg("corrupt.png"),
     "cannot decode image: not a recognised image format"),
    ("image-truncated", "segment", seg("truncated.png"), "cannot decode image: .*truncated"),
    ("image-zero-bytes", "segment", seg("empty.png"), "cannot decode image"),
    ("image-svg", "segment", seg("vector.svg"), "not a recognised image format"),
    ("image-56-megapixels", "segment", seg("big56.png"),
     r"8000x7000 \(56.0 megapixels\); the limit is 50 megapixels"),
    ("image-decompression-bomb", "segment", seg("bomb182.png"),
     "too large to decode; the limit is 50 megapixels"),
    ("image-missing", "segment", seg(None), "no image given"),
    ("image-corrupt-invert", "invert", inv(image="corrupt.png"), "cannot decode image"),
    ("image-missing-label", "label", lab(image=None), "no image given"),
    ("image-too-big-ground", "ground", gnd(image="big56.png"), "the limit is 50 megapixels"),
    ("image-truncated-compare", "compare", cmp(image="truncated.png"), "cannot decode image"),
    ("image-corrupt-propose", "propose", lambda f: [h(f.path("corrupt.png")), 5],
     "cannot decode image"),
    # clicks and boxes
    ("point-outside", "segment", seg(points=((5000, 3, 1),)), r"point x must lie in \[0, 447\]"),
    ("point-label", "segment", seg(points=((10, 10, 2),)), r"point label must lie in \[0, 1\]"),
    ("point-two-numbers", "segment", seg(points=((10, 10),)),
     r"a point is \[x, y, label\], got \[10, 10\]"),
    ("points-flat", "segment", seg(points=(1, 2, 3)), r"a point is \[x, y, label\], got 1"),
    ("point-not-number", "segment", seg(points=(("a", 2, 1),)),
     "point x must be a number, got 'a'"),
    ("points-bad-json", "segment", seg(points="[[1, 2"), "points is not valid JSON"),
    ("points-too-many", "segment", seg(points=((5, 5, 1),) * 65),
     "65 points given; the limit is 64"),
    ("no-click-no-box", "segment", seg(points=()), "give at least one click or a box"),
    ("box-empty", "segment", seg(points=(), box=[10, 10, 10, 50]),
     r"the box \[10, 10, 10, 50\] is empty"),
    ("box-three-numbers", "segment", seg(points=(), box=[1, 2, 3]),
     r"a box is \[x0, y0, x1, y1\]"),
    ("box-object", "segment", seg(points=(), box={"x": 1}), "box must be a JSON list, got dict"),
    ("proposals-zero", "propose", lambda f: [h(f.image), 0],
     r"max proposals must lie in \[1, 200\]"),
    ("proposals-too-many", "propose", lambda f: [h(f.image), 100000],
     r"max proposals must lie in \[1, 200\]"),
    # masks and MaskInversion settings
    ("masks-none", "invert", inv(masks=()), "no masks given"),
    ("mask-empty", "invert", inv(masks=("empty_mask.png",)), "mask 0 is empty"),
    ("mask-other-aspect", "invert", inv(masks=("wide_mask.png",)),
     "mask 0 is 100x50 but the image is 448x448"),
    ("mask-corrupt", "invert", inv(masks=("corrupt_mask.png",)), "cannot decode mask 0"),
    ("masks-too-many", "invert", inv(masks=("star",) * (LIMITS.max_masks + 1)),
     f"{LIMITS.max_masks + 1} masks given; the limit is {LIMITS.max_masks} per call"),
    ("iterations-huge", "invert", inv(iterations=99999), r"iterations must lie in \[0, 500\]"),
    ("lr-negative", "invert", inv(lr=-1), "lr must lie in"),
    ("alpha-huge", "invert", inv(alpha=1e6), r"alpha must lie in \[0, 100.0\]"),
    ("resolution-huge", "invert", inv(resolution=4096), r"resolution must lie in \[32, 1024\]"),
    ("resolution-tiny", "invert", inv(resolution=8), r"resolution must lie in \[32, 1024\]"),
    ("engine-unknown", "invert", inv(engine="turbo"), "turbo is not in the list of choices"),
    # embeddings and vocabularies
    ("embeddings-missing", "retrieve", ret(emb=None), "no embeddings file given"),
    ("embeddings-text", "retrieve", ret(emb="text.npy"), "not a .npy array"),
    ("embeddings-pickle", "retrieve", ret(emb="pickle.npy"), "not a .npy array"),
    ("embeddings-object-array", "retrieve", ret(emb="objects.npy"),
     "cannot read the embeddings file as .npy"),
    ("embeddings-dim", "retrieve", ret(emb="dim50.npy"),
     "embedding dimension 50 does not match model 'shapes-clip' \\(96\\)"),
    ("embeddings-nan", "retrieve", ret(emb="nan.npy"), "embeddings must be a finite"),
    ("embeddings-3d", "retrieve", ret(emb="cube.npy"), r"got shape \(2, 2, 96\)"),
    ("embeddings-zero-rows", "retrieve", ret(emb="none.npy"), r"got shape \(0, 96\)"),
    ("embeddings-too-many", "retrieve", ret(emb="many.npy"),
     f"{LIMITS.max_masks + 1} embeddings given; the limit is {LIMITS.max_masks}"),
    ("embeddings-strings", "retrieve", ret(emb="strings.npy"), "embeddings must be real numbers"),
    ("vocab-empty", "retrieve", ret(vocab=""), "the vocabulary is empty"),
    ("vocab-duplicate", "retrieve", ret(vocab="cat, dog, Cat"), "duplicate class name 'Cat'"),
    ("vocab-too-many", "retrieve", ret(vocab=MANY),
     f"{LIMITS.max_classes + 1} classes given; the limit is {LIMITS.max_classes}"),
    ("vocab-long-name", "retrieve", ret(vocab="x" * 101),
     "class name has 101 characters; the limit is 100"),
    ("vocab-only-commas", "retrieve", ret(vocab=" , , "), "the class list is empty"),
    ("top-k-huge", "retrieve", ret(top_k=1000), r"top k must lie in \[1, 100\]"),
    ("templates-unknown", "retrieve", ret(templates="poetry"),
     "poetry is not in the list of choices"),
    # compare
    ("method-unknown", "compare", cmp(methods=("telepathy",)),
     r"unknown method\(s\) \['telepathy'\]"),
    ("methods-not-json", "compare", cmp(methods="masked-crop"), "methods is not valid JSON"),
    ("compare-vocab-empty", "compare", cmp(vocab="  "), "the vocabulary is empty"),
    ("compare-second-mask-empty", "compare", cmp(masks=("star", "empty_mask.png")),
     "mask 1 is empty"),
    # grounding
    ("expression-empty", "ground", gnd(expression="   "), "expression is empty"),
    ("expression-control-chars", "ground", gnd(expression="\x00\x07\x1b\u200b"),
     "expression is empty"),
    ("expression-too-long", "ground", gnd(expression="red " * 150),
     "expression has 599 characters; the limit is 500"),
    ("boxes-too-many", "ground", gnd(boxes=[[0, 0, 10, 10]] * 201),
     "201 boxes given; the limit is 200"),
    ("box-outside", "ground", gnd(boxes=[[5000, 5000, 6000, 6000]]),
     r"box x must lie in \[0, 448\]"),
    ("box-degenerate", "ground", gnd(boxes=[[20, 20, 20, 90]]), "is empty"),
    ("boxes-bad-json", "ground", gnd(boxes="[[0, 0, 5"), "boxes is not valid JSON"),
    # labelling
    ("classes-empty", "label", lab(classes=""), "the class list is empty"),
    ("classes-duplicate", "label", lab(classes="red star, Red  Star"),
     "duplicate class name 'Red Star'"),
    ("classes-control-chars", "label", lab(classes="red star, \x00\x01"), "class name is empty"),
    ("label-mask-other-aspect", "label", lab(masks=("wide_mask.png",)),
     "mask 0 is 100x50 but the image is 448x448"),
    # captions and generation: rejected before any model is loaded
    ("caption-no-masks", "caption", cap(masks=()), "no masks given"),
    ("caption-empty-mask", "caption", cap(masks=("empty_mask.png",)), "mask 0 is empty"),
    ("generate-n-zero", "generate", gen(n=0), r"n \(number of images\) must lie in \[1, 8\]"),
    ("generate-steps-huge", "generate", gen(steps=10000), r"steps must lie in \[1, 200\]"),
    ("generate-seed-negative", "generate", gen(seed=-5), "seed must lie in"),
    ("generate-no-masks", "generate", gen(masks=()), "no masks given"),
]


@pytest.mark.parametrize("endpoint, build, message",
                         [pytest.param(e, b, m, id=i) for i, e, b, m in API_CASES])
def test_api_rejects_and_keeps_serving(client, files, endpoint, build, message):
    with pytest.raises(Exception, match=message) as info:
        client.predict(*build(files), api_name=f"/{endpoint}")
    assert "internal error" not in str(info.value)
    FOLLOW_UP[endpoint](client, files)


def test_no_endpoint_reads_a_server_path(client, files):
    """A vocabulary that looks like a file is a class name, never read from the disk."""
    res = client.predict(h(files.emb), "/etc/passwd.txt", "single", 1, api_name="/retrieve")
    assert res["top"][0][0]["label"] == "/etc/passwd.txt"
    res = client.predict(h(files.emb), "/etc/hostname.txt, red star", "single", 1,
                         api_name="/retrieve")
    assert res["top"][0][0]["label"] == "red star"


@pytest.mark.parametrize("target", ["/etc/passwd", "assets/models/shapes_clip.json",
                                    "scene.png", "app.py"])
def test_no_server_file_is_served(client, files, target):
    """Only files the endpoints returned are downloadable (no ``allowed_paths``)."""
    import urllib.error
    import urllib.request

    root = Path(__file__).resolve().parents[1]
    path = {"scene.png": files.image, "/etc/passwd": "/etc/passwd"}.get(target,
                                                                       str(root / target))
    assert Path(path).is_file()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{client.src.rstrip('/')}/gradio_api/file={path}", timeout=10)
    assert info.value.code in (403, 404)
    valid_segment(client, files)


def test_hf_token_is_never_logged(files, monkeypatch, caplog, capsys):
    import logging

    from regionlab.models import list_models
    from regionlab.ui.options import resolve_options

    secret = "hf_SENTINELsecretTOKEN0123456789"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    text = [str(m) for m in list_models()]
    text += list(resolve_options(clip="ViT-B-16@hf-hub:someone/private-model").notices)
    rc, out, err = _cli(["-v", "regions", files.image, "--mask", files.star, "--method",
                         "masked-crop", "--model", "ViT-B-16@hf-hub:someone/private"], capsys)
    assert rc == 2 and "private" in err  # the failure is reported, without the token
    logged = "\n".join(text) + caplog.text + out + err
    assert secret not in logged


def test_out_of_memory_is_reported_and_the_server_recovers(client, files, monkeypatch):
    import torch

    import regionlab.region.maskinversion as mi

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(mi, "invert", oom)
    with pytest.raises(Exception, match="GPU out of memory: lower the resolution or the number "
                                        "of regions"):
        client.predict(*inv()(files), api_name="/invert")
    monkeypatch.setattr(mi, "invert", lambda *a, **k: {}["no such key"])
    with pytest.raises(Exception, match=r"internal error \(KeyError\)"):
        client.predict(*inv()(files), api_name="/invert")
    monkeypatch.undo()
    emb, maps, info = client.predict(*inv()(files), api_name="/invert")
    assert np.load(emb).shape == (1, 96) and info["losses"][-1] < info["losses"][0]


AWKWARD = ["16-bit", "cmyk-jpeg", "palette", "rgba", "exif-rotated", "animated-gif"]


def _awkward(image: np.ndarray, kind: str, path: Path) -> str:
    im = Image.fromarray(image)
    if kind == "16-bit":  # greyscale 16 bit: the red star stays distinct from its background
        grey = np.asarray(im.convert("L"), np.uint16) * 257
        Image.fromarray(grey).save(path.with_suffix(".png"))
        return str(path.with_suffix(".png"))
    if kind == "cmyk-jpeg":
        im.convert("CMYK").save(path.with_suffix(".jpg"), quality=95)
        return str(path.with_suffix(".jpg"))
    if kind == "palette":
        im.quantize(64).save(path.with_suffix(".png"))
    elif kind == "rgba":
        im.convert("RGBA").save(path.with_suffix(".png"))
    elif kind == "exif-rotated":  # stored rotated; EXIF orientation 6 turns it back
        exif = Image.Exif()
        exif[0x0112] = 6
        im.transpose(Image.Transpose.ROTATE_90).save(path.with_suffix(".jpg"), quality=95,
                                                     exif=exif.tobytes())
        return str(path.with_suffix(".jpg"))
    elif kind == "animated-gif":
        black = Image.new("RGB", im.size)
        im.save(path.with_suffix(".gif"), save_all=True, append_images=[black], duration=100)
        return str(path.with_suffix(".gif"))
    return str(path.with_suffix(".png"))


@pytest.mark.parametrize("kind", AWKWARD)
def test_awkward_images_are_decoded_through_the_api(client, files, kind):
    star = _obj(files.scene, "red star")
    path = _awkward(files.scene.image, kind, files.root / f"awkward_{kind}")
    x, y = (int(round(v)) for v in star.center)
    masks, _ = client.predict(h(path), [[x, y, 1]], None, True, api_name="/segment")
    assert _iou(_read_mask(masks[0]), star.mask) > 0.85, kind


def test_canvas_upload_reaches_the_validation_layer(files):
    """The UI canvas (``raw_image``) hands the uploaded file itself to ``load_image``: a
    16-bit PNG keeps its grey levels (gradio's own RGB conversion saturates it to white) and
    a corrupt file is a specific ``gr.Error``."""
    import gradio as gr
    from gradio.data_classes import ImageData

    from regionlab.ui.components import raw_image
    from regionlab.ui.handlers import on_image_input

    canvas = raw_image()
    sixteen = _awkward(files.scene.image, "16-bit", files.root / "canvas16")
    path = canvas.preprocess(ImageData(path=sixteen, orig_name="canvas16.png"))
    assert path == sixteen
    session = on_image_input(path, None)[0]
    grey = np.asarray(Image.fromarray(files.scene.image).convert("L"))
    assert session.image.shape == (448, 448, 3) and np.array_equal(session.image[..., 0], grey)
    with pytest.raises(gr.Error, match="cannot decode image: not a recognised image format"):
        canvas.preprocess(ImageData(path=files.path("corrupt.png"), orig_name="corrupt.png"))
    with pytest.raises(gr.Error, match="too large to decode; the limit is 50 megapixels"):
        canvas.preprocess(ImageData(path=files.path("bomb182.png"), orig_name="bomb.png"))


def test_one_pixel_image(client, files):
    path = files.root / "pixel.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(path)
    masks, info = client.predict(h(str(path)), [[0, 0, 1]], None, False, api_name="/segment")
    assert _read_mask(masks[0]).shape == (1, 1)
    valid_segment(client, files)


def test_full_invert_after_the_catalogue(client, files):
    """After every rejection above, the full MaskInversion path still gives the right colour."""
    emb, maps, info = client.predict(h(files.image), [h(files.star)], None, None, None, None,
                                     "auto", api_name="/invert")
    assert np.load(emb).shape == (1, 96) and len(maps) == 1
    res = client.predict(h(emb), "shapes", "single", 1, api_name="/retrieve")
    assert res["top"][0][0]["label"].startswith("red ")


# --------------------------------------------------------------------------- CLI cases


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from regionlab.cli import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _cli_valid(files: Files, capsys) -> None:
    rc, out, _ = _cli(["regions", files.image, "--mask", files.star, "--method", "masked-crop",
                       "--top-k", "1", "--json"], capsys)
    assert rc == 0 and json.loads(out)["regions"][0]["top"][0]["label"] == "red star"


CLI_CASES = [
    ("cli-corrupt-image", lambda f: ["regions", f.path("corrupt.png"), "--mask", f.star],
     "cannot decode image"),
    ("cli-missing-image", lambda f: ["regions", f.path("nope.png"), "--mask", f.star],
     "image file not found"),
    ("cli-huge-image", lambda f: ["regions", f.path("big56.png"), "--mask", f.star],
     "the limit is 50 megapixels"),
    ("cli-empty-mask", lambda f: ["regions", f.image, "--mask", f.path("empty_mask.png")],
     "mask 0 is empty"),
    ("cli-iterations", lambda f: ["regions", f.image, "--mask", f.star, "--iterations", "99999"],
     r"iterations must lie in \[0, 500\]"),
    ("cli-duplicate-vocab", lambda f: ["regions", f.image, "--mask", f.star, "--method",
                                       "masked-crop", "--vocab", "cat, CAT"],
     "duplicate class name 'CAT'"),
    ("cli-empty-expression", lambda f: ["ground", f.image, "  \t "], "expression is empty"),
    ("cli-empty-classes", lambda f: ["label", f.image, "--classes", " , ", "--mask", f.star,
                                     "--out", f.path("map.png")], "the class list is empty"),
]


@pytest.mark.parametrize("argv, message", [pytest.param(a, m, id=i) for i, a, m in CLI_CASES])
def test_cli_rejects_with_a_message_and_exit_code(files, capsys, argv, message):
    import re

    rc, out, err = _cli(argv(files), capsys)
    assert rc == 2
    assert re.search(message, err), err
    _cli_valid(files, capsys)


def test_cli_manifest_bad_line_then_good_line(files, capsys, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in [
        {"image": files.path("truncated.png"), "masks": [files.star]},
        {"image": files.image, "masks": [files.star], "method": "masked-crop", "top_k": 1},
    ]))
    rc, out, _ = _cli(["regions", "--manifest", str(manifest), "--json"], capsys)
    first, second = (json.loads(line) for line in out.splitlines())
    assert rc == 1 and "cannot decode image" in first["error"]
    assert second["regions"][0]["top"][0]["label"] == "red star"


# ----------------------------------------------------------------------- library cases


def _lib_valid(files: Files) -> None:
    clip = regionlab.load_clip()
    emb = regionlab.region_embeddings(clip, files.image, [files.star], "masked-crop")
    assert regionlab.retrieve(emb, "shapes", clip=clip, top_k=1)[0][0]["label"] == "red star"


def _star(f: Files):
    return [_read_mask(f.star)]


LIB_CASES = [
    ("lib-empty-mask", lambda f, c: regionlab.invert(c, f.image, [np.zeros((448, 448), bool)]),
     InputError, "mask 0 is empty"),
    ("lib-mask-dtype", lambda f, c: regionlab.invert(c, f.image, [np.full((448, 448), "x")]),
     InputError, "mask 0 has unsupported dtype"),
    ("lib-mask-3d", lambda f, c: regionlab.invert(c, f.image, [np.ones((2, 448, 448, 2))]),
     InputError, "mask 0 must be a 2-D array"),
    ("lib-resolution", lambda f, c: regionlab.invert(c, f.image, _star(f), resolution=5000),
     InputError, r"resolution must lie in \[32, 1024\]"),
    ("lib-lr-nan", lambda f, c: regionlab.invert(c, f.image, _star(f), lr=float("nan")),
     InputError, "lr must be finite"),
    ("lib-image-array", lambda f, c: regionlab.invert(c, np.zeros((4, 4, 5)), _star(f)),
     InputError, r"image array must be HxW, HxWx3 or HxWx4, got shape \(4, 4, 5\)"),
    ("lib-method", lambda f, c: regionlab.region_embeddings(c, f.image, _star(f), "telepathy"),
     InputError, "unknown region method 'telepathy'"),
    ("lib-duplicate-classes", lambda f, c: regionlab.retrieve(np.zeros((1, 96)), ["a", "A"],
                                                             clip=c),
     InputError, "duplicate class name 'A'"),
    ("lib-embedding-dim", lambda f, c: regionlab.retrieve(np.zeros((1, 50)), "shapes", clip=c),
     InputError, "embedding dimension 50"),
    ("lib-expression", lambda f, c: regionlab.ground(f.image, "\x00", proposals=f.boxes,
                                                     models=[c]),
     InputError, "expression is empty"),
    ("lib-label-no-classes", lambda f, c: regionlab.label(f.image, [], masks=_star(f), clip=c),
     InputError, "the class list is empty"),
    ("lib-unknown-model", lambda f, c: regionlab.load_clip("no-such-clip"),
     ModelUnavailableError, "unknown clip model 'no-such-clip'"),
]


@pytest.mark.parametrize("call, error, message",
                         [pytest.param(c, e, m, id=i) for i, c, e, m in LIB_CASES])
def test_library_raises_typed_errors(files, call, error, message):
    with pytest.raises(error, match=message) as info:
        call(files, regionlab.load_clip())
    assert isinstance(info.value, RegionLabError)
    if error is InputError:
        assert isinstance(info.value, ValueError)  # plain ``except ValueError`` also works
    _lib_valid(files)


def test_catalogue_size():
    assert len(API_CASES) + len(CLI_CASES) + 1 + len(LIB_CASES) >= 40
    assert len({c[0] for c in API_CASES + CLI_CASES + LIB_CASES}) == (
        len(API_CASES) + len(CLI_CASES) + len(LIB_CASES))
    assert {c[1] for c in API_CASES} == set(FOLLOW_UP)  # every endpoint has bad inputs
