"""The app's plain helpers (no server): session, regions, export, examples, validation."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from regionlab.errors import InputError
from regionlab.ui import examples
from regionlab.ui.adapters import safe_vocab
from regionlab.ui.export import build_zip
from regionlab.ui.options import AppOptions, check_model
from regionlab.ui.service import check_box, check_points, thin_history
from regionlab.ui.session import Session


def _session() -> Session:
    s = Session()
    s.set_image(np.zeros((20, 30, 3), np.uint8), "test")
    return s


def _mask(y0, y1, x0, x1, shape=(20, 30)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_regions_add_rename_delete_clear():
    s = _session()
    a = s.add_region(_mask(0, 5, 0, 5), "click")
    b = s.add_region(_mask(5, 9, 5, 9), "brush")
    assert s.names() == ["region 1", "region 2"] and s.active == 1
    assert a.colour != b.colour
    s.rename("region 1", "star")
    with pytest.raises(InputError, match="already exists"):
        s.rename("region 2", "star")
    with pytest.raises(InputError, match="wrong|image is"):
        s.add_region(np.ones((5, 5), bool), "click")
    s.delete("star")
    assert s.names() == ["region 2"]
    s.clear_regions()
    with pytest.raises(InputError, match="no regions"):
        s.masks()
    with pytest.raises(InputError, match="no region named"):
        s.select("nope")


def test_new_image_drops_everything():
    s = _session()
    s.add_region(_mask(0, 5, 0, 5), "click")
    s.results["invert"] = {"x": 1}
    s.set_image(np.zeros((8, 8, 3), np.uint8), "other")
    assert s.regions == [] and s.results == {} and s.active is None


def test_points_and_boxes_are_checked_against_the_image():
    assert check_points([(3, 4, 1), (0.4, 2.6, 0)], (10, 10)) == [(3, 4, 1), (0, 3, 0)]
    with pytest.raises(InputError, match="point x"):
        check_points([(10, 0, 1)], (10, 10))
    with pytest.raises(InputError, match="label"):
        check_points([(1, 1, 2)], (10, 10))
    assert check_box([8, 9, 2, 1], (10, 10)) == (2, 1, 8, 9)
    with pytest.raises(InputError, match="empty"):
        check_box([2, 2, 2, 5], (10, 10))
    assert check_box(None, (10, 10)) is None


def test_vocabularies_never_read_paths():
    assert safe_vocab("COCO") == "coco"
    assert safe_vocab("cat, dog") == ["cat", "dog"]
    assert safe_vocab("/etc/hosts.txt") == ["/etc/hosts.txt"]  # a (strange) class name
    with pytest.raises(InputError, match="empty"):
        safe_vocab("  ")
    with pytest.raises(InputError, match="duplicate"):
        safe_vocab("cat, CAT")


def test_model_names_from_users_must_be_registered():
    opts = AppOptions()
    assert check_model("clip", "", opts) == "shapes-clip"
    assert check_model("clip", "ViT-B-16@openai", opts) == "ViT-B-16@openai"
    assert check_model("sam", "classical", opts) == "classical"
    with pytest.raises(InputError, match="unknown clip model"):
        check_model("clip", "ViT-B-16@/etc/passwd", opts)


def test_thin_history_bounds_frames_and_size():
    hist = [np.full((2, 256, 256), i, np.float16) for i in range(100)]
    frames, its = thin_history(hist, max_frames=10, max_side=64)
    assert len(frames) == 10 and its[0] == 0 and its[-1] == 99
    assert frames[0].shape == (2, 64, 64) and frames[0].dtype == np.float16
    assert float(frames[-1][0, 0, 0]) == 99
    assert thin_history([]) == ([], [])


def test_export_zip_holds_json_masks_overlays_and_embeddings():
    s = _session()
    s.add_region(_mask(0, 5, 0, 5), "click", name="a/b")
    s.results["invert"] = {"names": ["a/b"], "embeddings": np.ones((1, 4), np.float32),
                           "maps": np.zeros((1, 20, 30)), "top": [[{"label": "x", "score": 1}]],
                           "losses": [0.5, 0.2]}
    with zipfile.ZipFile(io.BytesIO(build_zip(s, {"lr": 0.1}))) as zf:
        names = zf.namelist()
        doc = json.loads(zf.read("results.json"))
        mask = np.asarray(Image.open(zf.open("regions/00_a_b_mask.png"))) > 127
        emb = np.load(io.BytesIO(zf.read("embeddings.npy")))
    assert {"image.png", "overlay.png", "regions/00_a_b_overlay.png",
            "heatmaps/00_after.png"} <= set(names)
    assert mask.sum() == 25 and emb.shape == (1, 4)
    assert doc["regions"][0]["name"] == "a/b" and doc["settings"] == {"lr": 0.1}
    assert doc["results"]["invert"]["losses"] == [0.5, 0.2]
    with pytest.raises(InputError, match="no image"):
        build_zip(Session())


def test_examples_are_deterministic_and_photos_have_masks():
    a, b = examples.load_example("scene:24"), examples.load_example("scene:24")
    assert np.array_equal(a.image, b.image) and a.image.shape == (448, 448, 3)
    with pytest.raises(InputError):
        examples.load_example("scene:-3")
    with pytest.raises(InputError, match="unknown example"):
        examples.load_example("file:/etc/passwd")
    if examples.photos_available():
        cat = examples.load_example("photo:chelsea")
        assert [n for n, _ in cat.regions] == ["cat"]
        assert cat.regions[0][1].shape == cat.image.shape[:2]


def test_unavailable_clip_falls_back_with_a_visible_notice():
    from regionlab.ui import build_app, resolve_options

    opts = resolve_options(clip="ViT-B-16@/nonexistent/weights.pt", sam="sam-vit-h")
    assert opts.clip == "shapes-clip" and opts.sam is None
    assert any("ViT-B-16@/nonexistent/weights.pt" in n for n in opts.notices)
    assert any("sam-vit-h" in n for n in opts.notices)
    demo = build_app(opts)
    shown = " ".join(str(c.get("props", {}).get("value", "")) for c in demo.config["components"])
    for notice in opts.notices:
        assert notice in shown


def test_session_keeps_a_small_maskinversion_cache_that_reproduces_results():
    """The session keeps the last block's input, not the factorized engine's factors; a second
    inversion on the same image from that cache gives the same embeddings."""
    from regionlab.ui import service

    sc = examples.scene(24)
    masks = np.stack([o.mask for o in sc.objects[:2]])
    first = service.invert(sc.image, masks, clip="shapes-clip", device="cpu",
                           engine="factorized")
    cache = first.cache
    assert cache is not None and cache.factors is None
    again = service.invert(sc.image, masks, clip="shapes-clip", device="cpu",
                           engine="factorized", cache=cache)
    assert np.allclose(again.embeddings, first.embeddings, atol=1e-6)
    assert cache.factors is None  # the session's copy is never filled in place


def test_grounding_labels_never_overlap_when_there_is_room():
    """Issue 26: proposal labels on the grounding picture are placed without overlap."""
    from regionlab.ui.draw import place_labels

    rng = np.random.default_rng(0)
    for _ in range(50):
        boxes = []
        for _ in range(int(rng.integers(2, 9))):
            x0, y0 = rng.integers(0, 300, 2)
            boxes.append([x0, y0, x0 + rng.integers(20, 120), y0 + rng.integers(20, 120)])
        sizes = [(40, 12)] * len(boxes)
        spots = place_labels(boxes, sizes, (448, 448))
        rects = [(x, y, x + w, y + h) for (x, y), (w, h) in zip(spots, sizes)]
        for i, a in enumerate(rects):
            assert 0 <= a[0] and a[2] <= 448 and 0 <= a[1] and a[3] <= 448
            for b in rects[:i]:
                assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])


def test_grounding_view_shows_every_chosen_box_and_a_sorted_table():
    from regionlab.tasks.reclip import embed_proposals, ground_features, proposals_from_boxes
    from regionlab.ui import examples
    from regionlab.ui.handlers import grounding_view

    sc = examples.scene(24)
    boxes = np.asarray([o.box for o in sc.objects], float)
    feats = embed_proposals(sc.image, proposals_from_boxes(boxes, sc.image.shape[:2]))
    res = ground_features(feats, "the two shapes on the left")
    view = grounding_view(sc.image, res)
    assert len(res.indices) == 2 and "**" in view["summary"]
    assert list(view["table"]["probability"]) == sorted(view["table"]["probability"],
                                                       reverse=True)
    assert "tree used: yes" in view["tree"] and view["image"].shape == sc.image.shape


def test_grounding_view_shows_how_each_candidate_reads_the_head_phrase():
    """Example scene 19, "the biggest circle": the answer is the orange square, which reads
    as "the square"; the table says so for every candidate and the summary warns."""
    from regionlab.tasks.reclip import embed_proposals, ground_features, proposals_from_boxes
    from regionlab.ui import examples
    from regionlab.ui.handlers import grounding_view

    sc = examples.scene(19)
    boxes = np.asarray([o.box for o in sc.objects], float)
    feats = embed_proposals(sc.image, proposals_from_boxes(boxes, sc.image.shape[:2]))
    res = ground_features(feats, "the biggest circle")
    view = grounding_view(sc.image, res)
    column = view["table"]["reads as"]
    shown = dict(zip(view["table"]["proposal"], column))
    labels = [o.label for o in sc.objects]
    assert shown[labels.index("purple circle")].startswith("the circle (+")
    assert shown[labels.index("blue star")].startswith("the star (-")
    if res.answer_reading["deficit"] < -2:  # the known miss (issue 26): it must be flagged
        assert "looks more like" in view["summary"]


def test_grounding_view_marks_candidates_the_objectness_filter_left_out():
    """A fake result with three automatic candidates, the middle one left out: the table says
    so and only the other two are drawn."""
    from regionlab.tasks.reclip import GroundingResult, Proposals
    from regionlab.ui.handlers import grounding_view

    image = np.full((60, 90, 3), 255, np.uint8)
    boxes = np.array([[0, 0, 20, 20], [30, 0, 60, 60], [70, 40, 90, 60]], float)
    res = GroundingResult(index=2, box=list(boxes[2]), mask=None, indices=[2],
                          probs=[0.3, 0.0, 0.7], ips_probs=[0.3, 0.0, 0.7], node_probs={},
                          tree=None, used_tree=False, expression="x", scorer="ips", models=[],
                          proposals=Proposals(boxes, source="automatic"), timing={},
                          objects=[True, False, True])
    view = grounding_view(image, res)
    shown = dict(zip(view["table"]["proposal"], view["table"]["object?"]))
    assert shown == {0: "yes", 1: "left out (see the note)", 2: "yes"}
    assert (view["image"][30:58, 30:32] == 255).all()  # the left-out box's edge: not drawn
    assert (view["image"][45:55, 70] != 255).any()  # the others are


def test_add_proposals_leaves_out_what_reads_as_no_object(bundled_clip):
    """"Add proposals" with the bundled CLIP on an OpenCV-renderer scene (textured
    background): the background tiles the class-agnostic engine proposes are left out, with a
    notice, and every object is still added."""
    from regionlab.segment.proposals import mask_iou_matrix
    from regionlab.shapes.renderers import render
    from regionlab.shapes.scenes import RenderOptions, split_seed
    from regionlab.ui import service

    sc = render("cv", split_seed("test", 0), RenderOptions(size=448))
    plain_out = service.propose(sc.image, method="classical", max_regions=8)
    kept_out = service.propose(sc.image, method="classical", max_regions=8, clip="shapes-clip")
    plain, kept, notices = plain_out.regions, kept_out.regions, [kept_out.notice]
    assert plain_out.notice is None
    objects = np.stack([o.mask for o in sc.objects])

    def objects_added(props):
        masks = np.stack([q["mask"] for q in props])
        return mask_iou_matrix(np.concatenate([masks, objects]))[:len(masks), len(masks):] > 0.5

    assert len(kept) < len(plain) and "left out" in notices[0]
    assert objects_added(kept).any(1).all()  # everything added is an object
    assert objects_added(kept).any(0).all()  # and every object is added
    assert not objects_added(plain).any(1).all()  # class-agnostic: background tiles too


def test_add_proposals_tells_what_it_left_out(bundled_clip, monkeypatch):
    """The handler shows the objectness notice from the returned outcome (so it also reaches
    the user on ZeroGPU, where the service call runs in another process)."""
    from regionlab.shapes.renderers import render
    from regionlab.shapes.scenes import RenderOptions, split_seed
    from regionlab.ui import handlers
    from regionlab.ui.options import AppOptions
    from regionlab.ui.session import Session

    shown: list[str] = []
    monkeypatch.setattr(handlers.gr, "Info", lambda msg, *a, **k: shown.append(msg))
    s = Session()
    s.set_image(render("cv", split_seed("test", 0), RenderOptions(size=448)).image, "cv")
    handlers.on_proposals(s, 8, "classical", "shapes-clip", options=AppOptions(),
                          progress=lambda *a, **k: None)
    assert len(shown) == 1 and "left out" in shown[0] and s.regions


def test_add_proposals_accepts_only_registered_model_names():
    from regionlab.errors import InputError
    from regionlab.ui.handlers import on_proposals
    from regionlab.ui.options import AppOptions
    from regionlab.ui.session import Session

    s = Session()
    s.set_image(np.zeros((32, 32, 3), np.uint8), "black")
    with pytest.raises(InputError, match="unknown sam model"):
        on_proposals(s, 8, "vit_b@/tmp/x.pth", options=AppOptions(),
                     progress=lambda *a, **k: None)
    with pytest.raises(InputError, match="unknown clip model"):
        on_proposals(s, 8, "classical", "ViT-B-16@/tmp/x.bin", options=AppOptions(),
                     progress=lambda *a, **k: None)


def test_add_proposals_does_not_duplicate_regions():
    from regionlab.ui.handlers import new_regions

    a = np.zeros((20, 20), bool)
    a[2:10, 2:10] = True
    b = np.zeros((20, 20), bool)
    b[12:18, 12:18] = True
    a_shifted = np.roll(a, 1, axis=1)  # IoU 0.78 with a
    assert new_regions([a, b, a_shifted], []) == [0, 1]  # a duplicate among the candidates
    assert new_regions([a_shifted, b], [a]) == [1]  # one the user already has
    assert new_regions([a, b], [a, b]) == []


def test_caption_disagreements_name_the_region_and_both_answers():
    from regionlab.ui.handlers import caption_disagreements

    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4], masks[1, 4:] = True, True
    invert = {"names": ["region 1", "region 2"], "masks": masks.copy(), "vocab": "shapes",
              "top": [[{"label": "red star", "score": 0.61}],
                      [{"label": "blue circle", "score": 0.97}]]}
    notes = caption_disagreements(["region 1", "region 2"], masks,
                                  ["a red cross.", "a blue circle"], invert)
    assert len(notes) == 1
    assert notes[0].startswith("region 1:") and "'red cross'" in notes[0]
    assert "'red star' (0.61)" in notes[0] and "unsure" in notes[0]
    from regionlab.ui.handlers import DISAGREEMENT_MEASURED

    assert "held-out" not in notes[0]  # no measured rates for an unknown captioner
    quoted = caption_disagreements(["region 1", "region 2"], masks,
                                   ["a red cross.", "a blue circle"], invert,
                                   DISAGREEMENT_MEASURED)
    assert "retrieval was right 31% of the time and the caption 62%" in quoted[0]
    # free text naming no class of the vocabulary, other masks, or no MaskInversion run: quiet
    assert caption_disagreements(["region 1", "region 2"], masks,
                                 ["a man riding a horse", "a blue circle"], invert) == []
    assert caption_disagreements(["region 1", "region 2"], ~masks,
                                 ["a red cross", "a blue circle"], invert) == []
    assert caption_disagreements(["region 1", "region 2"], masks,
                                 ["a red cross", "a blue circle"], None) == []


def test_crosscheck_notes_when_maskinversion_and_the_masked_crop_disagree():
    from regionlab.ui.handlers import CROSSCHECK_MEASURED, crosscheck_notes

    top = [[{"label": "orange circle", "score": 0.42}], [{"label": "red star", "score": 0.99}]]
    crop = [{"label": "orange square", "score": 0.97}, {"label": "red star", "score": 1.0}]
    notes = crosscheck_notes(["region 1", "region 2"], top, crop)
    assert notes == ["region 1: MaskInversion reads it as 'orange circle' (0.42), the masked "
                     "crop as 'orange square' (0.97)."]
    quoted = crosscheck_notes(["region 1", "region 2"], top, crop, CROSSCHECK_MEASURED)
    assert "masked crop is right 98% of the time (76% on a renderer" in quoted[0]
