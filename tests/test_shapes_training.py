"""The ShapesWorld training scripts: same seed -> the same weights; --init fine-tunes."""

import json

import pytest
from safetensors.torch import load_file

from regionlab.shapes import train_clip

TINY = ["--steps", "2", "--multi", "3", "--single", "2", "--crops", "2", "--warmup", "1",
        "--eval-every", "100", "--eval-n", "6", "--threads", "1"]


def _tensors(path):
    return load_file(str(path.with_suffix(".safetensors")))


def test_clip_training_is_deterministic_by_seed(tmp_path):
    train_clip.main(TINY + ["--out", str(tmp_path / "a")])
    train_clip.main(TINY + ["--out", str(tmp_path / "b")])
    train_clip.main(TINY + ["--seed", "1", "--out", str(tmp_path / "c")])
    a, b, c = (_tensors(tmp_path / n) for n in "abc")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    assert any(not (a[k] == c[k]).all() for k in a)
    record = json.loads((tmp_path / "a.json").read_text())
    assert record["seed"] == 0 and record["steps"] == 2
    assert set(record["val_metrics_fp16"]) == {"zero_shot", "masked_crop", "legrad_dice",
                                               "map_top1"}


def test_clip_training_fine_tunes_from_init(tmp_path):
    train_clip.main(TINY + ["--out", str(tmp_path / "a")])
    train_clip.main(TINY + ["--init", str(tmp_path / "a.safetensors"), "--lr", "0",
                            "--out", str(tmp_path / "b")])
    a, b = _tensors(tmp_path / "a"), _tensors(tmp_path / "b")
    assert all((a[k] == b[k]).all() for k in a)  # lr 0: the init comes through unchanged
    assert json.loads((tmp_path / "b.json").read_text())["init"].endswith("a.safetensors")


@pytest.mark.parametrize("bad", [["--weights", "clip=1,nope=2"], ["--steps", "0"]])
def test_clip_training_rejects_bad_arguments(tmp_path, bad):
    with pytest.raises(SystemExit):
        train_clip.main(TINY + bad + ["--out", str(tmp_path / "x")])


def test_generator_fine_tunes_from_init(tmp_path):
    from regionlab.shapes import train_generator

    tiny = ["--steps", "1", "--scenes", "8", "--batch", "4", "--eval-n", "2", "--threads", "1",
            "--channels", "32,64"]
    train_generator.main(tiny + ["--out", str(tmp_path / "a")])
    train_generator.main(tiny + ["--lr", "0", "--ema", "0", "--channels", "32,64,128",
                                 "--init", str(tmp_path / "a.safetensors"),
                                 "--out", str(tmp_path / "b")])
    a, b = _tensors(tmp_path / "a"), _tensors(tmp_path / "b")
    assert a.keys() == b.keys()  # the init's channels win over --channels
    assert all((a[k] == b[k]).all() for k in a)
    record = json.loads((tmp_path / "b.json").read_text())
    assert record["channels"] == [32, 64] and record["init"].endswith("a.safetensors")


def test_recipe_relocates_runs_paths_and_environment(tmp_path):
    from regionlab.shapes.recipe import relocate

    env, argv = relocate("REGIONLAB_SHAPES_CLIP=runs/s2.safetensors python -m "
                         "regionlab.shapes.train_generator --init runs/g1.safetensors --lr 5e-4",
                         tmp_path)
    assert env == {"REGIONLAB_SHAPES_CLIP": str(tmp_path / "s2.safetensors")}
    assert argv[1:] == ["-m", "regionlab.shapes.train_generator", "--init",
                        str(tmp_path / "g1.safetensors"), "--lr", "5e-4"]
    with pytest.raises(ValueError, match="not a RegionLab training command"):
        relocate("rm -rf runs/", tmp_path)


def test_recorded_recipe_commands_are_valid(capsys):
    """Every command recorded next to the bundled weights still parses with today's scripts."""
    import importlib
    import shlex

    from regionlab.shapes.recipe import recorded_commands

    commands = recorded_commands()
    assert len(commands) >= 4
    for cmd in commands:
        argv = shlex.split(cmd)
        i = argv.index("-m")
        module = importlib.import_module(argv[i + 1])
        with pytest.raises(SystemExit):
            module.main(["--help"])
        flags = set(capsys.readouterr().out.replace(",", " ").split())
        used = {a.split("=")[0] for a in argv[i + 2:] if a.startswith("--")}
        assert used <= flags, (cmd, used - flags)


def test_maskinversion_views_for_the_captioner_are_unit_and_deterministic():
    import torch

    from regionlab.models import load_clip
    from regionlab.shapes.decoder_data import maskinversion_views
    from regionlab.shapes.vocab import CLASSES

    clip = load_clip("shapes-clip")
    emb, labels = maskinversion_views(clip, 5, seed=3)
    assert emb.shape == (5, clip.embed_dim) and labels.shape == (5,)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(5))
    assert all(0 <= j < len(CLASSES) for j in labels)
    again, labels2 = maskinversion_views(clip, 5, seed=3)
    assert (labels == labels2).all() and torch.equal(emb, again)
