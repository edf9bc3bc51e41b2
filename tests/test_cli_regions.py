"""CLI: classify and regions (bundled model), manifest conventions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from regionlab.cli import main
from regionlab.shapes.scenes import RenderOptions, render_scene


@pytest.fixture()
def scene_files(tmp_path):
    s = render_scene((2, 0, 3), RenderOptions(min_objects=2, max_objects=2))
    img = tmp_path / "scene.png"
    Image.fromarray(s.image).save(img)
    masks = []
    for i, o in enumerate(s.objects):
        p = tmp_path / f"m{i}.png"
        Image.fromarray(o.mask.astype(np.uint8) * 255).save(p)
        masks.append(str(p))
    return s, str(img), masks


def test_classify_json(scene_files, capsys):
    _, img, _ = scene_files
    assert main(["classify", img, img, "--vocab", "shapes", "--top-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, list) and len(out) == 2
    assert out[0]["image"] == img and len(out[0]["top"]) == 3
    scores = [t["score"] for t in out[0]["top"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001


@pytest.mark.parametrize("method", ["maskinversion", "masked-crop", "global"])
def test_regions_json(scene_files, capsys, tmp_path, method):
    s, img, masks = scene_files
    emb = tmp_path / "emb.npy"
    rc = main(["regions", img, "--mask", masks[0], "--mask", masks[1], "--method", method,
               "--save-embeddings", str(emb), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["mask"] for r in out["regions"]] == masks
    assert all(len(r["top"]) == 5 for r in out["regions"])
    assert np.load(emb).shape == (2, 96)


def test_regions_heatmaps(scene_files, capsys, tmp_path):
    _, img, masks = scene_files
    rc = main(["regions", img, "--mask", masks[0], "--heatmaps", str(tmp_path / "h"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert Image.open(out["heatmaps"][0]).size == (64, 64)


def test_manifest_bad_line_does_not_stop_batch(scene_files, capsys, tmp_path):
    _, img, masks = scene_files
    man = tmp_path / "m.jsonl"
    man.write_text("\n".join([
        json.dumps({"image": img, "masks": masks[:1]}),
        "{not json",
        json.dumps({"image": img, "masks": [str(tmp_path / "missing.png")]}),
        json.dumps({"image": img, "masks": masks, "method": "crop"}),
    ]) + "\n")
    rc = main(["regions", "--manifest", str(man), "--json"])
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert rc == 1 and len(lines) == 4
    assert "regions" in lines[0] and "error" in lines[1] and "not found" in lines[2]["error"]
    assert len(lines[3]["regions"]) == 2 and lines[3]["line"] == 4


def test_cli_errors_are_clean(scene_files, capsys):
    _, img, masks = scene_files
    assert main(["regions", img, "--json"]) == 2
    assert "no masks" in capsys.readouterr().err
    assert main(["regions", img, "--mask", masks[0], "--model", "ViT-B-16@openai"]) == 2
    assert "hf download" in capsys.readouterr().err


def test_shapes_dataset(tmp_path, capsys):
    assert main(["shapes-dataset", "--out-dir", str(tmp_path / "d"), "--n", "3", "--json"]) == 0
    meta = json.loads((tmp_path / "d" / "annotations.json").read_text())
    assert len(meta["scenes"]) == 3
    first = meta["scenes"][0]
    assert Image.open(tmp_path / "d" / first["image"]).size == (64, 64)
    assert (tmp_path / "d" / first["objects"][0]["mask"]).is_file()
