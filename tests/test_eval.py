"""``regionlab eval``: the shared harness (subsets, resume, outputs, errors) and every task end
to end on ShapesWorld exports, checked against the in-process computations on the same scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from regionlab import cli
from regionlab.errors import InputError
from regionlab.eval import harness
from regionlab.eval.harness import EvalTask, Unit, run_eval, select

# ------------------------------------------------------------------------------ harness


class CountingTask(EvalTask):
    """Units 0..n-1 in groups of 3; a unit is 'correct' iff its number is even; counts calls."""

    name, unit = "count", "thing"

    def __init__(self, n=10, setting=1, fail_after=None):
        self.n, self.setting, self.fail_after = n, setting, fail_after
        self.computed: list[str] = []

    def spec(self):
        return "x:CountingTask", {"n": self.n, "setting": self.setting}

    def config(self):
        return {"task": self.name, "setting": self.setting}

    def units(self):
        return [Unit(str(i), str(i // 3)) for i in range(self.n)]

    def run_group(self, group, keys):
        if self.fail_after is not None and len(self.computed) >= self.fail_after:
            raise KeyboardInterrupt  # the run is killed
        self.computed += keys
        return [{"key": k, "correct": int(k) % 2 == 0} for k in keys]

    def summarize(self, rows):
        return {"n": len(rows), "accuracy": float(np.mean([r["correct"] for r in rows])),
                "keys": sorted(int(r["key"]) for r in rows)}

    def table(self, summary):
        return harness.markdown_table(["method", "set"], [["count", harness.pct(
            summary["accuracy"])]])


def test_select_first_n_or_seeded_draw_that_extends():
    units = [Unit(str(i), "g") for i in range(20)]
    assert [u.key for u in select(units, 3)] == ["0", "1", "2"]
    a, b = select(units, 5, seed=7), select(units, 12, seed=7)
    assert len(a) == 5 and {u.key for u in a} <= {u.key for u in b}  # a larger run extends
    assert [u.key for u in a] == sorted((u.key for u in a), key=int)  # file order kept
    assert a == select(units, 5, seed=7) and a != select(units, 5, seed=8)
    assert select(units, None, seed=3) == units
    with pytest.raises(InputError, match="at least 1"):
        select(units, 0)


def test_resume_after_limit_and_after_a_kill(tmp_path):
    out = tmp_path / "run"
    fresh = run_eval(CountingTask(), limit=None)
    # a quick subset first, then the full run resumes it
    t1 = CountingTask()
    s1 = run_eval(t1, out_dir=out, limit=4)
    assert t1.computed == ["0", "1", "2", "3", "4", "5"][:4] and s1["n"] == 4
    # killed during the second group
    t2 = CountingTask(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_eval(t2, out_dir=out)
    assert t2.computed == ["4", "5"]  # units 0..3 were read back, 4 and 5 done, then killed
    # a half-written line (killed while writing) is dropped
    with open(out / "items.jsonl", "a") as fh:
        fh.write('{"key": "6", "corr')
    t3 = CountingTask()
    s3 = run_eval(t3, out_dir=out)
    assert t3.computed == ["6", "7", "8", "9"] and s3["resumed"] == 6
    assert {k: v for k, v in s3.items() if k not in ("seconds", "resumed", "out")} == \
        {k: v for k, v in fresh.items() if k not in ("seconds", "resumed")}
    lines = (out / "items.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["key"] for x in lines) == [str(i) for i in range(10)]
    assert json.loads((out / "summary.json").read_text())["accuracy"] == 0.5
    assert (out / "table.md").read_text() == "| method | set |\n|---|---|\n| count | 50.0 |\n"
    # nothing left: nothing computed
    t4 = CountingTask()
    assert run_eval(t4, out_dir=out)["resumed"] == 10 and t4.computed == []


def test_resume_with_other_settings_is_refused(tmp_path):
    run_eval(CountingTask(setting=1), out_dir=tmp_path, limit=2)
    with pytest.raises(InputError, match=r"other settings \(setting: 1 there, 2 now\)"):
        run_eval(CountingTask(setting=2), out_dir=tmp_path)


def test_progress_bar_shows_rate_and_eta(capsys):
    run_eval(CountingTask(n=4), progress=True)
    err = capsys.readouterr().err
    assert "4/4" in err and "thing/s" in err and "<" in err  # elapsed<remaining, rate


def test_malformed_reclip_file_names_the_file_and_line(tmp_path, capsys):
    good = {"file_name": "a.png", "image_id": 1, "ann_id": 5,
            "anns": [{"id": 5, "bbox": [0, 0, 4, 4]}], "sentences": [{"raw": "the red star"}]}
    bad = dict(good, ann_id=6, anns=[{"id": 6, "bbox": [0, 0, 4]}])
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
    code = cli.main(["eval", "ground", "--refs", str(refs), "--images", str(tmp_path),
                     "--no-progress", "--json"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"malformed annotation file {refs}: line 3 (ann_id 6): anns[0] is not a box" in err
    for line, why in [("not json", "not valid JSON"), ("[1, 2]", "not a JSON object"),
                      (json.dumps(dict(good, sentences=[])), "no 'sentences'"),
                      (json.dumps({"anns": []}), "no 'file_name'")]:
        refs.write_text(line + "\n")
        assert cli.main(["eval", "ground", "--refs", str(refs), "--images", str(tmp_path),
                         "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"{refs}: line 1" in err and why in err, err


def test_ray_without_the_extra_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    """--ray is the optional extra; without Ray the error names the install command (the Ray
    run itself is tested in tests/test_eval_ray.py, slow tier, where Ray is installed)."""
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(InputError, match=r'pip install -e "\.\[scale\]"'):
        run_eval(CountingTask(n=2), ray=True)
    with pytest.raises(InputError, match="needs Ray Data"):
        run_eval(CountingTask(n=2), ray="ray://head:10001")


# ------------------------------------------------------------------------------ COCO reading


def test_coco_masks_in_every_standard_form():
    """Polygons, uncompressed RLE and compressed RLE decode (pycocotools) to the same masks;
    our uncompressed RLE writer agrees with pycocotools' reader."""
    from regionlab.eval.coco import check_segmentation, decode_segmentation, encode_mask

    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((7, 9)) < 0.4
        for compressed in (True, False):
            seg = encode_mask(m, compressed)
            assert check_segmentation(seg, 7, 9) == ("compressed-rle" if compressed else "rle")
            assert (decode_segmentation(seg, 7, 9) == m).all()
    m = np.zeros((6, 8), bool)
    m[0, 0] = True  # a mask starting with a 1: the run list starts with 0
    assert encode_mask(m, False)["counts"][0] == 0
    assert (decode_segmentation(encode_mask(m, False), 6, 8) == m).all()
    square = [[2, 1, 6, 1, 6, 4, 2, 4]]  # x 2..6, y 1..4 (pycocotools rasterisation)
    got = decode_segmentation(square, 6, 8)
    assert got[1:4, 2:6].all() and got.sum() == 12
    with pytest.raises(ValueError, match="sum to"):
        check_segmentation({"size": [6, 8], "counts": [3, 4]}, 6, 8)
    with pytest.raises(ValueError, match="differs from its image"):
        check_segmentation(encode_mask(m), 8, 6)
    with pytest.raises(ValueError, match="at least 3"):
        check_segmentation([[1, 2, 3, 4]], 6, 8)


