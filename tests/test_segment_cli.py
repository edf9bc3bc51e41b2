"""``regionlab segment`` and ``regionlab proposals`` (in-process, classical engine + tiny SAM)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from regionlab.cli import main
from regionlab.segment.evaluate import iou
from regionlab.shapes.scenes import RenderOptions, render_scene


@pytest.fixture(autouse=True)
def no_sam_env(monkeypatch):
    for var in ("REGIONLAB_SAM", "REGIONLAB_SAM_CHECKPOINT", "REGIONLAB_SAM_VIT_B",
                "REGIONLAB_SAM_VIT_L", "REGIONLAB_SAM_VIT_H", "REGIONLAB_SAM_DIR"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture()
def scene(tmp_path):
    sc = render_scene(21, RenderOptions(size=64), objects=[("red", "circle"), ("blue", "square")])
    path = tmp_path / "scene.png"
    sc.pil().save(path)
    return sc, path


def run_json(capsys, argv):
    code = main(argv)
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    return code, lines


def read_mask(path) -> np.ndarray:
    return np.asarray(Image.open(path)) > 127


def test_segment_point_writes_mask_and_json(scene, tmp_path, capsys):
    sc, path = scene
    obj = sc.objects[0]
    x, y = int(obj.center[0]), int(obj.center[1])
    out = tmp_path / "mask.png"
    code, [res] = run_json(capsys, ["segment", str(path), "--point", f"{x},{y}", "--out",
                                    str(out), "--segmenter", "classical", "--json"])
    assert code == 0 and res["mask"] == str(out)
    assert res["segmenter"] == "classical" and res["fallback"] is True and 0 <= res["score"] <= 1
    assert iou(read_mask(out), obj.mask) >= 0.9


def test_segment_box_multimask_and_default_notice(scene, tmp_path, capsys):
    sc, path = scene
    obj = sc.objects[1]
    box = ",".join(map(str, obj.box))
    code, [res] = run_json(capsys, ["segment", str(path), "--box", box, "--point",
                                    f"{int(obj.center[0])},{int(obj.center[1])},1",
                                    "--out", str(tmp_path / "m.png"), "--multimask", "--json"])
    assert code == 0 and "no SAM checkpoint" in res["notice"]  # default engine: fallback
    assert 1 <= len(res["candidates"]) <= 3
    assert all((tmp_path / f"m_{i}.png").is_file() for i in range(len(res["candidates"])))
    assert iou(read_mask(res["mask"]), obj.mask) >= 0.9


@pytest.mark.parametrize("args, message", [
    (["--point", "64,3"], "outside the 64x64 image"),
    (["--point", "3"], "needs 2 or 3 numbers"),
    (["--point", "a,b"], "comma-separated numbers"),
    (["--box", "5,5,5,9"], "degenerate box"),
    ([], "no prompt"),
])
def test_segment_bad_input_exits_2_with_a_message(scene, tmp_path, capsys, args, message):
    _, path = scene
    code = main(["segment", str(path), "--out", str(tmp_path / "m.png"), "--segmenter",
                 "classical", "--json", *args])
    captured = capsys.readouterr()
    assert code == 2 and message in captured.err
    assert "error" in json.loads(captured.out)


def test_segment_needs_an_output(scene, capsys):
    _, path = scene
    assert main(["segment", str(path), "--point", "3,3", "--segmenter", "classical"]) == 2
    assert "--out" in capsys.readouterr().err


def test_segment_manifest_reuses_the_embedding_per_image(scene, tmp_path, capsys, monkeypatch):
    sc, path = scene
    (a, b) = sc.objects
    lines = [
        {"image": str(path), "points": [[int(a.center[0]), int(a.center[1]), 1]]},
        {"image": str(path), "points": [[500, 1]]},
        {"image": str(path), "box": list(b.box)},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(ln) for ln in lines) + "\n")
    from regionlab.segment import interactive

    made = []
    real = interactive.make_segmenter
    monkeypatch.setattr(interactive, "make_segmenter", lambda *a, **k: made.append(1) or real(
        *a, **k))
    code, out = run_json(capsys, ["segment", "--manifest", str(manifest), "--out-dir",
                                  str(tmp_path / "o"), "--segmenter", "classical", "--json"])
    assert code == 1  # line 2 failed, the others ran
    assert [r["line"] for r in out] == [1, 2, 3]
    assert "outside" in out[1]["error"]
    assert out[0]["mask"] == str(tmp_path / "o" / "1" / "mask.png")
    assert iou(read_mask(out[0]["mask"]), a.mask) >= 0.9
    assert iou(read_mask(out[2]["mask"]), b.mask) >= 0.9
    assert len(made) == 1  # one segmenter (one image embedding) for the three lines


def test_segment_with_tiny_sam(scene, tmp_path, capsys):
    _, path = scene
    code, [res] = run_json(capsys, ["segment", str(path), "--point", "10,10", "--out",
                                    str(tmp_path / "m.png"), "--segmenter", "sam-tiny-random",
                                    "--json"])
    assert code == 0 and res["segmenter"] == "sam-tiny-random" and res["fallback"] is False
    assert read_mask(res["mask"]).shape == (64, 64)


def test_proposals_json_and_files(scene, tmp_path, capsys):
    sc, path = scene
    code, [res] = run_json(capsys, ["proposals", str(path), "--out-dir", str(tmp_path / "p"),
                                    "--method", "classical", "--max-proposals", "5", "--json"])
    assert code == 0 and res["source"] == "classical" and res["fallback"] is True
    props = res["proposals"]
    assert 2 <= len(props) <= 5
    for p in props:
        m = read_mask(p["mask"])
        ys, xs = np.nonzero(m)
        assert p["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    for obj in sc.objects:
        assert max(iou(read_mask(p["mask"]), obj.mask) for p in props) >= 0.9


def test_proposals_need_out_dir_and_valid_options(scene, tmp_path, capsys):
    _, path = scene
    assert main(["proposals", str(path), "--method", "classical"]) == 2
    assert "--out-dir" in capsys.readouterr().err
    assert main(["proposals", str(path), "--method", "classical", "--out-dir", str(tmp_path),
                 "--nms-iou", "3"]) == 2
    assert "nms_iou" in capsys.readouterr().err
