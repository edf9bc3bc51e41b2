"""Words the bundled CLIP cannot know are named, never silently scored (issue 27 item 3)."""

from __future__ import annotations

import json

import pytest
from PIL import Image


@pytest.fixture(scope="module")
def clip(bundled_clip):
    return bundled_clip


def test_vocabulary_warnings_name_the_unknown_words(clip):
    from regionlab.tasks.vocabularies import BUILTIN, vocabulary_warnings

    assert vocabulary_warnings(clip, list(BUILTIN["shapes"])) == []
    (coco,) = vocabulary_warnings(clip, list(BUILTIN["coco"]))
    assert "'person'" in coco and "78 of 80 classes" in coco and "Real weights" in coco
    (mixed,) = vocabulary_warnings(clip, ["red star", "person", "cup"])
    assert "2 word(s)" in mixed and "'person', 'cup'" in mixed and "2 of 3 classes" in mixed
    # two classes of unknown words get the same text embedding: the warning is not idle talk
    from regionlab.tasks.retrieval import class_text_embeddings

    e = class_text_embeddings(clip, ["person", "cup", "red star"])
    assert float((e[0] - e[1]).abs().max()) == 0.0 and float((e[0] - e[2]).abs().max()) > 0


def test_cli_classify_and_label_warn_on_stderr_and_in_json(clip, tmp_path, capsys):
    from regionlab import cli
    from regionlab.ui import examples

    Image.fromarray(examples.scene(24).image).save(tmp_path / "scene.png")
    assert cli.main(["classify", str(tmp_path / "scene.png"), "--vocab", "voc", "--json"]) == 0
    out, err = capsys.readouterr()
    first = json.loads(out)
    first = first[0] if isinstance(first, list) else first
    assert first["warnings"] and "regionlab classify: warning:" in err
    assert cli.main(["label", str(tmp_path / "scene.png"), "--classes", "person, red star",
                     "--out", str(tmp_path / "map.png"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert "'person'" in json.loads(out)["warnings"][0] and "regionlab label: warning:" in err
    assert cli.main(["classify", str(tmp_path / "scene.png"), "--vocab", "shapes",
                     "--json"]) == 0
    out, err = capsys.readouterr()
    first = json.loads(out)
    first = first[0] if isinstance(first, list) else first
    assert "warnings" not in first and "warning:" not in err


def test_app_service_reports_vocabulary_warnings(clip):
    from regionlab.ui import service

    assert service.vocab_warnings("shapes", clip="shapes-clip") == []
    assert "shapes-clip does not know" in service.vocab_warnings("coco", clip="shapes-clip")[0]


def test_vocabulary_dropdown_marks_what_the_bundled_clip_cannot_know():
    from regionlab.ui.handlers import vocab_choices

    bundled = dict((v, label) for label, v in vocab_choices("shapes-clip"))
    assert bundled["shapes"] == "shapes" and bundled["custom"] == "custom"
    assert "unknown to the bundled CLIP" in bundled["coco"]
    assert "unknown to the bundled CLIP" in bundled["voc"]
    real = dict((v, label) for label, v in vocab_choices("ViT-B-16@openai"))
    assert real["coco"] == "coco"
    assert [v for _, v in vocab_choices("shapes-clip")][0] == "shapes"


def test_photo_notice_once_per_session_for_the_bundled_clip():
    from regionlab.ui import examples
    from regionlab.ui.handlers import on_photo_notice, photo_notice
    from regionlab.ui.session import Session

    assert photo_notice("ShapesWorld scene 24", "shapes-clip") is None
    assert photo_notice("astronaut", "ViT-B-16@openai") is None
    text = photo_notice("upload", "shapes-clip")
    assert "knows only ShapesWorld" in text and "Real weights" in text
    s = Session()
    if not examples.photos_available():
        pytest.skip("scikit-image photos not installed")
    s.set_image(examples.photo_example("coffee").image, "coffee")
    on_photo_notice(s, "shapes-clip")
    assert text in s.notices_shown
    assert not s.first_notice(text)  # not shown again in this session


def test_api_retrieve_names_unknown_class_words(tmp_path, clip):
    """The named endpoint that ranks classes says what the model cannot know (the grounding and
    labelling endpoints return the result's ``warnings`` too)."""
    import numpy as np

    from regionlab.ui.api import Api
    from regionlab.ui.files import Scratch
    from regionlab.ui.options import AppOptions

    emb = tmp_path / "emb.npy"
    np.save(emb, np.random.default_rng(0).normal(size=(2, clip.embed_dim)))
    api = Api(AppOptions(), Scratch())
    assert api.retrieve(str(emb), "shapes", "single", 3)["warnings"] == []
    assert "'person'" in api.retrieve(str(emb), "person, red star", "single", 2)["warnings"][0]


def test_labelling_never_assigns_classes_of_unknown_words(clip):
    """Classes made only of unknown words share one text embedding: labelling leaves them out
    of the softmax and says so, instead of painting them (a coffee photo labelled with VOC came
    out 'aeroplane' and 'dining table'); a single class left keeps its "others" competitor."""
    import numpy as np

    from regionlab.tasks.ovseg import label
    from regionlab.tasks.vocabularies import blind_classes
    from regionlab.ui import examples

    assert blind_classes(clip, ["red star", "cup", "red cup", "tv-monitor"]) == ["cup",
                                                                               "tv-monitor"]
    sc = examples.scene(24)
    masks = np.stack([o.mask for o in sc.objects])
    star = [o.label for o in sc.objects].index("red star")
    res = label(sc.image, "red star, cup", masks=masks, clip=clip)
    assert res.classes == ["red star", "cup"] and res.scored_classes == ["red star", "others"]
    assert [r.label for r in res.regions] == [None if k != star else "red star"
                                              for k in range(len(masks))]
    assert set(np.unique(res.label_map)) <= {0, 1}
    assert "1 of 2 classes" in res.notice and "'cup'" in res.notice
    assert all(t["label"] != "cup" for r in res.regions for t in r.top)
    voc = label(examples.photo_example("coffee").image, "voc", masks=None, clip=clip)
    assert not voc.label_map.any() and all(r.label is None and r.top == [] for r in voc.regions)
    assert "20 of 20 classes" in voc.notice and voc.warnings
    # with the classes it knows nothing changes
    full = label(sc.image, "shapes", masks=masks, clip=clip)
    assert [r.label for r in full.regions] == [o.label for o in sc.objects] and not full.notice


def test_retrieval_ranks_only_classes_the_model_can_represent(clip):
    """A photo's cup with "red star, blue circle, cup, saucer, spoon": the three unknown classes
    tied and the first of them, 'spoon', was shown as the cup's class. They are left out of
    the ranking; with only unknown classes nothing is ranked, and the app says so."""
    import numpy as np

    from regionlab.tasks.retrieval import retrieve
    from regionlab.ui import examples, service
    from regionlab.ui.handlers import crosscheck_notes, top_text

    ex = examples.photo_example("coffee")
    masks = np.stack([m for _, m in ex.regions])
    emb = service.invert(ex.image, masks, clip="shapes-clip", device="cpu").embeddings
    mixed = retrieve(emb, ["red star", "blue circle", "cup", "saucer", "spoon"], clip=clip,
                     top_k=5)
    assert all({t["label"] for t in row} == {"red star", "blue circle"} for row in mixed)
    assert retrieve(emb, "voc", clip=clip) == [[] for _ in masks]
    # one class left: "others" competes with it (a softmax over one class is always 1)
    one = retrieve(emb, "red star, cup, spoon", clip=clip)
    assert all({t["label"] for t in row} == {"red star", "others"} for row in one)
    assert retrieve(emb, "shapes", clip=clip, top_k=3)[0][0]["label"].split()[1] in (
        "star", "cross", "square", "circle", "triangle")
    # what the Region tab shows for such a region
    assert top_text(None) == "(no class the model can represent)"
    assert top_text({"label": "red star", "score": 0.5}) == "red star (0.50)"
    rows = service.compare(ex.image, masks, clip="shapes-clip", device="cpu",
                           methods=["masked-crop"], vocab="voc")["rows"]
    assert all(r["masked-crop"]["label"] is None for r in rows)
    assert crosscheck_notes(["cup"], [[]], [rows[0]["masked-crop"]]) == []


def test_grounding_with_no_known_word_gives_no_answer(clip):
    """"the cup" with the bundled CLIP: no word but the article is one it knows, so whichever
    candidate scores highest is arbitrary. The result says so (``informed`` false, a warning)
    and the app's view chooses nothing; a known word anywhere (a colour, a spatial word) still
    steers the answer."""
    import numpy as np

    from regionlab.tasks.reclip import uninformed
    from regionlab.ui import examples, service
    from regionlab.ui.handlers import grounding_view

    assert uninformed([clip], "the cup") and uninformed([clip], "A helmet")
    assert not uninformed([clip], "the cup on the left") and not uninformed([clip], "the")
    assert not uninformed([clip], "the red star") and not uninformed([], "the cup")
    sc = examples.scene(24)
    masks = np.stack([o.mask for o in sc.objects])
    res = service.ground(sc.image, "the cup", masks=masks, clip="shapes-clip", device="cpu")
    assert res.informed is False and res.to_dict()["informed"] is False
    assert any("no word of 'the cup'" in w for w in res.warnings)
    view = grounding_view(sc.image, res)
    assert view["summary"].count("No answer") == 1 and "Chosen proposal" not in view["summary"]
    star = [o.label for o in sc.objects].index("red star")
    ok = service.ground(sc.image, "the red star", masks=masks, clip="shapes-clip", device="cpu")
    assert ok.informed and ok.index == star
    assert "Chosen proposal" in grounding_view(sc.image, ok)["summary"]