def _coco(images, anns, cats):
    return {"images": images, "annotations": anns, "categories": cats}


def test_malformed_coco_file_names_the_entry(tmp_path, capsys):
    from regionlab.eval.coco import encode_mask, read_coco
    from regionlab.eval.harness import AnnotationError

    m = np.zeros((4, 5), bool)
    m[1:3, 1:4] = True
    im = {"id": 1, "file_name": "a.png", "height": 4, "width": 5}
    ann = {"id": 7, "image_id": 1, "category_id": 3, "segmentation": encode_mask(m)}
    cat = {"id": 3, "name": "red star"}
    path = tmp_path / "instances.json"
    cases = [
        ("{", "the file: not valid JSON"),
        (json.dumps({"images": []}), "the file: no 'annotations' list"),
        (json.dumps(_coco([im], [dict(ann, image_id=2)], [cat])),
         "annotations[0] (id 7): image_id 2 is not in 'images'"),
        (json.dumps(_coco([im], [ann, dict(ann, id=8, category_id=4)], [cat])),
         "annotations[1] (id 8): category_id 4 is not in 'categories'"),
        (json.dumps(_coco([im], [dict(ann, segmentation={"size": [4, 5], "counts": [1]})],
                          [cat])), "annotations[0] (id 7): uncompressed RLE counts sum to 1"),
        (json.dumps(_coco([dict(im, height=0)], [], [cat])),
         "images[0] (id 1): 'height' is not a positive integer"),
        (json.dumps(_coco([im], [ann, ann], [cat])),
         "annotations[1] (id 7): duplicate annotation id"),
        (json.dumps(_coco([im], [], [{"id": 3}])), "categories[0] (id 3): no 'name'"),
    ]
    for text, msg in cases:
        path.write_text(text)
        with pytest.raises(AnnotationError) as exc:
            read_coco(path)
        assert str(exc.value) == f"malformed annotation file {path}: {msg}" or \
            str(exc.value).startswith(f"malformed annotation file {path}: {msg}"), exc.value
    # through the CLI: one clear error, exit code 2
    path.write_text(cases[2][0])
    assert cli.main(["eval", "classify", "--annotations", str(path), "--images", str(tmp_path),
                     "--no-progress"]) == 2
    assert f"{path}: annotations[0] (id 7): image_id 2" in capsys.readouterr().err
    # a category missing from a chosen class list
    path.write_text(json.dumps(_coco([im], [ann], [cat])))
    assert cli.main(["eval", "classify", "--annotations", str(path), "--images", str(tmp_path),
                     "--classes", "coco", "--no-progress"]) == 2
    assert "categories[0] (id 3): name 'red star' is not in the class list 'coco'" in \
        capsys.readouterr().err


def test_eval_classify_on_masks_written_by_other_tools(tmp_path, capsys, bundled_clip):
    """One scene's objects as a polygon-free mix of uncompressed and compressed RLE (what other
    tools write), a crowd region and an empty mask: Acc@1/Acc@5 equal the in-process
    retrieval on the same masks; crowd and empty masks are left out and reported."""
    import torch
    from PIL import Image

    from regionlab.eval.coco import encode_mask
    from regionlab.region.baselines import region_embeddings
    from regionlab.shapes.scenes import RenderOptions, generate_scenes
    from regionlab.shapes.vocab import CLASSES
    from regionlab.tasks.retrieval import class_text_embeddings

    clip = bundled_clip
    scenes = generate_scenes("test", 2, 3, RenderOptions(min_objects=3, max_objects=4))
    images, anns = [], []
    for i, sc in enumerate(scenes):
        Image.fromarray(sc.image).save(tmp_path / f"s{i}.png")
        images.append({"id": i + 1, "file_name": f"s{i}.png", "height": sc.size,
                       "width": sc.size})
        for k, o in enumerate(sc.objects):
            anns.append({"id": 100 * i + k, "image_id": i + 1, "iscrowd": 0,
                         "category_id": CLASSES.index(o.label) + 1,
                         "segmentation": encode_mask(o.mask, compressed=k % 2 == 0)})
    anns.append({"id": 999, "image_id": 1, "category_id": 1, "iscrowd": 1,
                 "segmentation": encode_mask(scenes[0].objects[0].mask, False)})
    anns.append({"id": 998, "image_id": 2, "category_id": 1,
                 "segmentation": encode_mask(np.zeros((64, 64), bool))})
    cats = [{"id": k + 1, "name": c, "supercategory": "shape"} for k, c in enumerate(CLASSES)]
    path = tmp_path / "instances_mixed.json"
    path.write_text(json.dumps(_coco(images, anns, cats)))
    out = tmp_path / "out"
    assert cli.main(["eval", "classify", "--annotations", str(path), "--images", str(tmp_path),
                     "--methods", "masked-crop,global", "--model", "shapes-clip", "--json",
                     "--no-progress", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    text = class_text_embeddings(clip, list(CLASSES), "single")
    for method in ("masked-crop", "global"):
        ranks = []
        for sc in scenes:
            e = region_embeddings(clip, sc.image, np.stack([o.mask for o in sc.objects]), method)
            s = torch.nn.functional.normalize(e, dim=-1) @ text.T
            for o, row in zip(sc.objects, s):
                ranks.append(int((row > row[CLASSES.index(o.label)]).sum()) + 1)
        want = {"acc@1": float(np.mean([r == 1 for r in ranks])),
                "acc@5": float(np.mean([r <= 5 for r in ranks])), "n": len(ranks)}
        assert res["methods"][method] == pytest.approx(want), method
    assert res["crowd_excluded"] == 1 and res["skipped_empty"] == 1 and res["skipped"] == 0
    pc = json.loads((out / "per_class.json").read_text())
    assert sum(v["n"] for v in pc.values()) == res["n_instances"] == len(ranks)
    table = (out / "table.md").read_text()
    assert table.startswith("| Method | instances_mixed Acc@1 | instances_mixed Acc@5 | masks |")
    assert "| Masked crop |" in table and "| CLIP (global) |" in table
    assert (out / "per_class.csv").read_text().startswith(
        "class,n,masked-crop acc@1,masked-crop acc@5,global acc@1,global acc@5")


# ------------------------------------------------------------------------------ label (mIoU)


def test_benchmark_class_lists_ship_with_the_package():
    from regionlab.eval import ovseg

    sizes = {"ade150": 150, "voc20": 20, "context59": 59}
    for name, n in sizes.items():
        names = ovseg.dataset_classes(name)
        assert len(names) == n == len(set(names)) and all(c == c.strip() for c in names)
    assert ovseg.dataset_classes("ade150")[:3] == ["wall", "building", "sky"]
    assert ovseg.dataset_classes("ade150")[-1] == "flag"
    assert ovseg.dataset_classes("voc20")[0] == "aeroplane"
    assert ovseg.dataset_classes("context59")[:2] == ["aeroplane", "bicycle"]
    assert ovseg.dataset_classes("context59")[-1] == "wood"
    # the docstring gives VOC-20 with ignore_zero (issue 29), and the default follows it
    assert "VOC-20 (``voc20``: the 20 VOC" in ovseg.__doc__ and "label_offset=1" not in \
        ovseg.__doc__
    task = ovseg.LabelTask(".", ".", "voc20")
    assert task.ignore_zero and not ovseg.LabelTask(".", ".", "voc20", ignore_zero=False)\
        .ignore_zero and not ovseg.LabelTask(".", ".", ["a", "b"]).ignore_zero
    from pathlib import Path

    py = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '[tool.setuptools.package-data]\n"regionlab.eval" = ["classes/*.txt"]' in py


# ------------------------------------------------------------------------------ end to end
# Every eval command on `regionlab shapes export` output, against the in-process computations
# on the same scenes (the export's scene i is generate_scenes / generate_rec_items' item i).


@pytest.fixture(scope="module")
def shapes_clip(bundled_clip):
    return bundled_clip


def _cli_json(capsys, argv) -> dict:
    code = cli.main(argv + ["--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out.strip().splitlines()[-1])


def _export(capsys, fmt, out, n, seed, *extra) -> dict:
    return _cli_json(capsys, ["shapes", "export", "--format", fmt, "--out", str(out),
                              "--n", str(n), "--seed", str(seed), *extra])


def _classify_in_process(clip, scenes, methods) -> dict:
    """Acc@1 from the in-process benchmark (shapes_regions.region_accuracy) and Acc@5 from the
    same embeddings by hand."""
    import torch

    from regionlab.eval.shapes_regions import region_accuracy
    from regionlab.region.baselines import region_embeddings
    from regionlab.shapes.vocab import CLASSES
    from regionlab.tasks.retrieval import class_text_embeddings

    acc1 = region_accuracy(clip, scenes, methods)
    text = class_text_embeddings(clip, list(CLASSES), "single")
    out = {}
    for m in methods:
        top5 = []
        for sc in scenes:
            e = region_embeddings(clip, sc.image, np.stack([o.mask for o in sc.objects]), m)
            s = torch.nn.functional.normalize(e, dim=-1) @ text.T
            top5 += [CLASSES.index(o.label) in s[k].topk(5).indices.tolist()
                     for k, o in enumerate(sc.objects)]
        out[m] = {"acc@1": acc1[m]["acc1"], "acc@5": float(np.mean(top5)),
                  "n": acc1[m]["n_masks"]}
    return out


def test_e2e_classify_on_a_coco_export_matches_in_process(tmp_path, capsys, shapes_clip):
    from pycocotools.coco import COCO

    from regionlab.shapes.scenes import RenderOptions, generate_scenes

    n, seed = 3, 5
    exp = _export(capsys, "coco", tmp_path / "coco", n, seed, "--min-objects", "2")
    scenes = generate_scenes("test", n, seed, RenderOptions(min_objects=2))
    assert exp["annotations"] == sum(len(s.objects) for s in scenes)
    # pycocotools itself reads the export, and its masks are the scenes' masks
    coco = COCO(str(tmp_path / "coco" / "instances.json"))
    capsys.readouterr()  # COCO() prints
    masks = [coco.annToMask(a).astype(bool) for a in coco.loadAnns(coco.getAnnIds())]
    assert all((m == o.mask).all() for m, o in zip(masks, (o for s in scenes for o in s.objects)))
    methods = ["masked-crop", "maskinversion", "global"]
    args = ["eval", "classify", "--annotations", str(tmp_path / "coco" / "instances.json"),
            "--images", str(tmp_path / "coco" / "images"), "--methods", ",".join(methods),
            "--model", "shapes-clip", "--no-progress", "--out", str(tmp_path / "run")]
    part = _cli_json(capsys, args + ["--limit", "3"])  # a quick subset, then resumed
    res = _cli_json(capsys, args)
    assert part["methods"]["masked-crop"]["n"] == 3 and res["resumed"] == 3
    want = _classify_in_process(shapes_clip, scenes, methods)
    for m in methods:
        assert res["methods"][m] == pytest.approx(want[m]), m
    rows = (tmp_path / "run" / "items.jsonl").read_text().splitlines()
    assert len(rows) == exp["annotations"]


def test_e2e_ground_on_a_reclip_export_matches_in_process(tmp_path, capsys, shapes_clip):
    from regionlab.eval.reclip import shapes_rec_benchmark

    n, seed = 9, 2
    exp = _export(capsys, "reclip", tmp_path / "rec", n, seed)
    args = ["eval", "ground", "--refs", str(tmp_path / "rec" / "refs.jsonl"),
            "--images", str(tmp_path / "rec" / "images"), "--model", "shapes-clip",
            "--no-progress", "--out", str(tmp_path / "run")]
    part = _cli_json(capsys, args + ["--limit", "4", "--seed", "1"])
    res = _cli_json(capsys, args)
    bench = shapes_rec_benchmark(n, seed, "test", models=[shapes_clip])
    assert part["n_sentences"] == 4 and res["resumed"] == 4
    assert res["n_sentences"] == exp["sentences"] == bench["n_expressions"]
    assert res["skipped"] == 0
    assert res["accuracy"] == pytest.approx(bench["accuracy"]["reclip"]["all"], abs=5e-5)
    assert res["ips_accuracy"] == pytest.approx(bench["accuracy"]["ips"]["all"], abs=5e-5)
    assert res["ips_accuracy"] < res["accuracy"]  # the parser's spatial words count
    table = (tmp_path / "run" / "table.md").read_text()
    assert table.startswith("| proposals | refs |\n|---|---|\n| ground truth, ReCLIP (tree) |")


def test_e2e_label_on_a_semseg_export_matches_in_process(tmp_path, capsys, shapes_clip):
    from regionlab.eval.ovseg import evaluate_folder, evaluate_shapes
    from regionlab.tasks.ovseg import LabelOptions

    n, seed = 4, 3
    _export(capsys, "semseg", tmp_path / "sem", n, seed)
    base = ["eval", "label", "--images", str(tmp_path / "sem" / "images"),
            "--labels", str(tmp_path / "sem" / "labels"),
            "--classes", str(tmp_path / "sem" / "classes.txt"), "--model", "shapes-clip",
            "--no-progress"]
    out = tmp_path / "run"
    part = _cli_json(capsys, base + ["--out", str(out), "--limit", "2"])
    auto = _cli_json(capsys, base + ["--out", str(out)])
    assert part["images"] == 2 and auto["images"] == n and auto["resumed"] == 2
    want = evaluate_shapes(shapes_clip, n, "test", seed, proposals="auto",
                           options=LabelOptions(fusion="eval"))
    for key in ("miou", "miou_object_pixels", "pixel_accuracy", "per_class_iou"):
        assert auto[key] == pytest.approx(want[key]), key
    gt = _cli_json(capsys, base + ["--proposals", "gt", "--ignore-zero"])
    direct = evaluate_folder(tmp_path / "sem" / "images", tmp_path / "sem" / "labels",
                             str(tmp_path / "sem" / "classes.txt"), proposals="gt",
                             ignore_zero=True, clip=shapes_clip)
    assert gt["miou"] == pytest.approx(direct["miou"]) and gt["ignore_zero"] is True
    assert gt["background_false_positive_rate"] != gt["background_false_positive_rate"]  # NaN
    assert (out / "table.md").read_text().startswith("| Method | classes mIoU |")


@pytest.mark.slow
def test_e2e_classify_every_method_on_a_larger_export(tmp_path, capsys, shapes_clip):
    """All six region methods on 24 scenes (about 60 masks), with a seeded subset resumed."""
    from regionlab.region.baselines import METHODS
    from regionlab.shapes.scenes import RenderOptions, generate_scenes

    n, seed = 24, 11
    _export(capsys, "coco", tmp_path / "coco", n, seed, "--uncompressed-rle")
    scenes = generate_scenes("test", n, seed, RenderOptions())
    args = ["eval", "classify", "--annotations", str(tmp_path / "coco" / "instances.json"),
            "--images", str(tmp_path / "coco" / "images"), "--model", "shapes-clip",
            "--no-progress", "--out", str(tmp_path / "run")]
    _cli_json(capsys, args + ["--limit", "10", "--seed", "4"])
    res = _cli_json(capsys, args)
    assert res["resumed"] == 10
    want = _classify_in_process(shapes_clip, scenes, list(METHODS))
    for m in METHODS:
        assert res["methods"][m] == pytest.approx(want[m]), m
